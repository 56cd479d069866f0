"""One SSE connection of a reader (no I/O: the reader does the waiting).

It holds the connection's parser, the data waiting for its control event, what the
connection achieved, which decides whether SSE works at all, and its silence timer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from ._errors import ParseError
from ._protocol import headers as h
from ._protocol.framing import decode_base64_event, parse_json_event
from ._protocol.sse import Control, SSEParser, parse_control

if TYPE_CHECKING:
    from ._config import Limits
    from ._reader_queue import Position
    from ._transport import BodyStream

__all__ = [
    "SSE_MAX_FRUITLESS",
    "SSE_SHORT_CONNECTION",
    "SSEConnection",
    "SSEOverflow",
    "SilenceTimer",
]

# An SSE connection that ends sooner than this counts as "short": being told "up to
# date" on it is no sign that SSE works (a proxy may let only the first event through).
SSE_SHORT_CONNECTION: Final = 1.0
# This many connections in a row without progress mean that SSE cannot work between us
# and the server (a buffering proxy, a proxy that cuts long responses): the reader falls
# back to long-poll.
SSE_MAX_FRUITLESS: Final = 3


class SSEOverflow(Exception):  # noqa: N818 - internal control flow, never raised to users
    """The data events waiting for their control event exceed ``Limits.max_body_bytes``."""


class SilenceTimer:
    """Interrupts a wait for the next chunk that lasted ``limit`` seconds, cheaply.

    ``asyncio.timeout`` around every read would schedule and cancel a timer per chunk: with
    thousands of live readers that is a heap push and a cancelled handle per delivery per
    reader. This keeps one timer per connection and re-arms it lazily: a wait only records
    when it began, and a timer that fires early (the wait it was armed for ended) moves
    itself to the current wait's deadline. A wait that lasts ``limit`` is cancelled the way
    ``asyncio.timeout`` does it (``Task.cancel``, told apart from other cancellations by
    ``Task.uncancel``), and :meth:`expired` then says so.
    """

    __slots__ = (
        "_armed",
        "_cancelling",
        "_deadline",
        "_fired",
        "_handle",
        "_since",
        "_task",
        "limit",
    )

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None  # the task waiting, while it waits
        self._since = 0.0
        self._deadline = 0.0
        self._armed = 0.0  # when the armed handle fires
        self._cancelling = 0
        self._fired = False

    @property
    def began(self) -> float:
        """When the current (or last) wait began, in the event loop's time."""
        return self._since

    def start(self, limit: float | None = None) -> None:
        """A wait begins (in the current task); ``limit``: this wait's own, if not ``limit``."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self._task, self._since, self._cancelling = task, loop.time(), task.cancelling()
        deadline = self._since + (self.limit if limit is None else limit)
        self._deadline = deadline
        handle = self._handle
        if handle is None or self._armed > deadline:
            if handle is not None:
                handle.cancel()  # armed for a later deadline than this wait's (a longer one)
            self._armed = deadline
            self._handle = loop.call_at(deadline, self._fire)

    def stop(self) -> None:
        """The wait ended (the timer stays armed for the next one)."""
        self._task = None

    def expired(self) -> bool:
        """After a ``CancelledError`` in the wait: whether this timer caused it (and only it)."""
        if not self._fired:
            return False
        self._fired = False
        task = asyncio.current_task()
        assert task is not None
        return task.uncancel() <= self._cancelling

    def close(self) -> None:
        """Disarm for good (the connection is dropped)."""
        handle, self._handle, self._task = self._handle, None, None
        if handle is not None:
            handle.cancel()

    def _fire(self) -> None:
        self._handle = None
        task = self._task
        if task is None:
            return  # no wait now: the next one arms a timer again
        loop = task.get_loop()
        deadline = self._deadline
        if loop.time() < deadline:
            self._armed = deadline
            self._handle = loop.call_at(deadline, self._fire)
            return
        self._fired = True
        task.cancel()


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
        "silence",
        "url",
    )

    def __init__(
        self,
        body: BodyStream,
        limits: Limits,
        *,
        json: bool,
        url: str,
        silence: SilenceTimer | None = None,
    ) -> None:
        self.body = body
        self.url = url
        # The connection's one timer (closed with it): the silence after which the reader
        # probes the stream or gives the connection up. None: no limit, no probe.
        self.silence = silence
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

    def close(self) -> None:
        """Drop the connection and its timer. Safe to call more than once."""
        if self.silence is not None:
            self.silence.close()
        self.body.close()

    def fruitful(self) -> bool:
        """Whether the connection made progress (see :meth:`StreamReader._sse_ended`)."""
        lasted = time.monotonic() - self.opened
        return self.advanced or (self.current and lasted >= SSE_SHORT_CONNECTION)

    def feed(self, chunk: bytes, *, at: Position) -> list[tuple[Control, list[Any]]]:
        """The control events ``chunk`` completes, each with the data received before it.

        ``at`` is the reader's position, for errors. Raises :class:`ParseError` on a
        malformed body or event, :class:`LimitExceededError` past the parser's limits, and
        :class:`SSEOverflow` when the data waiting for a control event grows too large.
        """
        try:
            events = self.parser.feed(chunk)
        except UnicodeDecodeError as exc:
            raise ParseError("SSE body is not UTF-8", offset=str(at), url=self.url) from exc
        spans: list[tuple[Control, list[Any]]] = []
        if not events:
            return spans
        offset, url = str(at), self.url
        for kind, data in events:
            if kind == "data":
                if self.json:
                    self.pending.extend(parse_json_event(data, offset=offset, url=url))
                else:
                    self.pending.extend(self._bytes(data, offset))
                self.pending_size += len(data)
                if self.pending_size > self._max_pending:
                    raise SSEOverflow
            elif kind == "control":
                control = parse_control(data, offset=offset, url=url)
                spans.append((control, self.pending))
                self.pending, self.pending_size = [], 0
                if control.closed:
                    break
            # Unknown event types are skipped: the protocol may grow new ones.
        return spans

    def _bytes(self, data: str, offset: str) -> list[bytes]:
        """The item of a data event on a byte stream (none for an empty payload)."""
        # A byte payload that decodes to nothing is no item, as an empty body is none.
        if self.base64:
            payload = decode_base64_event(data, offset=offset, url=self.url)
        else:
            payload = data.encode()
        return [payload] if payload else []
