"""StreamReader: catch-up, then long-poll or SSE, until end of stream."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from . import _reader_judge as judge
from ._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    InvalidOffsetError,
    LimitExceededError,
    NetworkError,
    ParseError,
    ReaderConsumedError,
    RequestTimeoutError,
    ResourceClosedError,
    TransportError,
    UsageError,
)
from ._log import log
from ._protocol import headers as h
from ._protocol.errors import Op, error_for, is_retryable_status, retry_after
from ._protocol.framing import is_json, parse_json_body
from ._protocol.redact import redact_url
from ._reader_queue import (
    NOTHING,
    SENTINELS,
    PendingQueue,
    Position,
    check_offset,
    parse_position,
    skip_units,
)
from ._reader_sse import SSE_MAX_FRUITLESS, SilenceTimer, SSEConnection, SSEOverflow
from ._session import session_wire
from ._transport import BodyStream, Response
from ._types import Batch

if TYPE_CHECKING:
    from ._protocol.retry import RetryBudget
    from ._stream import Stream

__all__ = ["LiveMode", "StreamReader", "check_offset"]


LiveMode: TypeAlias = bool | Literal["long-poll", "sse"]
_LIVE_MODES = (True, False, "long-poll", "sse")

# Answers in a row that place the stream's tail before the reader's position: after this
# many the position is taken to lie past the tail. Fewer are tolerated, and read again,
# because the file-backed reference server sends such answers when a read races an append.
_MAX_BEHIND: Final = 4


class _State(enum.Enum):
    """A reader's one lifecycle; :meth:`StreamReader._enter` is the one place it moves."""

    CATCH_UP = "catch-up"
    LONG_POLL = "long-poll"
    SSE = "sse"
    DONE = "done"  # nothing more to fetch (caught up, or the end of a closed stream)
    ENDED = "ended"  # done, and a consumer was told so: consuming again is refused
    CLOSED = "closed"  # aclose() was called: every use is refused


_FETCHING: Final = frozenset({_State.CATCH_UP, _State.LONG_POLL, _State.SSE})
# For the hot path of message iteration: an enum member's lookup costs more than the rest,
# and ``in`` a set of them runs Enum.__hash__, Python code: compare identities instead.
_CLOSED: Final = _State.CLOSED
_DONE: Final = _State.DONE
_ENDED: Final = _State.ENDED


