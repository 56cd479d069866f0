"""One SSE connection of a reader (no I/O: the reader does the waiting).

It holds the connection's parser, the data waiting for its control event, and what the
connection achieved, which decides whether SSE works at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._errors import ParseError
from ._protocol import headers as h
from ._protocol.framing import decode_base64_event, parse_json_event
from ._protocol.sse import Control, SSEParser, parse_control

if TYPE_CHECKING:
    from ._config import Limits
    from ._transport import BodyStream

__all__ = ["SSE_MAX_FRUITLESS", "SSE_SHORT_CONNECTION", "SSEConnection", "SSEOverflow"]

# An SSE connection that ends sooner than this counts as "short": being told "up to
# date" on it is no sign that SSE works (a proxy may let only the first event through).
SSE_SHORT_CONNECTION: Final = 1.0
# This many connections in a row without progress mean that SSE cannot work between us
# and the server (a buffering proxy, a proxy that cuts long responses): the reader falls
# back to long-poll.
SSE_MAX_FRUITLESS: Final = 3


class SSEOverflow(Exception):  # noqa: N818 - internal control flow, never raised to users
    """The data events waiting for their control event exceed ``Limits.max_body_bytes``."""


class SSEConnection:
    """An open SSE response: events in, ``(control, items)`` spans out.

    Data events are held until the control event that gives their offset; a connection
    that ends before it loses them, and the reconnect, from the last control event's
    offset, receives them again.
    """

    __slots__ = (
        "_max_pending",
        "advanced",
        "base64",
        "body",
        "current",
        "json",
        "opened",
        "parser",
        "pending",
        "pending_size",
        "url",
    )

    def __init__(self, body: BodyStream, limits: Limits, *, json: bool, url: str) -> None:
        self.body = body
        self.url = url
        self.parser = SSEParser(
            max_line=limits.max_sse_line_bytes, max_event=limits.max_sse_event_bytes
        )
        self.base64 = body.headers.get(h.SSE_DATA_ENCODING, "").strip().lower() == "base64"
        self.json = json and not self.base64
        self.pending: list[Any] = []
        self.pending_size = 0
        self._max_pending = limits.max_body_bytes
        self.opened = time.monotonic()
        self.advanced = False  # a control event moved the reader's offset
        self.current = False  # a control event said the reader is up to date

    def fruitful(self) -> bool:
        """Whether the connection made progress (see :meth:`StreamReader._sse_ended`)."""
        lasted = time.monotonic() - self.opened
        return self.advanced or (self.current and lasted >= SSE_SHORT_CONNECTION)

    def feed(self, chunk: bytes, *, offset: str) -> list[tuple[Control, list[Any]]]:
        """The control events ``chunk`` completes, each with the data received before it.

        ``offset`` is the reader's position, for errors. Raises :class:`ParseError` on a
        malformed body or event, :class:`LimitExceededError` past the parser's limits, and
        :class:`SSEOverflow` when the data waiting for a control event grows too large.
        """
        try:
            events = self.parser.feed(chunk)
        except UnicodeDecodeError as exc:
            raise ParseError("SSE body is not UTF-8", offset=offset, url=self.url) from exc
        decode = self._decoder(offset)
        spans: list[tuple[Control, list[Any]]] = []
        for event in events:
            if event.type == "data":
                self.pending.extend(decode(event.data))
                self.pending_size += len(event.data)
                if self.pending_size > self._max_pending:
                    raise SSEOverflow
            elif event.type == "control":
                control = parse_control(event.data, offset=offset, url=self.url)
                spans.append((control, self.pending))
                self.pending, self.pending_size = [], 0
                if control.closed:
                    break
            # Unknown event types are skipped: the protocol may grow new ones.
        return spans

    def _decoder(self, offset: str) -> Callable[[str], list[Any]]:
        url = self.url
        # A byte payload that decodes to nothing is no item, as an empty body is none.
        if self.base64:
            return lambda data: (
                [b] if (b := decode_base64_event(data, offset=offset, url=url)) else []
            )
        if self.json:
            return lambda data: parse_json_event(data, offset=offset, url=url)
        return lambda data: [data.encode()] if data else []
