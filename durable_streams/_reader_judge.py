"""How a reader judges an answer before taking it (no I/O).

An answer must carry the headers its kind requires, or it is refused with
:class:`MissingHeaderError`. An answer that carries them may still have to be read again
instead of taken (an *objection*): one that places the stream's tail before the reader's
position, and one whose data does not move the offset. Offsets of one stream sort as
strings, which is what makes both recognisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import DurableStreamsError, InvalidOffsetError, MissingHeaderError, ParseError
from ._protocol import headers as h
from ._reader_queue import SENTINELS, Position
from ._types import Batch

__all__ = ["answer_meta", "objection", "require_cursor"]


def answer_meta(headers: Mapping[str, str], *, status: int, at: Position, url: str) -> Batch[Any]:
    """The position and flags of a read answer (no items), which must have a next offset."""
    meta = h.read_meta(headers)
    if not meta.next_offset:
        raise MissingHeaderError(
            h.STREAM_NEXT_OFFSET,
            what="read response",
            offset=str(at),
            url=url,
            status=status,
            headers=headers,
        )
    return Batch([], meta.next_offset, meta.cursor, meta.up_to_date, meta.closed)


def require_cursor(
    meta: Batch[Any],
    what: str,
    *,
    at: Position,
    url: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Refuse a live answer without a cursor while the stream is open (CDN collapsing)."""
    if not meta.cursor and not meta.closed:
        raise MissingHeaderError(
            h.STREAM_CURSOR, what=what, offset=str(at), url=url, status=status, headers=headers
        )


def objection(
    meta: Batch[Any],
    *,
    at: Position,
    url: str,
    status: int | None,
    had_data: bool = False,
    skip_left: int = 0,
) -> DurableStreamsError | None:
    """Why an answer must be read again instead of taken, if it must.

    ``had_data``: the answer carried data (before any was skipped); ``skip_left``: units
    of the reader's position the answer's data did not cover. An
    :class:`InvalidOffsetError` says the position seems to lie past the tail.
    """
    if at.offset not in SENTINELS:
        if meta.offset < at.offset:
            return _past_tail(
                f"the server places the stream's tail at {meta.offset!r}, before the "
                f"reader's offset {at.offset!r}",
                url=url,
                status=status,
            )
        if had_data and meta.offset == at.offset:
            # Seen on the file-backed reference server when a read races an append: the
            # body has the new data but the header still has the old tail. Taking it and
            # reading on from that offset would repeat the data, so read it again.
            return ParseError(
                f"response carried data but its Stream-Next-Offset {meta.offset!r} does "
                "not advance past the offset read",
                offset=str(at),
                url=url,
            )
    if skip_left and meta.up_to_date:
        return _past_tail(
            f"position {str(at)!r} lies {skip_left} units past the stream's tail",
            url=url,
            status=status,
        )
    return None


def _past_tail(why: str, *, url: str, status: int | None) -> InvalidOffsetError:
    return InvalidOffsetError(
        f"{why}: an offset past the tail (a corrupt checkpoint?), or data the server lost",
        url=url,
        status=status,
    )
