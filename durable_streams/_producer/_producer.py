"""IdempotentProducer: the life cycle, and the wiring of an accumulator to a sender."""

from __future__ import annotations

import asyncio
import enum
import itertools
import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import (
    BufferFullError,
    DurableStreamsError,
    InvalidArgumentError,
    ResourceClosedError,
    UsageError,
)
from ._accumulator import Accumulator
from ._options import ProducerConfig, check_integer
from ._records import ProducerAck, ProducerStatistics, Receipt, aborted
from ._sender import Sender
from ._wire import known_content_type

if TYPE_CHECKING:
    from .._stream import Stream

__all__ = ["IdempotentProducer", "ProducerState"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()

# append() yields to the event loop after this many appends that did not wait.
_YIELD_EVERY = 128
# extend() encodes and buffers this many messages at a time (and yields after each group).
_GROUP = 128


class ProducerState(enum.Enum):
    """Where a producer is in its life; only the producer's own methods move it.

    ``NEW`` -> ``STARTING`` (learning the content type) -> ``OPEN`` (the sender task runs)
    -> ``DRAINING`` (``aclose()`` sends what is left) -> ``CLOSED``. A failed start goes
    back to ``NEW``; a cancellation, or ``aclose()`` before the start, goes straight to
    ``CLOSED``. Two facts are kept by their owners instead: a batch failure by the sender
    (until :meth:`IdempotentProducer.restart`), and the stream's close by the close future.
    """

    NEW = "new"
    STARTING = "starting"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


_NOT_STARTED = (ProducerState.NEW, ProducerState.STARTING)
# The hot path compares with a module constant: an enum member looked up on its class
# costs an attribute lookup per append.
_OPEN = ProducerState.OPEN


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
    timeouts, 429, 5xx; ``RetryPolicy.max_retries`` times per batch, with backoff) are
    deduplicated by the server: nothing is written twice, and batches land in order.

    Errors always propagate. A batch that fails fails its receipts, and the producer then
    refuses further work: the error is raised by the next :meth:`append`, by
    :meth:`flush` and on exit. :meth:`restart` starts a new epoch to carry on.

    Closing has two meanings, named apart: :meth:`close_stream` closes the *stream* (EOF
    for its readers, part of this producer's sequence); :meth:`aclose` (or leaving
    ``async with``) releases the *producer* and leaves the stream open.

    Args:
        stream: the stream to write to.
        producer_id: a stable, non-empty name for this logical producer.
        epoch: the epoch to write under (default 0); raise it (or call :meth:`restart`)
            whenever the producer restarts, so the server fences older instances.
        auto_claim: on a 403 (a stored epoch is higher), take over with that epoch + 1
            (default False). For producers that keep no epoch of their own; an old
            instance still running is then fenced. Until the claim lands, one batch is
            sent at a time.
        max_batch_bytes: the largest request body (default 1 MiB; a single larger
            message is sent alone).
        max_batch_items: the most messages in one batch (default None: no limit).
        linger: seconds a non-full batch waits for more messages before it is sent
            (default 0.005).
        max_in_flight: the most batches sent and not yet answered (default 5, at most
            1024).
        max_buffer_bytes: the most encoded bytes held, buffered or in flight (default
            64 MiB); ``append`` waits for room beyond it, ``append_nowait`` raises
            :class:`BufferFullError`.

    Raises:
        InvalidArgumentError: an option out of range (its ``argument`` names it).

    A producer that was started and is dropped without :meth:`aclose` warns with
    ``ResourceWarning``; its sender task is then stopped and its unsent messages fail.
    """

    __slots__ = ("__weakref__", "_accumulator", "_close", "_config", "_sender", "_since_yield",
                 "_state", "stream")  # fmt: skip

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
        # The one place of the defaults; Stream.producer forwards ProducerOptions here.
        self._config = ProducerConfig(
            producer_id=producer_id,
            epoch=epoch,
            auto_claim=auto_claim,
            max_batch_bytes=max_batch_bytes,
            max_batch_items=max_batch_items,
            linger=linger,
            max_in_flight=max_in_flight,
            max_buffer_bytes=max_buffer_bytes,
        )
        self.stream = stream
        self._state = ProducerState.NEW
        self._accumulator = Accumulator(self._config)
        self._sender = Sender(stream, self._config, self._accumulator)
        # The close batch's future, once close_stream() queued it: the one record of
        # whether this producer closed (or is closing) the stream, and at which offset.
        self._close: asyncio.Future[ProducerAck] | None = None
        self._since_yield = 0

    @property
    def producer_id(self) -> str:
        """The producer's id, sent with every batch."""
        return self._config.producer_id

    @property
    def auto_claim(self) -> bool:
        """Whether a stale epoch is taken over (see the ``auto_claim`` option)."""
        return self._config.auto_claim

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the stream's content type (one HEAD if unknown) and start the sender task.

        Called by ``async with`` and, if needed, by the first :meth:`append`. If the HEAD
        fails, the producer stays unstarted and the error is raised.

        Raises:
            ResourceClosedError: the producer was closed.
        """
        if self._state is ProducerState.OPEN:
            return
        self._refuse_if_closed()
        self._state = ProducerState.STARTING
        try:
            content_type = await known_content_type(self.stream)
        except BaseException:
            if self._state is ProducerState.STARTING:
                self._state = ProducerState.NEW
            raise
        if self._state is ProducerState.OPEN:  # a concurrent start() finished first
            return
        self._refuse_if_closed()  # aclose() while the HEAD was on its way
        self._accumulator.begin(content_type)
        self._sender.start(content_type)
        self._state = ProducerState.OPEN

    def _refuse_if_closed(self) -> None:
        if self._state in (ProducerState.DRAINING, ProducerState.CLOSED):
            raise ResourceClosedError("this producer is closed")

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

        This releases the producer; it does not close the stream (see
        :meth:`close_stream`). Safe to call twice. If cancelled while waiting, the sender
        task is cancelled (and waited for, however often the cancellation is repeated),
        and the receipts of what was not acknowledged fail with
        :class:`ResourceClosedError`; no task is left behind.

        Raises:
            DurableStreamsError: the first failure of any batch.
        """
        if self._state in _NOT_STARTED:
            self._state = ProducerState.CLOSED
            return
        if self._state is ProducerState.CLOSED:
            return
        self._state = ProducerState.DRAINING
        self._accumulator.end()
        task = self._sender.task
        assert task is not None  # OPEN and DRAINING have a sender task
        try:
            await asyncio.wait([task])  # never raises the task's own outcome
        except asyncio.CancelledError:
            await self._abort()
            raise
        self._state = ProducerState.CLOSED
        if not task.cancelled():
            task.exception()  # a crash of the sender is its failure, raised below
        self._raise_failure()

    async def _abort(self) -> None:
        """Stop now: cancel the sender (and its requests); every unsettled receipt fails.

        This is the cleanup that must finish, so it is shielded against repeated
        cancellation (anyio's cancel scopes cancel again at every await): a cancellation
        that arrives meanwhile is raised once the sender task has ended.
        """
        self._state = ProducerState.CLOSED
        accumulator = self._accumulator
        accumulator.end()
        accumulator.fail_unsent(aborted())
        accumulator.wake_waiters()
        task = self._sender.task
        try:
            if task is not None and not task.done():
                task.cancel()
                await _wait_through_cancellation(task)
        finally:
            # Whatever the sender could not settle (it may never have run at all).
            accumulator.fail_all(aborted(sent=True))
            if task is not None and task.done() and not task.cancelled():
                task.exception()  # retrieved: a crash was recorded as the failure

    def __del__(self) -> None:
        sender: Sender | None = getattr(self, "_sender", None)  # None if __init__ raised
        if sender is None or sender.task is None or sender.task.done():
            return
        warnings.warn(
            "durable_streams.IdempotentProducer was never closed; use 'async with' or "
            "aclose(). Its sender task is stopped and unsent messages fail.",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )
        sender.abandon()

    # -- appending --------------------------------------------------------------------

    async def append(self, data: object) -> Receipt:
        """Buffer one message; wait only while the buffer is full.

        On a JSON stream ``data`` is one message: any JSON value, or ``bytes`` holding
        exactly one already-encoded JSON value (an encoded array stays one message). On
        other streams it is ``bytes``, or ``str`` sent as UTF-8. Starts the producer if
        needed. Returns a :class:`Receipt` to await the server's acknowledgement.

        Raises:
            InvalidArgumentError: ``data`` cannot be sent on this stream (nothing is
                buffered, and nothing buffered before is affected).
            DurableStreamsError: an earlier batch failed (the producer stopped).
            ResourceClosedError: the producer was closed, or closed the stream.

        If cancelled while waiting for room, the message is not buffered.
        """
        if self._state is not _OPEN and self._state in _NOT_STARTED:
            await self.start()
        accumulator = self._accumulator
        encoded = accumulator.encode(data)
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            # append() never suspends while there is room: without this the caller's
            # loop keeps the event loop, so the sender task and the connections only
            # progress at these yields. It comes before buffering: once the message is
            # buffered nothing may await, so a cancelled append never sends it.
            self._since_yield = 0
            await asyncio.sleep(0)
        while not self._room_for(len(encoded)):
            await accumulator.wait_for_room()
        return accumulator.add(encoded)

    async def extend(self, messages: Iterable[object]) -> Receipt | None:
        """Buffer many messages, in order; wait only while the buffer is full.

        The same as awaiting :meth:`append` for each message, at a fraction of the cost
        per message: messages are encoded and buffered in groups (on a JSON stream, Python
        values are encoded with one call per group). Each message is as for
        :meth:`append` and is checked the same way. ``messages`` may be any iterable,
        a generator included; it is consumed as the buffer takes it.

        Returns the :class:`Receipt` of the last message, or None if there was none.
        Batches land in order and a failed batch fails every later one, so once it
        settles successfully every message given here was acknowledged.

        Raises:
            InvalidArgumentError: a message cannot be sent on this stream. The messages
                before it are buffered (and will be sent), it and the rest are not; the
                error names its index (``messages[i]``) and ``argument`` is
                ``"messages"``.
            DurableStreamsError: an earlier batch failed (the producer stopped).
            ResourceClosedError: the producer was closed, or closed the stream.

        If cancelled while waiting for room, the messages taken from ``messages`` before
        the current group (of up to 128) stay buffered and the rest are not: use
        :meth:`append` where the exact count must be known after a cancellation.
        """
        if self._state is not _OPEN and self._state in _NOT_STARTED:
            await self.start()
        accumulator = self._accumulator
        receipt: Receipt | None = None
        done = 0
        iterator = iter(messages)
        while group := list(itertools.islice(iterator, _GROUP)):
            try:
                joined, size = accumulator.encode_group(group)
            except InvalidArgumentError:
                # Find the culprit; everything before it is buffered, as append() would.
                for value in group:
                    try:
                        encoded = accumulator.encode(value)
                    except InvalidArgumentError as exc:
                        raise InvalidArgumentError(
                            f"messages[{done}]: {exc.message}", argument="messages"
                        ) from exc
                    receipt = await self._buffer(encoded)
                    done += 1
                raise  # unreachable: the group failed, so one of its messages does
            if not accumulator.holds_group(len(joined), len(group)):
                for value in group:  # large messages: one by one, as append() would
                    receipt = await self._buffer(accumulator.encode(value))
                    done += 1
                continue
            # Yield before buffering: once a group is buffered nothing may await, so a
            # cancelled extend() never sends a group it did not finish.
            await asyncio.sleep(0)
            while not self._room_for(len(joined)):
                await accumulator.wait_for_room()
            receipt = accumulator.add_group(joined, len(group), size)
            done += len(group)
        return receipt

    async def _buffer(self, encoded: bytes) -> Receipt:
        """Buffer one encoded message once there is room (append() without its yield)."""
        accumulator = self._accumulator
        while not self._room_for(len(encoded)):
            await accumulator.wait_for_room()
        return accumulator.add(encoded)

    def append_nowait(self, data: object) -> Receipt:
        """Buffer one message without waiting; :class:`BufferFullError` if there is no room.

        ``data`` is as for :meth:`append`. The producer must already be started
        (``async with``, :meth:`start` or an awaited :meth:`append`), since starting may
        have to ask the server for the stream's content type.

        Raises:
            UsageError: the producer was not started yet.
            BufferFullError: the buffer is full; nothing was buffered.
            InvalidArgumentError, DurableStreamsError, ResourceClosedError: as for
                :meth:`append`.
        """
        if self._state in _NOT_STARTED:
            raise UsageError(
                "append_nowait() needs a started producer: use 'async with', "
                "await start(), or await append() once"
            )
        encoded = self._accumulator.encode(data)
        if not self._room_for(len(encoded)):
            accumulator = self._accumulator
            raise BufferFullError(
                f"producer buffer full ({accumulator.buffered_bytes} of "
                f"{self._config.max_buffer_bytes} bytes)"
            )
        return self._accumulator.add(encoded)

    def _room_for(self, size: int) -> bool:
        # One test on the hot path; the reasons are told apart only when there is one.
        if self._state is not _OPEN or self._close is not None or self._sender.failure:
            self._check_usable()
        return self._accumulator.fits(size)

    def _check_usable(self) -> None:
        self._raise_failure()
        self._refuse_if_closed()
        if self._close is not None:
            raise ResourceClosedError("this producer closed the stream (close_stream())")

    # -- flushing and closing ---------------------------------------------------------

    async def flush(self) -> None:
        """Send everything buffered now and wait until the server has acknowledged it.

        Raises:
            DurableStreamsError: the failure of any batch (the producer then refuses
                further work).
        """
        if self._state in _NOT_STARTED:
            return
        accumulator = self._accumulator
        await accumulator.wait_settled(accumulator.pending())
        self._raise_failure()

    async def close_stream(self, final: object = _MISSING) -> str:
        """Close the stream (EOF for readers) as the last step of this producer's sequence.

        Everything appended before is sent first; from this call on, :meth:`append`
        raises :class:`ResourceClosedError`. ``final`` (one message, as for
        :meth:`append`) is appended atomically with the close. Because the close carries
        the producer headers it is safe to retry, and repeating this call (or calling it
        concurrently) returns the same final offset. This does not release the producer:
        leave the ``async with`` block (or call :meth:`aclose`) as usual. If the caller
        is cancelled, the close still goes out.

        Returns the stream's final offset.

        Raises:
            InvalidArgumentError: ``final`` cannot be sent; nothing changed.
            StreamClosedError: the stream was already closed by someone else.
            DurableStreamsError: an earlier batch failed, or the close itself did.
        """
        if self._close is None and self._state in _NOT_STARTED:
            await self.start()
        if self._close is None:
            accumulator = self._accumulator
            body = b"" if final is _MISSING else accumulator.close_body(final)
            self._check_usable()
            self._close = accumulator.add_close(body).future
        ack = await asyncio.shield(self._close)
        return ack.offset or self._sender.last_offset or ""

    async def restart(self, epoch: int | None = None) -> None:
        """Carry on under a new epoch, from sequence 0.

        The default epoch is one above both the current one and any epoch the server
        fenced this producer with, so a restarted producer never reuses (and so never
        has deduplicated away) a pair another instance wrote under. Clears a failure:
        whatever failed stays failed (its receipts raised), and new messages go out
        under the new epoch. Waits for batches still in flight first. A stream this
        producer closed stays closed: appends are still refused.

        Raises:
            InvalidArgumentError: ``epoch`` is not an integer in range.
        """
        sender = self._sender
        if epoch is None:
            new_epoch = max(sender.epoch, sender.fenced_by or 0) + 1
        else:
            new_epoch = check_integer("epoch", epoch, low=0)
        if self._state is ProducerState.OPEN:
            accumulator = self._accumulator
            await accumulator.wait_settled(accumulator.pending())
        sender.restart(new_epoch)
        close = self._close
        if close is not None and close.done() and close.exception() is not None:
            self._close = None  # the close failed: it may be tried again

    # -- observation ------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch (it changes after an auto-claim or :meth:`restart`)."""
        return self._sender.epoch

    def statistics(self) -> ProducerStatistics:
        """A snapshot of the producer's counters (no I/O)."""
        sender, accumulator = self._sender, self._accumulator
        counters = sender.counters
        return ProducerStatistics(
            epoch=sender.epoch,
            next_seq=sender.next_seq,
            messages_buffered=accumulator.buffered_messages,
            bytes_buffered=accumulator.buffered_bytes,
            batches_in_flight=sender.in_flight,
            batches_sent=counters.batches,
            messages_sent=counters.messages,
            bytes_sent=counters.bytes,
            duplicates=counters.duplicates,
            retries=counters.retries,
            last_offset=sender.last_offset,
        )

    def __repr__(self) -> str:
        status = self._state.value
        if self._sender.failure is not None:
            status += ", failed"
        if self._close is not None:
            status += ", stream closed" if self._close.done() else ", closing the stream"
        return (
            f"<IdempotentProducer {self.producer_id!r} epoch={self.epoch} "
            f"next_seq={self._sender.next_seq} {status}>"
        )

    def _raise_failure(self) -> None:
        failure = self._sender.failure
        if failure is None:
            return
        if isinstance(failure, DurableStreamsError):
            raise failure
        raise DurableStreamsError(f"producer {self.producer_id!r} failed: {failure!r}") from failure


async def _wait_through_cancellation(task: asyncio.Task[None]) -> None:
    """Wait until ``task`` is done even if this wait is cancelled, again and again.

    ``asyncio.shield`` would not do: it protects the task, not the wait, and anyio
    cancels a cancelled scope's waits again at every await. The first cancellation seen
    is raised once the task is done.
    """
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        raise cancelled
