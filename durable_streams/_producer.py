"""IdempotentProducer: batches, one sender task, bounded in-flight, exactly-once retries."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import (
    BufferFullError,
    DurableStreamsError,
    InvalidArgumentError,
    ResourceClosedError,
    SequenceGapError,
    StaleEpochError,
    TransportError,
)
from ._protocol import headers as h
from ._protocol.errors import Op, error_for, is_retryable_status, retry_after
from ._protocol.framing import check_json_bytes, encode_json_value, frame_json_batch, is_json

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["IdempotentProducer", "ProducerAck", "ProducerStatistics", "Receipt"]

log = logging.getLogger("durable_streams")

MAX_SAFE_INTEGER = 2**53 - 1
_MISSING: Any = object()
# How many times one batch may be resent after 409 gaps caused by its own pipeline.
_MAX_GAP_WAITS = 3


@dataclass(frozen=True, slots=True)
class ProducerAck:
    """The server's acknowledgement of the batch that carried a message.

    Attributes:
        offset: the stream's tail after the batch; None for a duplicate, which the server
            acknowledges without an offset.
        duplicate: the server had this batch already (a retry after a lost answer); it
            was stored exactly once.
        epoch: the producer epoch the batch was written under.
        seq: the batch's sequence number in that epoch.
    """

    offset: str | None
    duplicate: bool
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """A snapshot of a producer's counters (see :meth:`IdempotentProducer.statistics`)."""

    epoch: int
    next_seq: int
    messages_buffered: int
    bytes_buffered: int
    batches_in_flight: int
    batches_sent: int
    messages_sent: int
    bytes_sent: int
    duplicates: int
    retries: int
    last_offset: str | None


class Receipt:
    """Awaitable acknowledgement of one appended message; ``await`` gives a :class:`ProducerAck`.

    Awaiting is optional: failures also surface from the producer's next ``append``,
    ``flush`` or exit. Raises the batch's error if it failed.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[ProducerAck]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, ProducerAck]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the server has answered (or the batch failed)."""
        return self._future.done()

    def result(self) -> ProducerAck:
        """The acknowledgement; raises if the batch failed or is not yet answered."""
        return self._future.result()


class _Batch:
    __slots__ = (
        "body",
        "close",
        "count",
        "data_bytes",
        "epoch",
        "future",
        "parts",
        "receipt",
        "seq",
        "size",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, *, framing: int) -> None:
        self.parts: list[bytes] = []
        # The body's length if sent now: the messages plus, on JSON streams, "[", "]"
        # and the commas between them.
        self.size = framing
        self.data_bytes = 0
        self.count = 0
        self.future: asyncio.Future[ProducerAck] = loop.create_future()
        self.epoch = 0
        self.seq = -1
        self.close = False
        self.body = b""
        # One receipt serves every message of the batch: they share one acknowledgement.
        self.receipt = Receipt(self.future)


def _aborted(*, sent: bool = False) -> ResourceClosedError:
    if sent:
        return ResourceClosedError(
            "the producer was stopped while this batch was in flight; "
            "the server may or may not have stored it"
        )
    return ResourceClosedError("the producer was stopped before this batch was sent")


