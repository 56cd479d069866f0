"""An incremental Server-Sent Events parser, and the protocol's control events.

Lines end only at CRLF, LF or CR. ``str.splitlines`` would also break at U+0085, U+2028,
U+2029 and a few control characters, corrupting payloads that contain them.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

from .._errors import ParseError
from .framing import _loads

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when unnamed) and its joined data."""

    type: str
    data: str


class SSEParser:
    """Turns chunks of an ``text/event-stream`` body into events.

    ``feed()`` accepts bytes split anywhere, even inside a UTF-8 sequence or a CRLF pair,
    and returns the events completed so far. Raises :class:`UnicodeDecodeError` on bytes
    that are not UTF-8.
    """

    __slots__ = ("_buffer", "_data", "_decoder", "_has_event", "_skip_lf", "_type")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._type: str | None = None
        self._data: list[str] = []
        self._has_event = False
        # A chunk that ended in CR ended a line; an LF opening the next chunk is its pair.
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse more of the body; return the events it completed."""
        text = self._buffer + self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        lines = _LINE_END.split(text)
        self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of body: an event without its closing blank line is incomplete and dropped."""
        self._decoder.decode(b"", final=True)
        self._buffer = ""
        self._skip_lf = False
        self._reset()
        return []

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_event = True
        elif name == "event":
            self._type = value
            self._has_event = True
        # "id" and "retry" are ignored: resumption goes through offsets, not Last-Event-ID.
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_event:
            return None
        event = SSEEvent(self._type or "message", "\n".join(self._data))
        self._reset()
        return event

    def _reset(self) -> None:
        self._type = None
        self._data = []
        self._has_event = False


@dataclass(frozen=True, slots=True)
class Control:
    """A ``control`` event: the position after the data events that preceded it."""

    next_offset: str
    cursor: str | None
    up_to_date: bool
    closed: bool


def parse_control(data: str, *, offset: str | None, url: str | None = None) -> Control:
    """Parse a control event's JSON. Empty or malformed control data is a :class:`ParseError`."""
    try:
        value: Any = _loads(data)
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
        raise ParseError(
            f"malformed SSE control event: {data[:80]!r}", offset=offset, url=url
        ) from exc
    if not isinstance(value, dict):
        raise ParseError("SSE control event is not a JSON object", offset=offset, url=url)
    next_offset = value.get("streamNextOffset")
    if not isinstance(next_offset, str) or not next_offset:
        raise ParseError("SSE control event has no streamNextOffset", offset=offset, url=url)
    cursor = value.get("streamCursor")
    closed = value.get("streamClosed") is True
    return Control(
        next_offset=next_offset,
        cursor=cursor if isinstance(cursor, str) else None,
        up_to_date=closed or value.get("upToDate") is True,
        closed=closed,
    )