class _BodyRead:
    """A byte-stream response body being delivered piece by piece."""

    __slots__ = ("delivered", "live", "meta", "offset", "received", "skip", "stream")

    def __init__(
        self, stream: BodyStream, meta: Batch[Any], start: Position, *, live: bool
    ) -> None:
        self.stream = stream
        self.live = live  # the answer to a long-poll: its silence is the reader's to bound
        self.meta = meta  # the answer's position and flags, from its headers
        self.offset = start.offset
        self.skip = start.skip  # bytes at the start still to drop (delivered before)
        self.delivered = start.skip  # bytes after ``offset`` handed on, counting skipped
        self.received = 0

    def take(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` not delivered before (after a re-read of the same range)."""
        self.received += len(chunk)
        if self.skip:
            cut = min(self.skip, len(chunk))
            self.skip -= cut
            chunk = chunk[cut:]
        self.delivered += len(chunk)
        return chunk


class StreamReader:
    """Reads a stream from an offset: an async iterator of messages, or of batches.

    Get one from :meth:`Stream.read`. Iterating it yields messages: parsed JSON values on
    ``application/json`` streams (each response's array flattened one level), and ``bytes``
    chunks on other streams. :meth:`batches` yields :class:`Batch` records instead, which
    carry the offset to checkpoint; :meth:`read_all`, :meth:`body` and :meth:`text`
    collect until the end.

    **Styles mix.** Every style takes from one queue of received messages: iterate a
    few messages, then ask for :meth:`batches` or :meth:`read_all`, and they carry on with
    exactly the next message (a batch then holds the rest of its delivery). Once the end
    was reached (``StopAsyncIteration``, or an accumulator returned) the reader is used
    up: starting to consume it again raises :class:`ReaderConsumedError`.

    **Positions.** :attr:`position` is where the reader stands after the last message
    it handed out, by any style; pass it to :meth:`Stream.read` to resume with exactly
    the next message. :attr:`offset` is never ahead of what was handed out.

    ``async with`` guarantees that an open connection is closed on exit; so does
    :meth:`aclose`, after which every method raises :class:`ResourceClosedError`.
    Cancelling a task that is waiting in the reader closes its connection but keeps its
    position: calling ``anext()`` on the same reader again (or starting
    ``read(reader.position)``) carries on with nothing skipped or repeated.

    Transient failures (network errors, 429, 5xx, a body cut short) are retried with
    backoff, forever by default while live (see :attr:`RetryPolicy.live_max_retries`,
    which counts failures in a row without progress). A malformed response raises
    :class:`ParseError` without moving the position, so iterating again retries it.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        offset: str = "-1",
        live: LiveMode = True,
        cursor: str | None = None,
    ) -> None:
        # Set first: __del__ looks at them even when validation below fails.
        self._sse: SSEConnection | None = None
        self._body: _BodyRead | None = None
        self._idle: SilenceTimer | None = None  # bounds a long-poll's silence (live_idle)
        at = parse_position(offset)
        if not any(
            live is mode or (isinstance(mode, str) and live == mode) for mode in _LIVE_MODES
        ):
            raise InvalidArgumentError(
                f"live must be True, False, 'long-poll' or 'sse', got {live!r}",
                argument="live",
            )
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            raise InvalidArgumentError(
                f"cursor must be a non-empty str, got {cursor!r}", argument="cursor"
            )
        self._stream = stream
        self._live: LiveMode = live
        self._at = at  # where the next request reads from (after what was received)
        self._cursor = cursor
        self._queue = PendingQueue()
        self._status: int | None = None
        self._up_to_date = False
        self._stream_closed = False
        self._sse_fruitless = 0  # SSE connections in a row that made no progress
        self._behind = 0  # answers in a row that placed the tail before the position
        self._budget: RetryBudget
        self._state = _State.CATCH_UP
        # Nothing to catch up on at "now": a live request there waits for new data at once.
        self._enter(
            self._live_state() if at.offset == "now" and live is not False else _State.CATCH_UP
        )

    # -- state ------------------------------------------------------------------------

    @property
    def position(self) -> str:
        """Where the reader stands after the last message it handed out, by any style.

        A string to store and pass to :meth:`Stream.read` (``read(position)``), which
        then starts with exactly the next message. It is a plain server offset between
        deliveries, and ``"<offset>,skip=<n>"`` inside one: ``n`` messages (bytes, on a
        byte stream) after ``offset``. (Until the first delivery of a reader started at
        ``"now"`` is handed out entirely, it is ``"now"``: where that delivery began is
        not known.)
        """
        return str(self._queue.position(self._at))

    @property
    def offset(self) -> str:
        """The server offset at or before :attr:`position`: never ahead of what was handed out.

        Inside a delivery it is the offset the delivery began at; use :attr:`position`
        (or ``Batch.offset``) to resume exactly.
        """
        return self._queue.position(self._at).offset

    @property
    def cursor(self) -> str | None:
        """The latest cursor the server sent."""
        return self._cursor

    @property
    def up_to_date(self) -> bool:
        """Whether the latest answer received reached the tail of the stream."""
        return self._up_to_date

    @property
    def stream_closed(self) -> bool:
        """Whether the end of a closed stream was received (nothing more will come)."""
        return self._stream_closed

    @property
    def status(self) -> int | None:
        """The HTTP status of the latest response (204: a long-poll ended with no data)."""
        return self._status

    @property
    def live(self) -> LiveMode:
        """The live mode asked for."""
        return self._live

    @property
    def mode(self) -> str:
        """The current phase: ``catch-up``, ``long-poll``, ``sse`` or ``done``.

        It is ``done`` once nothing more will be received, and after :meth:`aclose`.
        """
        return self._state.value if self._state in _FETCHING else "done"

    def __repr__(self) -> str:
        return (
            f"<StreamReader {redact_url(self._stream.url)!r} position={self.position!r} "
            f"state={self._state.value}>"
        )

    def _enter(self, state: _State) -> None:
        if self._state is _State.CLOSED:
            return  # closed while a step was under way: closed it stays
        self._state = state
        if state in _FETCHING:
            # One retry budget per phase, shared by every request of the phase and by
            # failures in the middle of a body; it is reset only by progress.
            policy = self._stream.session.retry
            limit = policy.max_retries if self._live is False else policy.live_max_retries
            self._budget = policy.budget(limit)
        else:
            self._drop_sse()
            self._drop_body()
            # The idle timer stays: another task may still be waiting on a long-poll
            # (unarmed, it fires at most once more, within live_idle, and does nothing).

    def _live_state(self) -> _State:
        if self._live is False:
            return _State.DONE
        return _State.SSE if self._live == "sse" else _State.LONG_POLL

    # -- life cycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close any open connection. Safe to call twice.

        Afterwards every method raises :class:`ResourceClosedError`; the properties
        (:attr:`position` among them) still answer.
        """
        self._enter(_State.CLOSED)

    async def __aenter__(self) -> StreamReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A reader abandoned mid-iteration (a ``break`` without ``async with``) must not
        # keep its connection; close() is synchronous, so this is safe here.
        if self._sse is not None:
            self._sse.close()
        if self._body is not None:
            self._body.stream.close()
        if self._idle is not None:
            self._idle.close()

    # -- the reading styles, all taking from one queue -----------------------------------

    def __aiter__(self) -> StreamReader:
        self._check(consuming=True)
        return self

    async def __anext__(self) -> Any:
        if self._state is _CLOSED:
            self._check()
        item = next(self._queue.head, NOTHING)  # the hot path: a message already here
        if item is NOTHING:
            while (item := self._queue.take_item()) is NOTHING:
                # _more() inline, and _step()'s awaitable awaited here: every coroutine
                # between a waiting live reader and its socket costs a frame per reader
                # and a resumption per chunk.
                state = self._state
                if state is _CLOSED or state is _DONE or state is _ENDED:
                    if not await self._more():
                        raise StopAsyncIteration
                else:
                    await self._step()
        return item

    def batches(self) -> _Batches:
        """Iterate over :class:`Batch` records instead of messages.

        A batch is yielded for every response (or SSE control span) that carried messages,
        on first reaching the tail (``up_to_date``, possibly with no items), and at the end
        of a closed stream (``closed``). After messages were taken one by one, the first
        batch holds the rest of their delivery. Pieces of a byte-stream response are joined.
        """
        self._check(consuming=True)
        return _Batches(self)

    async def read_all(self) -> list[Any]:
        """Every message until the end (caught up if ``live=False``, else end of stream)."""
        self._check(consuming=True)
        items: list[Any] = []
        while True:
            items.extend(self._queue.take_all())
            if not await self._more():
                return items

    async def body(self) -> bytes:
        """The bytes until the end, joined. Not for JSON streams (use ``read_all``).

        Raises:
            UsageError: the stream is a JSON stream; nothing was consumed (at most its
                first response was received, and is still there for ``read_all``).
        """
        self._check(consuming=True)
        while self._stream.content_type is None and self._state in _FETCHING:
            await self._step()  # the first answer says what the stream holds
        if is_json(self._stream.content_type):
            raise UsageError(
                "body() is for byte streams; a JSON stream's read_all() returns its messages"
            )
        return b"".join(await self.read_all())

    async def text(self, encoding: str = "utf-8") -> str:
        """:meth:`body` decoded as text."""
        return (await self.body()).decode(encoding)

    def _check(self, *, consuming: bool = False) -> None:
        if self._state is _State.CLOSED:
            raise ResourceClosedError("this reader was closed; call read() again")
        if consuming and self._state is _State.ENDED:
            raise ReaderConsumedError(
                "this reader already reached its end; call read() again (from its position)"
            )

    async def _next_batch(self) -> Batch[Any] | None:
        self._check()
        while (batch := self._queue.take_batch()) is None:
            if not await self._more():
                return None
        return batch

    async def _more(self) -> bool:
        """Receive more; ``False`` (and the reader is used up) once there is no more."""
        if self._state is _State.CLOSED:
            raise ResourceClosedError("this reader was closed while it was being read")
        if self._state in (_State.DONE, _State.ENDED):
            self._state = _State.ENDED
            return False
        await self._step()
        return True

    def _step(self) -> Coroutine[Any, Any, None]:
        """One step of receiving: a request, a piece of a body, or a chunk of SSE.

        Returns the step's coroutine for the caller to await (no frame of its own).
        """
        if self._body is not None:
            return self._body_step(self._body)
        if self._state is _State.SSE:
            return self._sse_step()
        return self._poll_step()

    # -- judging and taking an answer -------------------------------------------------

    def _meta(self, headers: Mapping[str, str], status: int) -> Batch[Any]:
        return judge.answer_meta(headers, status=status, at=self._at, url=self._stream.url)

    def _require_cursor(
        self,
        meta: Batch[Any],
        what: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        judge.require_cursor(
            meta, what, at=self._at, url=self._stream.url, status=status, headers=headers
        )

    def _objection(
        self, meta: Batch[Any], *, had_data: bool = False, skip_left: int = 0
    ) -> DurableStreamsError | None:
        return judge.objection(
            meta,
            at=self._at,
            url=self._stream.url,
            status=self._status,
            had_data=had_data,
            skip_left=skip_left,
        )

    async def _object(self, error: DurableStreamsError) -> None:
        """Read the answer ``error`` objects to again, after a backoff (or give up)."""
        if isinstance(error, InvalidOffsetError):
            self._behind += 1
            if self._behind >= _MAX_BEHIND:
                raise error
        log.warning("%s: %s; reading it again", redact_url(self._stream.url), error.message)
        await self._read_failed(error)

    def _accept(
        self, meta: Batch[Any], items: list[Any], *, skip_left: int, in_bytes: bool
    ) -> bool:
        """Take a judged answer: move the position, queue its items; whether it advanced."""
        start = self._at
        advanced = start.offset in SENTINELS or meta.offset > start.offset
        self._at = Position(meta.offset, skip_left)
        self._behind = 0
        if advanced:
            self._budget.reset()
        if meta.cursor:
            self._cursor = meta.cursor
        # Worth a batch even without items: the end of the stream, or reaching the tail.
        report = meta.closed or (meta.up_to_date and not self._up_to_date)
        self._up_to_date = meta.up_to_date
        if items or report or self._queue.body_open():
            self._queue.push(start, items, end=meta, report=report, in_bytes=in_bytes)
        if meta.closed:
            self._stream_closed = True
            self._enter(_State.DONE)
        elif meta.up_to_date and self._state is _State.CATCH_UP:
            self._enter(self._live_state())
        return advanced

    async def _read_failed(
        self, exc: DurableStreamsError, *, retry_after: float | None = None
    ) -> None:
        """Back off within the phase's budget after a failure, or give up with ``exc``.

        The failures are those the session could not retry itself: a body cut short, an
        SSE connection without progress, an answer to read again.
        """
        if self._state is _State.CLOSED:
            raise ResourceClosedError("this reader was closed while it was being read")
        if self._idle is not None:
            self._idle.stop()  # a backoff is no silence of the server's
        delay = self._budget.next_delay(retry_after)
        if delay is None:
            raise exc
        log.debug(
            "read from %s failed (%s); retrying in %.3fs", redact_url(self._stream.url), exc, delay
        )
        await asyncio.sleep(delay)

    def _located(self, exc: ParseError) -> ParseError:
        """``exc`` with the position and URL of the read it broke (a parser knows neither)."""
        if exc.offset is None:
            exc.offset = str(self._at)
        if exc.url is None:
            exc.url = redact_url(self._stream.url)
        return exc

    # -- catch-up and long-poll -------------------------------------------------------

    async def _poll_step(self) -> None:
        if self._state is not _State.LONG_POLL:
            await self._poll(live=False)
            return
        idle = self._idle_timer()
        if idle is None:
            await self._poll(live=True)
            return
        # The request is watched (aiohttp bounds no silence, which would move a timer on
        # every arrival of bytes): this one lazy timer bounds the wait for the answer and
        # for its body by Timeouts.live_idle.
        idle.start()
        try:
            await self._poll(live=True)
        except asyncio.CancelledError:
            if not idle.expired():
                raise
        else:
            return
        finally:
            idle.stop()
        await self._read_failed(_silent_for(idle.limit, self._stream.url))

    def _idle_timer(self) -> SilenceTimer | None:
        """The reader's one timer on a long-poll's wait (None: no live_idle)."""
        if self._idle is None:
            limit = self._stream.session.timeout.live_idle
            if limit is None:
                return None
            self._idle = SilenceTimer(limit)
        return self._idle

    async def _poll(self, *, live: bool) -> None:
        """One catch-up or long-poll request, and its JSON body if it has one."""
        params = {h.PARAM_OFFSET: self._at.offset}
        if self._cursor is not None:
            params[h.PARAM_CURSOR] = self._cursor
        if live:
            params[h.PARAM_LIVE] = "long-poll"
        session, url = self._stream.session, self._stream.url
        if live and is_json(self._stream.content_type):
            # The session's other readers at this position ask the same: one request.
            await self._poll_shared(url, params)
            return
        result = await session_wire(session).request(
            "GET", url, params=params, budget=self._budget, stream=True, watched=live
        )
        self._status = result.status
        if isinstance(result, Response):
            await self._poll_answered(result, live=live)
            return
        try:
            meta = self._meta(result.headers, result.status)
            objection = self._objection(meta)  # an answer behind: not even its headers count
            if objection is None and live:
                self._require_cursor(
                    meta, "long-poll response", status=result.status, headers=result.headers
                )
        except BaseException:
            result.close()
            raise
        if objection is not None:
            result.close()
            await self._object(objection)
            return
        content_type = result.headers.get(h.CONTENT_TYPE)
        if content_type:
            self._stream.content_type = content_type
        if is_json(self._stream.content_type):
            await self._json_body(result, meta)
        else:
            # The count of bytes already delivered from this offset stays in the position
            # until now, so a cancellation while the request was on its way loses nothing.
            self._body = _BodyRead(result, meta, self._at, live=live)

    async def _poll_shared(self, url: str, params: dict[str, str]) -> None:
        """A long-poll of a JSON stream, shared with the session's readers asking the same.

        The answer comes whole and is judged as this reader's own answer; a failure, or a
        status worth retrying, is backed off within this reader's budget.
        """
        try:
            answer = await session_wire(self._stream.session).poll(url, params, budget=self._budget)
        except TransportError as exc:
            await self._read_failed(exc)
            return
        except LimitExceededError as exc:
            raise self._located(exc) from None
        self._status = status = answer.status
        if status != 200:
            if is_retryable_status(status):
                error = error_for(status, answer.headers, op=Op.READ, url=url)
                await self._read_failed(error, retry_after=retry_after(answer.headers))
                return
            await self._poll_answered(answer, live=True)
            return
        meta = self._meta(answer.headers, status)
        objection = self._objection(meta)
        if objection is not None:
            await self._object(objection)
            return
        self._require_cursor(meta, "long-poll response", status=status, headers=answer.headers)
        await self._take_json(answer.body, meta)

    async def _poll_answered(self, result: Response, *, live: bool) -> None:
        """A read answered without a body to stream: 204 (a long-poll's wait ended), or an error."""
        if result.status != 204:
            raise error_for(result.status, result.headers, op=Op.READ, url=self._stream.url)
        meta = self._meta(result.headers, result.status)
        objection = self._objection(meta, skip_left=self._at.skip)
        if objection is not None:
            await self._object(objection)
            return
        if live:
            self._require_cursor(meta, "long-poll response", status=204, headers=result.headers)
        self._accept(meta, [], skip_left=self._at.skip, in_bytes=False)

    async def _json_body(self, result: BodyStream, meta: Batch[Any]) -> None:
        try:
            body = await result.read_all()
        except TransportError as exc:
            # Nothing of this body was delivered: count the failure and read again.
            await self._read_failed(exc)
            return
        except LimitExceededError as exc:
            raise self._located(exc) from None
        finally:
            result.close()
        await self._take_json(body, meta)

    async def _take_json(self, body: bytes, meta: Batch[Any]) -> None:
        """Judge and take the messages of a JSON answer's whole body."""
        received = parse_json_body(body, offset=str(self._at), url=self._stream.url)
        items, skip_left = skip_units(received, self._at.skip, in_bytes=False)
        objection = self._objection(meta, had_data=bool(received), skip_left=skip_left)
        if objection is not None:
            await self._object(objection)
            return
        self._accept(meta, items, skip_left=skip_left, in_bytes=False)

    async def _body_step(self, body: _BodyRead) -> None:
        """Deliver the next piece of a byte-stream body, or finish it."""
        idle = self._idle if body.live else None
        if idle is not None:
            idle.start()
        try:
            chunk = await body.stream.read_chunk()
        except asyncio.CancelledError:
            self._drop_body()
            if idle is None or not idle.expired():
                raise
            await self._read_failed(_silent_for(idle.limit, self._stream.url))
            return
        except BaseException as exc:
            # Data at an offset never changes: the next read asks for the same offset and
            # skips what this body already delivered (the position says how much), so
            # nothing is lost or repeated.
            self._drop_body()
            if not isinstance(exc, TransportError):
                raise
            await self._read_failed(exc)
            return
        finally:
            if idle is not None:
                idle.stop()
        if chunk:
            piece = body.take(chunk)
            if piece:
                self._queue.push(self._at, [piece], end=None, report=True, in_bytes=True)
                self._at = Position(body.offset, body.delivered)
                self._budget.reset()  # progress: these bytes are never read again
            return
        self._drop_body()
        objection = self._objection(body.meta, had_data=body.received > 0, skip_left=body.skip)
        if objection is not None:
            await self._object(objection)
            return
        self._accept(body.meta, [], skip_left=body.skip, in_bytes=True)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.stream.close()

    # -- SSE --------------------------------------------------------------------------

    async def _sse_step(self) -> None:  # noqa: PLR0912 - one frame for the hot path
        if self._sse is None:
            opened = await self._sse_open()
            if opened is None:
                return  # no answer within Timeouts.live_idle: backed off, try again
            self._sse = opened
        connection = self._sse
        silence = connection.silence
        try:
            if silence is None:
                chunk = await connection.body.read_chunk()
            else:
                # _sse_read's first wait, inline: the common case costs no frame of its own.
                silent = False
                silence.start()
                try:
                    chunk = await connection.body.read_chunk()
                except asyncio.CancelledError:
                    if not silence.expired():
                        raise
                    silent = True
                finally:
                    silence.stop()
                if silent:
                    chunk = await self._sse_silent(connection, silence)
            objection = self._sse_feed(connection, chunk) if chunk else None
        except asyncio.CancelledError:
            # Undelivered data is dropped with the connection; the next read resumes
            # from the last control event's offset, so nothing is lost or repeated.
            self._drop_sse()
            raise
        except TransportError as exc:
            await self._sse_ended(connection, exc)
            return
        except SSEOverflow:
            self._drop_sse()
            self._fall_back("SSE data waiting for its control event exceeds Limits.max_body_bytes")
            return
        except DurableStreamsError:
            self._drop_sse()
            raise
        if not chunk:
            await self._sse_ended(connection, None)
        elif objection is not None:
            self._drop_sse()
            await self._object(objection)

    async def _sse_open(self) -> SSEConnection | None:
        """Open an SSE connection; ``None`` if no answer came within ``Timeouts.live_idle``.

        The request is *watched*: aiohttp puts no limit on the server's silence (it would
        move a timer on every arrival of bytes), so the reader bounds the wait for the
        answer here and then the silence of the connection (see :meth:`_sse_silent`).
        """
        if self._stream.content_type is None:
            await self._stream.resolve_content_type()  # how to decode data events
        params = {h.PARAM_OFFSET: self._at.offset, h.PARAM_LIVE: "sse"}
        if self._cursor is not None:
            params[h.PARAM_CURSOR] = self._cursor
        session, url = self._stream.session, self._stream.url
        timeouts = session.timeout
        # One timer per connection: first on the wait for the answer, then on its silence.
        limits = [t for t in (timeouts.sse_probe, timeouts.live_idle) if t is not None]
        silence = SilenceTimer(min(limits)) if limits else None
        waiting = silence if timeouts.live_idle is not None else None
        connection: SSEConnection | None = None
        try:
            if waiting is not None:
                waiting.start(timeouts.live_idle)
            try:
                result = await session_wire(session).request(
                    "GET", url, params=params, budget=self._budget, stream=True, watched=True
                )
            except asyncio.CancelledError:
                if waiting is None or not waiting.expired():
                    raise
                result = None  # no answer within live_idle
            finally:
                if waiting is not None:
                    waiting.stop()
            if result is not None:
                self._status = result.status
                if isinstance(result, Response):
                    raise error_for(result.status, result.headers, op=Op.READ, url=url)
                json = is_json(self._stream.content_type)
                connection = SSEConnection(
                    result, session.limits, json=json, url=url, silence=silence
                )
        finally:
            if connection is None and silence is not None:
                silence.close()
        if connection is None:
            await self._read_failed(_silent_for(timeouts.live_idle, url))
        return connection

    async def _sse_silent(self, connection: SSEConnection, silence: SilenceTimer) -> bytes:
        """The next chunk of a connection silent for ``silence.limit`` seconds already.

        Until ``Timeouts.live_idle`` of silence, the connection is kept, and every
        ``Timeouts.sse_probe`` a HEAD request asks whether the stream still exists (a
        deleted stream's connection may just go silent: the probe's 404 or 410 ends the
        read). After ``live_idle`` the connection counts as dead:
        :class:`RequestTimeoutError`, and the reader reconnects.
        """
        timeouts = self._stream.session.timeout
        idle, probe = timeouts.live_idle, timeouts.sse_probe
        loop = asyncio.get_running_loop()
        quiet_since = silence.began
        while True:
            quiet = loop.time() - quiet_since
            if idle is not None and quiet >= idle:
                raise _silent_for(idle, self._stream.url)
            if probe is not None:
                await self._probe()
            left = silence.limit if idle is None else idle - (loop.time() - quiet_since)
            silence.start(max(min(silence.limit, left), 0.0))
            try:
                return await connection.body.read_chunk()
            except asyncio.CancelledError:
                if not silence.expired():
                    raise
            finally:
                silence.stop()

    async def _probe(self) -> None:
        session, url = self._stream.session, self._stream.url
        try:
            wire = session_wire(session)
            answer = await wire.fetch("HEAD", url, budget=wire.once())
        except TransportError as exc:
            # The connection's own fate will tell whether the server is gone.
            log.debug("probe of %s failed (%s)", redact_url(url), exc)
            return
        if answer.status in (404, 410):
            raise error_for(answer.status, answer.headers, op=Op.HEAD, url=url)

    def _sse_feed(self, connection: SSEConnection, chunk: bytes) -> DurableStreamsError | None:
        """Take the events in ``chunk``; an objection stops at the control event it is about.

        This runs once per delivery per live reader (the fan-out hot path): the common case,
        an offset that moves forward with nothing to skip, is told apart with plain
        comparisons before the judge is asked.
        """
        try:
            spans = connection.feed(chunk, at=self._at)
        except LimitExceededError as exc:
            raise self._located(exc) from None
        in_bytes = not connection.json
        for control, received in spans:
            at = self._at
            if at.skip:
                items, skip_left = skip_units(received, at.skip, in_bytes=in_bytes)
            else:
                items, skip_left = received, 0
            meta: Batch[Any] = Batch(
                [], control.next_offset, control.cursor, control.up_to_date, control.closed
            )
            if skip_left or at.offset in SENTINELS or meta.offset <= at.offset:
                objection = self._objection(meta, had_data=bool(received), skip_left=skip_left)
                if objection is not None:
                    return objection
            if not meta.cursor and not meta.closed:
                self._require_cursor(meta, "SSE control event")
            if self._accept(meta, items, skip_left=skip_left, in_bytes=in_bytes):
                connection.advanced = True
            connection.current = connection.current or meta.up_to_date
            if meta.closed:
                break
        return None

    async def _sse_ended(self, connection: SSEConnection, exc: TransportError | None) -> None:
        """The connection ended without closing the stream: judge its progress, reconnect.

        Progress is an advanced offset, or an up-to-date answer on a connection that was
        not short. Connections that end without it (a buffering proxy; a proxy that cuts
        every connection before a reader far behind reaches its first control event) are
        failures without progress, backed off within the budget; after
        :data:`SSE_MAX_FRUITLESS` of them in a row the reader falls back to long-poll.
        """
        self._drop_sse()
        if connection.fruitful():
            self._sse_fruitless = 0
            if exc is None:
                return  # the server recycled a working connection: reconnect at once
        else:
            self._sse_fruitless += 1
            if self._sse_fruitless >= SSE_MAX_FRUITLESS:
                self._fall_back(f"{SSE_MAX_FRUITLESS} SSE connections in a row made no progress")
                return
        await self._read_failed(
            exc or NetworkError("SSE connection ended without progress", url=self._stream.url)
        )

    def _fall_back(self, why: str) -> None:
        log.warning(
            "%s: %s (a buffering or cutting proxy?); falling back to long-poll",
            redact_url(self._stream.url),
            why,
        )
        self._enter(_State.LONG_POLL)

    def _drop_sse(self) -> None:
        connection, self._sse = self._sse, None
        if connection is not None:
            connection.close()


def _silent_for(seconds: float | None, url: str) -> RequestTimeoutError:
    return RequestTimeoutError(f"no byte from the server for {seconds} s (live_idle)", url=url)


class _Batches:
    """The batch iterator of one reader (an object, not a generator, so nothing leaks)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> Batch[Any]:
        batch = await self._reader._next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def aclose(self) -> None:
        """Close the reader."""
        await self._reader.aclose()
