"""The producer's only contact with the handles' internals, kept in one place.

Two calls reach into :class:`Stream` and :class:`Session`: learning the stream's content
type and sending one request. They move to the package's internal interface when it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._stream import Stream
    from .._transport import Response

__all__ = ["known_content_type", "post_once"]


async def known_content_type(stream: Stream) -> str:
    """The stream's content type, with one HEAD if the handle does not know it yet."""
    return await stream._known_content_type()


async def post_once(stream: Stream, headers: Mapping[str, str], body: bytes) -> Response:
    """One POST to the stream, one attempt (a budget of no retries).

    The producer owns the retries of its batches: a budget per batch, around its gap
    waits and claims.
    """
    session = stream.session
    return await session._fetch(
        "POST", stream.url, headers=headers, body=body, budget=session.retry.budget(0)
    )
