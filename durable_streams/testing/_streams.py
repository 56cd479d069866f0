"""Fresh, uniquely named streams for one test."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Final

import durable_streams as ds

__all__ = ["StreamFactory"]

# Characters that need no percent-encoding: fault injection matches raw paths.
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")


def safe_segment(text: str) -> str:
    """``text`` as one path segment that needs no percent-encoding (never empty)."""
    return _UNSAFE.sub("-", text).strip("-")[:80] or "x"


class StreamFactory:
    """Makes streams no other test (and no earlier run) uses, on one session.

    Paths look like ``/<root>/<test name>-<random>/<name>-<n>``: unique across tests,
    runs and processes, and made only of characters that need no percent-encoding, so
    :meth:`ReferenceServer.inject` matches them as they are. Streams are not deleted
    afterwards (an in-memory server forgets them when it stops).

    The pytest plugin's ``durable_streams_stream_factory`` fixture is one of these, on
    ``durable_streams_session``, named after the test.
    """

    def __init__(self, session: ds.Session, *, test_name: str, root: str = "pytest") -> None:
        self.session = session
        self._base = f"/{safe_segment(root)}/{safe_segment(test_name)}-{uuid.uuid4().hex[:12]}"
        self._counter = itertools.count(1)

    def path(self, name: str = "stream") -> str:
        """A new unique stream path (no I/O); give it to the code under test."""
        return f"{self._base}/{safe_segment(name)}-{next(self._counter)}"

    async def __call__(
        self, name: str = "stream", *, content_type: str = "application/json"
    ) -> ds.Stream:
        """Create a new stream of ``content_type`` at a new unique path and return it.

        Waits for the server's answer. For other creation options (``ttl``,
        ``closed``, ``data``...), create ``session.stream(factory.path())`` yourself.

        Raises:
            durable_streams.DurableStreamsError: the server refused or could not be
                reached.
        """
        stream = self.session.stream(self.path(name), content_type=content_type)
        await stream.create(content_type=content_type)
        return stream
