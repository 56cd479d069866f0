"""The producer's contact with its stream and session, kept in one place.

Two calls: learning the stream's content type (``Stream.resolve_content_type``) and
sending one request through the session's package-internal interface (``session_wire``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._session import session_wire

if TYPE_CHECKING:
    from .._stream import Stream
    from .._transport import Response

__all__ = ["known_content_type", "post_once"]


async def known_content_type(stream: Stream) -> str:
    """The stream's content type, with one HEAD if the handle does not know it yet."""
    return await stream.resolve_content_type()


async def post_once(stream: Stream, headers: Mapping[str, str], body: bytes) -> Response:
    """One POST to the stream, one attempt (a budget of no retries).

    The producer owns the retries of its batches: a budget per batch, around its gap
    waits and claims.
    """
    wire = session_wire(stream.session)
    return await wire.fetch("POST", stream.url, headers=headers, body=body, budget=wire.once())