def _check_int(name: str, value: object, *, low: int, high: int = MAX_SAFE_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(
            f"{name} must be an integer in [{low}, {high}], got {value!r}", argument=name
        )
    return value


class IdempotentProducer:
    """Writes messages to one stream exactly once, in order, in pipelined batches.

    Get one from :meth:`Stream.producer` and use it as an async context manager::

        async with stream.producer("billing-1") as producer:
            for event in events:
                await producer.append(event)

    ``append`` only buffers: a sender task (owned by the producer, started on entry and
    stopped on exit) closes a batch when it reaches ``max_batch_bytes`` or
    ``max_batch_items``, or when ``linger`` seconds have passed since its first message,
    and keeps at most ``max_in_flight`` batches in flight. Each batch carries
    (producer id, epoch, sequence), so retries of transient failures (network errors,
    timeouts, 429, 5xx; ``RetryPolicy.max_retries`` times with backoff) are deduplicated
    by the server: nothing is written twice, and batches land in order.

    Errors always propagate. A batch that fails fails its receipts, and the producer then
    refuses further work: the error is raised by the next :meth:`append`, by
    :meth:`flush` and on exit. :meth:`restart` starts a new epoch to carry on.

    Args:
        stream: the stream to write to.
        producer_id: a stable, non-empty name for this logical producer.
        epoch: the epoch to write under; raise it (or call :meth:`restart`) whenever the
            producer restarts, so the server fences older instances.
        auto_claim: on a 403 (a stored epoch is higher), take over with that epoch + 1.
            For producers that keep no epoch of their own; an old instance still running
            is then fenced. Until the claim lands, one batch is sent at a time.
        max_batch_bytes: the largest request body (a single larger message is sent alone).
        max_batch_items: the most messages in one batch (None: no limit).
        linger: seconds a non-full batch waits for more messages before it is sent.
        max_in_flight: the most batches sent and not yet answered.
        max_buffer_bytes: the most encoded bytes held (buffered or in flight); ``append``
            waits for room beyond it, ``append_nowait`` raises :class:`BufferFullError`.
    """

    def __init__(
        self,
        stream: Stream,
        producer_id: str,
        *,
        epoch: int = 0,
        auto_claim: bool = False,
        max_batch_bytes: int = 1024 * 1024,
        max_batch_items: int | None = None,
        linger: float = 0.005,
        max_in_flight: int = 5,
        max_buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not isinstance(producer_id, str) or not producer_id or not producer_id.isprintable():
            raise InvalidArgumentError(
                f"producer_id must be a non-empty printable str, got {producer_id!r}",
                argument="producer_id",
            )
        self._epoch = _check_int("epoch", epoch, low=0)
        if not isinstance(auto_claim, bool):
            raise InvalidArgumentError(
                f"auto_claim must be a bool, got {auto_claim!r}", argument="auto_claim"
            )
        self._max_batch_bytes = _check_int("max_batch_bytes", max_batch_bytes, low=1)
        self._max_batch_items = (
            None
            if max_batch_items is None
            else _check_int("max_batch_items", max_batch_items, low=1)
        )
        if (
            isinstance(linger, bool)
            or not isinstance(linger, int | float)
            or not math.isfinite(linger)
            or linger < 0
        ):
            raise InvalidArgumentError(
                f"linger must be a number of seconds >= 0, got {linger!r}", argument="linger"
            )
        self._max_in_flight = _check_int("max_in_flight", max_in_flight, low=1, high=1024)
        self._max_buffer_bytes = _check_int("max_buffer_bytes", max_buffer_bytes, low=1)
        self.stream = stream
        self.producer_id = producer_id
        self.auto_claim = auto_claim
        self._linger = float(linger)
        self._next_seq = 0
        # An epoch is "claimed" once a batch of it was accepted; until then, with
        # auto-claim, batches go one at a time so a claim cannot race renumbering.
        self._claimed = not auto_claim
        self._since_yield = 0
        self._state = "new"  # new -> running -> closed
        self._task: asyncio.Task[None] | None = None
        self._json = False
        self._content_type = ""
        self._open: _Batch | None = None
        self._sealed: deque[_Batch] = deque()
        self._in_flight: dict[int, _Batch] = {}
        self._failure: BaseException | None = None
        self._closing = False
        self._flush_requested = 0
        self._stream_closed_offset: str | None = None
        self._buffered_bytes = 0
        self._buffered_messages = 0
        self._last_offset: str | None = None
        self._stats = {"batches": 0, "messages": 0, "bytes": 0, "duplicates": 0, "retries": 0}
        # Batches created and not yet settled (open, sealed, waiting for a slot, in flight).
        self._unfinished: set[_Batch] = set()
        self._close_result: asyncio.Future[str] | None = None
        # The highest epoch the server reported when it fenced this producer.
        self._fenced_by: int | None = None
        # asyncio primitives bind to a loop only when first awaited, so creating them here
        # does no I/O and needs no running loop.
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._landed = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_in_flight)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the stream's content type (one HEAD if unknown) and start the sender task.

        Called by ``async with`` and, if needed, by the first :meth:`append`.
        """
        if self._state == "closed":
            raise ResourceClosedError("this producer is closed")
        if self._state == "running":
            return
        self._content_type = await self.stream._known_content_type()
        if self._state != "new":  # a concurrent start() won the race
            return
        self._json = is_json(self._content_type)
        self._state = "running"
        self._task = asyncio.create_task(
            self._run(), name=f"durable_streams producer {self.producer_id}"
        )

    async def __aenter__(self) -> IdempotentProducer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Cancelled or interrupted: stop at once; buffered messages fail.
            await self._abort()
            return
        await self.aclose()

    async def aclose(self) -> None:
        """Send everything buffered, wait for the answers, and stop the sender task.

        This detaches the producer; it does not close the stream (see
        :meth:`close_stream`). Raises the first failure of any batch. Safe to call twice.
        If cancelled while waiting, the sender task is cancelled and buffered messages
        fail; no task is left behind.
        """
        if self._state == "new":
            self._state = "closed"
            return
        if self._state == "closed":
            return
        self._closing = True
        self._wake()
        task = self._task
        try:
            if task is not None:
                await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._abort()
            raise
        finally:
            self._state = "closed"
        self._raise_failure()

    async def _abort(self) -> None:
        """Stop now: cancel the sender (and its requests); unsent batches fail."""
        self._state = "closed"
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            # wait() never raises the task's outcome, but a cancellation of the caller
            # still interrupts it.
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: its failure is already recorded
        self._fail_pending(_aborted())

    # -- appending --------------------------------------------------------------------

    async def append(self, value: object) -> Receipt:
        """Buffer one message; wait only while the buffer is full.

        On a JSON stream ``value`` is any JSON value (``bytes`` are taken as one encoded
        JSON value); otherwise ``bytes`` or ``str``. Returns a :class:`Receipt` to await
        the server's acknowledgement.

        Raises:
            InvalidArgumentError: the value cannot be sent on this stream (nothing is
                buffered, and nothing buffered before is affected).
            DurableStreamsError: an earlier batch failed (the producer stopped).
            ResourceClosedError: the producer was closed.

        If cancelled while waiting for room, the message is not buffered.
        """
        if self._state == "new":
            await self.start()
        data = self._encode(value)
        self._since_yield += 1
        if self._since_yield >= 128:
            # append() never suspends while there is room: without this the caller's
            # loop keeps the event loop, so the sender task and the connections only
            # progress at these yields. It comes before buffering: once the message is
            # buffered nothing may await, so a cancelled append never sends it.
            self._since_yield = 0
            await asyncio.sleep(0)
        while not self._fits(len(data)):
            self._space.clear()
            await self._space.wait()
        return self._buffer(data)

    def append_nowait(self, value: object) -> Receipt:
        """Buffer one message without waiting; :class:`BufferFullError` if there is no room.

        The producer must already be started (``async with`` or :meth:`start`).
        """
        if self._state == "new":
            raise ResourceClosedError("start the producer first (async with, or await start())")
        data = self._encode(value)
        if not self._fits(len(data)):
            raise BufferFullError(
                f"producer buffer full ({self._buffered_bytes} of {self._max_buffer_bytes} bytes)"
            )
        return self._buffer(data)

    def _encode(self, value: object) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            if self._json:
                # One bad message would make the server refuse its whole batch.
                return check_json_bytes(data)
        elif self._json:
            return encode_json_value(value)
        elif isinstance(value, str):
            data = value.encode()
        else:
            raise InvalidArgumentError(
                f"a {self._content_type} stream takes bytes or str, not {type(value).__name__}"
            )
        if not data:
            raise InvalidArgumentError("cannot append empty data", argument="value")
        return data

    def _check_usable(self) -> None:
        self._raise_failure()
        if self._state == "closed" or self._closing:
            raise ResourceClosedError("this producer is closed")
        if self._stream_closed_offset is not None:
            raise ResourceClosedError("this producer closed the stream")

    def _fits(self, size: int) -> bool:
        self._check_usable()
        if size > self._max_buffer_bytes:
            raise InvalidArgumentError(
                f"message of {size} bytes exceeds max_buffer_bytes ({self._max_buffer_bytes})"
            )
        return self._buffered_bytes + size <= self._max_buffer_bytes

    def _buffer(self, data: bytes) -> Receipt:
        batch = self._open
        size = len(data)
        # On JSON streams every message after the first adds a comma.
        added = size + 1 if self._json and batch is not None and batch.count else size
        if batch is not None and (
            batch.size + added > self._max_batch_bytes
            or (self._max_batch_items is not None and batch.count >= self._max_batch_items)
        ):
            self._seal()
            batch = None
        if batch is None:
            batch = self._open = self._new_batch()
            added = size
            self._wake()
        batch.parts.append(data)
        batch.size += added
        batch.data_bytes += size
        batch.count += 1
        self._buffered_bytes += size
        self._buffered_messages += 1
        return batch.receipt

    def _new_batch(self) -> _Batch:
        batch = _Batch(asyncio.get_running_loop(), framing=2 if self._json else 0)
        self._unfinished.add(batch)
        return batch

    def _seal(self) -> None:
        if self._open is not None:
            self._sealed.append(self._open)
            self._open = None
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- flushing and closing ---------------------------------------------------------

    async def flush(self) -> None:
        """Send everything buffered now and wait until the server has acknowledged it.

        Raises the failure of any batch (the producer then refuses further work).
        """
        if self._state == "new":
            return
        await self._settled(list(self._unfinished))
        self._raise_failure()

    async def _settled(self, batches: list[_Batch]) -> None:
        """Wait until these batches are answered (or failed), sending them without linger."""
        if not batches:
            return
        self._flush_requested += 1
        self._wake()
        try:
            await asyncio.wait([batch.future for batch in batches])
        finally:
            self._flush_requested -= 1

    async def close_stream(self, final: object = _MISSING) -> str:
        """Flush, then close the stream (EOF for readers) as part of this producer's sequence.

        ``final`` is appended atomically with the close. Because the close carries the
        producer headers it is safe to retry, and repeating this call returns the cached
        final offset. The producer accepts no more messages afterwards; leave the
        ``async with`` block (or :meth:`aclose`) as usual.

        Raises:
            StreamClosedError: the stream was already closed by someone else.
        """
        if self._close_result is None:
            if self._state == "new":
                await self.start()
            body = b""
            if final is not _MISSING:
                body = self._encode(final)
                if self._json:
                    body = frame_json_batch([body])
            self._close_result = asyncio.get_running_loop().create_future()
            try:
                self._close_result.set_result(await self._close(body))
            except BaseException as exc:
                failed, self._close_result = self._close_result, None
                failed.set_exception(exc if isinstance(exc, Exception) else _aborted())
                failed.exception()  # retrieved: raised below to this caller
                raise
        # A concurrent or repeated call shares the first one's outcome.
        return await asyncio.shield(self._close_result)

    async def _close(self, body: bytes) -> str:
        await self.flush()
        batch = self._new_batch()
        batch.close = True
        batch.body = body
        self._sealed.append(batch)
        self._wake()
        ack = await Receipt(batch.future)
        offset = ack.offset or self._last_offset or ""
        self._stream_closed_offset = offset
        return offset

    async def restart(self, epoch: int | None = None) -> None:
        """Carry on under a new epoch, from sequence 0.

        The default epoch is one above both the current one and any epoch the server
        fenced this producer with, so a restarted producer never reuses (and so never
        has deduplicated away) a pair another instance wrote under. Clears a failure:
        whatever failed stays failed (its receipts raised), and new messages go out
        under the new epoch. Waits for batches still in flight first.
        """
        if epoch is None:
            new_epoch = max(self._epoch, self._fenced_by or 0) + 1
        else:
            new_epoch = _check_int("epoch", epoch, low=0)
        if self._state == "running":
            await self._settled(list(self._unfinished))
        self._epoch = new_epoch
        self._next_seq = 0
        self._claimed = not self.auto_claim
        self._failure = None
        self._stream_closed_offset = None

    # -- observation ------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch (it changes after an auto-claim or :meth:`restart`)."""
        return self._epoch

    def statistics(self) -> ProducerStatistics:
        """A snapshot of the producer's counters."""
        stats = self._stats
        return ProducerStatistics(
            epoch=self._epoch,
            next_seq=self._next_seq,
            messages_buffered=self._buffered_messages,
            bytes_buffered=self._buffered_bytes,
            batches_in_flight=len(self._in_flight),
            batches_sent=stats["batches"],
            messages_sent=stats["messages"],
            bytes_sent=stats["bytes"],
            duplicates=stats["duplicates"],
            retries=stats["retries"],
            last_offset=self._last_offset,
        )

    def __repr__(self) -> str:
        return (
            f"<IdempotentProducer {self.producer_id!r} epoch={self._epoch} "
            f"next_seq={self._next_seq} {self._state}>"
        )

    # -- the sender task --------------------------------------------------------------

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                while (batch := await self._next_batch()) is not None:
                    try:
                        await self._dispatch(group, batch)
                    except BaseException:
                        self._fail_batch(batch, _aborted())
                        raise
        except Exception as exc:  # a bug in the sender: never let it pass silently
            log.exception("producer %s sender failed", self.producer_id)
            self._record_failure(exc)
            self._fail_pending(exc)
            raise

    async def _dispatch(self, group: asyncio.TaskGroup, batch: _Batch) -> None:
        """Number a batch and send it, once a slot is free (and any claim has landed)."""
        await self._slots.acquire()
        try:
            if not self._claimed:
                await self._wait_for_claim()
        except BaseException:
            self._slots.release()
            raise
        if self._failure is not None:
            self._slots.release()
            self._fail_batch(batch, self._failure)
            return
        batch.epoch, batch.seq = self._epoch, self._next_seq
        self._next_seq += 1
        if not batch.close:
            batch.body = frame_json_batch(batch.parts) if self._json else b"".join(batch.parts)
            batch.parts = []
        self._in_flight[batch.seq] = batch
        group.create_task(self._send(batch))

    async def _next_batch(self) -> _Batch | None:
        while True:
            if self._sealed:
                return self._sealed.popleft()
            if self._open is not None and (self._closing or self._flush_requested):
                self._seal()
                continue
            if self._closing:
                return None
            self._wakeup.clear()
            if self._open is None:
                await self._wakeup.wait()
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._linger)
            except TimeoutError:
                self._seal()

    async def _wait_for_claim(self) -> None:
        while not self._claimed and self._in_flight:
            self._landed.clear()
            await self._landed.wait()

    async def _send(self, batch: _Batch) -> None:
        try:
            ack = await self._deliver(batch)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and re-raised later
            self._record_failure(exc)
            self._fail_batch(batch, exc)
        except BaseException:
            self._fail_batch(batch, _aborted(sent=True))
            raise
        else:
            self._claimed = True
            self._stats["batches"] += 1
            self._stats["messages"] += batch.count
            self._stats["bytes"] += len(batch.body)
            if ack.duplicate:
                self._stats["duplicates"] += 1
            if ack.offset is not None:
                self._last_offset = ack.offset
            self._settle(batch)
            batch.future.set_result(ack)
        finally:
            self._in_flight.pop(batch.seq, None)
            self._slots.release()
            self._landed.set()

    async def _deliver(self, batch: _Batch) -> ProducerAck:
        session, url = self.stream.session, self.stream.url
        attempt = gap_waits = 0
        while True:
            headers = {
                h.CONTENT_TYPE: self._content_type,
                h.PRODUCER_ID: self.producer_id,
                h.PRODUCER_EPOCH: str(batch.epoch),
                h.PRODUCER_SEQ: str(batch.seq),
            }
            if batch.close:
                headers[h.STREAM_CLOSED] = h.TRUE
            try:
                response = await session._fetch(
                    "POST", url, headers=headers, body=batch.body, retries=0
                )
            except TransportError as exc:
                if attempt >= session.retry.max_retries:
                    raise
                await self._backoff(attempt, None, exc)
                attempt += 1
                continue
            status, hdrs = response.status, response.headers
            if status in (200, 204):
                return ProducerAck(
                    hdrs.get(h.STREAM_NEXT_OFFSET), status == 204, batch.epoch, batch.seq
                )
            if is_retryable_status(status) and attempt < session.retry.max_retries:
                await self._backoff(attempt, retry_after(hdrs), status)
                attempt += 1
                continue
            error = error_for(status, hdrs, op=Op.PRODUCE, url=url)
            if isinstance(error, StaleEpochError):
                if self._may_claim(batch, error):
                    continue
                self._fenced_by = max(self._fenced_by or 0, error.current_epoch or 0)
            if (
                isinstance(error, SequenceGapError)
                and gap_waits < _MAX_GAP_WAITS
                and await self._wait_for_gap(batch, error)
            ):
                gap_waits += 1
                continue
            raise error

    def _may_claim(self, batch: _Batch, error: StaleEpochError) -> bool:
        """Auto-claim: retake the stream under the server's epoch + 1, as sequence 0."""
        if not self.auto_claim or self._claimed or error.current_epoch is None:
            return False
        self._epoch = max(self._epoch, error.current_epoch + 1)
        self._in_flight.pop(batch.seq, None)
        batch.epoch, batch.seq = self._epoch, 0
        self._in_flight[0] = batch
        self._next_seq = 1
        log.info("producer %s claimed epoch %d", self.producer_id, self._epoch)
        return True

    async def _wait_for_gap(self, batch: _Batch, error: SequenceGapError) -> bool:
        """A 409 gap from pipelining: wait for the earlier batches, then resend this one."""
        expected = error.expected_seq
        if expected is None or expected >= batch.seq or batch.epoch != self._epoch:
            return False
        # The earlier batches may still be on their way, or may have landed after the
        # server answered: either way, resend once they are done. A real gap (the server
        # lost this producer's state) answers 409 again, and _MAX_GAP_WAITS ends it.
        earlier = range(expected, batch.seq)
        while any(seq in self._in_flight for seq in earlier):
            self._landed.clear()
            await self._landed.wait()
        return self._failure is None

    async def _backoff(self, attempt: int, floor: float | None, cause: object) -> None:
        self._stats["retries"] += 1
        delay = self.stream.session.retry.delay(attempt, floor)
        log.debug("producer %s batch failed (%s); retry in %.3fs", self.producer_id, cause, delay)
        await asyncio.sleep(delay)

    # -- bookkeeping ------------------------------------------------------------------

    def _settle(self, batch: _Batch) -> None:
        """Release a finished batch's room in the buffer."""
        self._buffered_messages -= batch.count
        self._buffered_bytes -= batch.data_bytes
        self._unfinished.discard(batch)
        self._space.set()

    def _fail_batch(self, batch: _Batch, error: BaseException) -> None:
        self._settle(batch)
        if not batch.future.done():
            batch.future.set_exception(error)
            # Failures also surface through flush() and exit; unawaited receipts must
            # not log "exception was never retrieved".
            batch.future.exception()

    def _fail_pending(self, error: BaseException) -> None:
        batches = [*self._sealed, *([self._open] if self._open is not None else [])]
        self._sealed.clear()
        self._open = None
        for batch in batches:
            self._fail_batch(batch, error)

    def _record_failure(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            log.debug("producer %s failed: %s", self.producer_id, error)
        if self._space is not None:
            self._space.set()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is None:
            return
        if isinstance(failure, DurableStreamsError):
            raise failure
        raise DurableStreamsError(f"producer {self.producer_id!r} failed: {failure!r}") from failure
