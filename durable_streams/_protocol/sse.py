"""An incremental Server-Sent Events parser, and the protocol's control events.

Lines end only at CRLF, LF or CR. ``str.splitlines`` would also break at U+0085, U+2028,
U+2029 and a few control characters, corrupting payloads that contain them.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, NamedTuple

from .._errors import LimitExceededError, ParseError
from .framing import _loads

_LINE_END = re.compile(r"\r\n|\r|\n")

_MiB = 1024 * 1024


def _utf8_len(text: str) -> int:
    """The length of ``text`` in UTF-8 bytes (ASCII text, the common case, costs nothing)."""
    return len(text) if text.isascii() else len(text.encode())


def _split_lines(text: str) -> list[str]:
    """``text`` split at its line ends; the last piece is what follows the last one."""
    # Without a CR, the only line end is LF, and str.split is several times faster.
    return _LINE_END.split(text) if "\r" in text else text.split("\n")


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``message`` when unnamed) and its joined data."""

    type: str
    data: str


# Builds an SSEEvent or a Control from a tuple of its fields without calling the class's
# generated __new__ (a Python function): these are made once per event.
_new = tuple.__new__


class SSEParser:
    """Turns chunks of an ``text/event-stream`` body into events.

    ``feed()`` accepts bytes split anywhere, even inside a UTF-8 sequence or a CRLF pair,
    and returns the events completed so far. Raises :class:`UnicodeDecodeError` on bytes
    that are not UTF-8.

    Its work is linear in the body however it is split: each chunk's text is scanned once,
    and the text of a line still open is kept as a list of pieces joined only when the line
    ends. Memory is bounded too, in UTF-8 bytes of the body: a line (without its line end)
    longer than ``max_line`` bytes, or an event whose data (its ``data`` values joined with
    LF) is longer than ``max_event`` bytes, raises :class:`LimitExceededError` (``limit`` is
    ``"max_sse_line_bytes"`` or ``"max_sse_event_bytes"``). A piece of an unfinished line is
    checked before it is kept, so no more than ``max_line`` bytes of a line are ever held
    (besides the chunk being parsed). The error carries no ``offset`` or ``url``: the
    caller knows them.
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_event_bound",
        "_event_exact",
        "_event_size",
        "_has_event",
        "_held",
        "_max_event",
        "_max_line",
        "_open",
        "_open_bytes",
        "_skip_lf",
        "_type",
    )

    def __init__(self, *, max_line: int = 64 * _MiB, max_event: int = 64 * _MiB) -> None:
        if max_line < 1 or max_event < 1:
            raise ValueError("max_line and max_event must be positive")
        self._max_line = max_line
        self._max_event = max_event
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._held = False  # the decoder holds the start of a UTF-8 sequence
        # The line not ended yet, in pieces, and its length in UTF-8 bytes.
        self._open: list[str] = []
        self._open_bytes = 0
        self._type: str | None = None
        self._data: list[str] = []
        # The size of the event's data so far (see _line), and the size that needs a look.
        self._event_size = 0
        self._event_exact = False
        self._event_bound = max_event // 4 + 1
        self._has_event = False
        # A chunk that ended in CR ended a line; an LF opening the next chunk is its pair.
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse more of the body; return the events it completed."""
        # ASCII with no sequence pending is valid UTF-8 whatever it holds.
        text = chunk.decode() if chunk.isascii() and not self._held else self._decode(chunk)
        if not text:
            return []
        lines = _split_lines(text)
        tail = lines.pop()  # after the last line end: the start of a line still open
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":  # the LF of a CRLF whose CR ended the last chunk
                del lines[0]
        events: list[SSEEvent] = []
        if lines:
            self._skip_lf = text[-1] == "\r"
            if self._open:
                lines[0] = self._close_open(lines[0])
            quarter = self._max_line // 4  # a line of no more characters fits in any case
            for line in lines:
                if not line:  # a blank line dispatches the event
                    if self._has_event:
                        events.append(
                            _new(SSEEvent, (self._type or "message", "\n".join(self._data)))
                        )
                        self._reset()
                    continue
                if len(line) > quarter and _utf8_len(line) > self._max_line:
                    raise self._line_too_long()
                if line[0] != ":":  # not a comment
                    self._field(line)
        if tail:
            self._open_bytes = self._check_open(tail)
            self._open.append(tail)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of body: an event without its closing blank line is incomplete and dropped.

        Always returns ``[]``; raises :class:`UnicodeDecodeError` if the body ended inside
        a UTF-8 sequence. The parser is then as new.
        """
        self._decoder.decode(b"", final=True)
        self._held = False
        self._open = []
        self._open_bytes = 0
        self._skip_lf = False
        self._reset()
        return []

    def _decode(self, chunk: bytes) -> str:
        text = self._decoder.decode(chunk)
        self._held = bool(self._decoder.getstate()[0])
        return text

    def _close_open(self, end: str) -> str:
        """The open line, ended by ``end``; raises if that is too long."""
        self._check_open(end)
        self._open.append(end)
        line = "".join(self._open)
        self._open = []
        self._open_bytes = 0
        return line

    def _check_open(self, piece: str) -> int:
        """The open line's length with ``piece`` added; raises if that is too long."""
        size = self._open_bytes + _utf8_len(piece)
        if size > self._max_line:
            raise self._line_too_long()
        return size

    def _line_too_long(self) -> LimitExceededError:
        return LimitExceededError(
            "SSE line is too long", limit="max_sse_line_bytes", maximum=self._max_line
        )

    def _field(self, line: str) -> None:
        """Take one line that is neither blank nor a comment."""
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_event = True
            # Each value and the LF after it (one more than the joined data has). Counted in
            # characters while 4 bytes a character could not pass the limit, then in bytes.
            if self._event_exact:
                self._event_size += _utf8_len(value) + 1
            else:
                self._event_size += len(value) + 1
            if self._event_size > self._event_bound:
                self._check_event()
        elif name == "event":
            self._type = value
            self._has_event = True
        # "id" and "retry" are ignored: resumption goes through offsets, not Last-Event-ID.

    def _check_event(self) -> None:
        if not self._event_exact:
            self._event_exact = True
            self._event_bound = self._max_event + 1
            self._event_size = sum(_utf8_len(value) + 1 for value in self._data)
        if self._event_size > self._event_bound:
            raise LimitExceededError(
                "SSE event is too large", limit="max_sse_event_bytes", maximum=self._max_event
            )

    def _reset(self) -> None:
        self._type = None
        self._data = []
        self._event_size = 0
        self._event_exact = False
        self._event_bound = self._max_event // 4 + 1
        self._has_event = False


class Control(NamedTuple):
    """A ``control`` event: the position after the data events that preceded it."""

    next_offset: str
    cursor: str | None
    up_to_date: bool
    closed: bool


# The control event a server sends most, as the reference server writes it (JSON.stringify:
# no whitespace, this key order), is matched whole and skips the JSON parser; any other
# text takes the parser. A JSON string without a quote, a backslash or a control
# character is its own text, so the groups are what the parser would give.
_COMMON_CONTROL = re.compile(
    r'\{"streamNextOffset":"([^"\\\x00-\x1f]+)","streamCursor":"([^"\\\x00-\x1f]*)"'
    r'(,"upToDate":true)?\}'
)


def parse_control(data: str, *, offset: str | None, url: str | None = None) -> Control:
    """Parse a control event's JSON. Empty or malformed control data is a :class:`ParseError`."""
    match = _COMMON_CONTROL.fullmatch(data)
    if match is None:
        return _parse_control_json(data, offset=offset, url=url)
    next_offset, cursor, up_to_date = match.groups()
    return _new(Control, (next_offset, cursor, up_to_date is not None, False))


def _parse_control_json(data: str, *, offset: str | None, url: str | None) -> Control:
    """:func:`parse_control` of any text, through the JSON parser."""
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
