"""The sender: numbers batches and sends them, one task per producer.

It owns everything about the wire: the (epoch, sequence) numbering, the bound on batches
in flight, auto-claim after a stale epoch, waits for earlier batches after a 409 gap, and
the retries of transient failures (one :class:`RetryBudget` per batch). The first batch
that fails for good halts it: every later batch fails with the same error, unsent, until
:meth:`Sender.restart`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import MissingHeaderError, SequenceGapError, StaleEpochError, TransportError
from .._log import log
from .._protocol import headers as h
from .._protocol.errors import Op, error_for, is_retryable_status, retry_after
from ._records import Batch, ProducerAck, aborted
from ._wire import post_once

if TYPE_CHECKING:
    from .._protocol.retry import RetryBudget
    from .._stream import Stream
    from ._accumulator import Accumulator
    from ._options import ProducerConfig

__all__ = ["Sender", "SenderCounters"]


# How many times one batch may be resent after 409 gaps caused by its own pipeline.
_MAX_GAP_WAITS = 3


@dataclass(slots=True)
class SenderCounters:
    """What went on the wire, for :meth:`IdempotentProducer.statistics`."""

    batches: int = 0
    messages: int = 0
    bytes: int = 0
    duplicates: int = 0
    retries: int = 0


class Sender:
    """Sends the accumulator's batches to one stream, in order, exactly once each.

    Args:
        stream: the stream written to (its session's headers and retry policy apply).
        config: the producer's id, first epoch, auto-claim and ``max_in_flight``.
        accumulator: where batches come from and are settled.
    """

    __slots__ = (
        "_accumulator",
        "_claimed",
        "_content_type",
        "_in_flight",
        "_landed",
        "_slots",
        "_stream",
        "auto_claim",
        "counters",
        "epoch",
        "failure",
        "fenced_by",
        "last_offset",
        "next_seq",
        "producer_id",
        "task",
    )

    def __init__(self, stream: Stream, config: ProducerConfig, accumulator: Accumulator) -> None:
        self._stream = stream
        self._accumulator = accumulator
        self.producer_id = config.producer_id
        self.auto_claim = config.auto_claim
        self._content_type = ""
        self.epoch = config.epoch
        self.next_seq = 0
        # An epoch is "claimed" once a batch of it was accepted; until then, with
        # auto-claim, batches go one at a time so a claim cannot race renumbering.
        self._claimed = not config.auto_claim
        # The highest epoch the server reported when it fenced this producer.
        self.fenced_by: int | None = None
        self.failure: BaseException | None = None
        self.last_offset: str | None = None
        self.counters = SenderCounters()
        self._in_flight: dict[int, Batch] = {}
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._landed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self, content_type: str) -> None:
        """Start the sender task (owned by the producer, which awaits or cancels it)."""
        self._content_type = content_type
        self.task = asyncio.create_task(
            self._run(), name=f"durable_streams producer {self.producer_id}"
        )

    def restart(self, epoch: int) -> None:
        """Carry on under ``epoch`` from sequence 0, clearing a failure."""
        self.epoch = epoch
        self.next_seq = 0
        self._claimed = not self.auto_claim
        self.failure = None

    def halt(self, error: BaseException) -> None:
        """A batch failed for good: keep the first failure, send nothing more."""
        if self.failure is None:
            self.failure = error
            log.debug("producer %s failed: %s", self.producer_id, error)
        self._accumulator.wake_waiters()

    def abandon(self) -> None:
        """Stop from ``__del__`` of a producer never closed: thread-safe, never waits."""
        task = self.task
        if task is None or task.done():
            return
        # A closed loop raises RuntimeError: nothing will run on it again.
        with contextlib.suppress(RuntimeError):
            task.get_loop().call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        self._accumulator.fail_unsent(aborted())
        if self.task is not None:
            self.task.cancel()

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._in_flight)

    # -- the task -------------------------------------------------------------------------

    async def _run(self) -> None:
        accumulator = self._accumulator
        try:
            async with asyncio.TaskGroup() as group:
                while (batch := await accumulator.next_batch()) is not None:
                    try:
                        await self._dispatch(group, batch)
                    except BaseException:
                        accumulator.fail(batch, aborted())
                        raise
        except Exception as exc:  # a bug in the sender: never let it pass silently
            log.exception("producer %s sender failed", self.producer_id)
            self.halt(exc)
            accumulator.fail_unsent(exc)
            raise
        finally:
            # Stopped (cancelled): nothing more will be sent. Drained: nothing is left.
            accumulator.fail_unsent(aborted())

    async def _dispatch(self, group: asyncio.TaskGroup, batch: Batch) -> None:
        """Number a batch and send it, once a slot is free (and it may go)."""
        await self._slots.acquire()
        try:
            # Until a claim lands, one batch at a time; a close waits for every batch
            # before it, so that it is sent only after all of them were stored.
            while self._in_flight and (batch.close or not self._claimed):
                self._landed.clear()
                await self._landed.wait()
        except BaseException:
            self._slots.release()
            raise
        if self.failure is not None:
            self._slots.release()
            self._accumulator.fail(batch, self.failure)
            return
        batch.epoch, batch.seq = self.epoch, self.next_seq
        self.next_seq += 1
        if not batch.close:
            batch.body = self._accumulator.frame(batch)
        self._in_flight[batch.seq] = batch
        group.create_task(self._send(batch))

    async def _send(self, batch: Batch) -> None:
        try:
            ack = await self._deliver(batch)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and re-raised later
            self.halt(exc)
            self._accumulator.fail(batch, exc)
        except BaseException:
            self._accumulator.fail(batch, aborted(sent=True))
            raise
        else:
            self._claimed = True
            counters = self.counters
            counters.batches += 1
            counters.messages += batch.count
            counters.bytes += len(batch.body)
            if ack.duplicate:
                counters.duplicates += 1
            if ack.offset is not None:
                self.last_offset = ack.offset
            self._accumulator.settle(batch)
            batch.future.set_result(ack)
        finally:
            self._in_flight.pop(batch.seq, None)
            self._slots.release()
            self._landed.set()

    # -- one batch ------------------------------------------------------------------------

    async def _deliver(self, batch: Batch) -> ProducerAck:
        """Send one batch until it is answered for good; its own budget bounds the retries."""
        policy = self._stream.session.retry
        budget = policy.budget(policy.max_retries)
        gap_waits = 0
        while True:
            try:
                response = await post_once(self._stream, self._headers(batch), batch.body)
            except TransportError as exc:
                if not await self._backoff(budget, None, exc):
                    raise
                continue
            status, hdrs = response.status, response.headers
            if status in (200, 204):
                return self._ack(batch, status, hdrs)
            if is_retryable_status(status) and await self._backoff(
                budget, retry_after(hdrs), status
            ):
                continue
            error = error_for(status, hdrs, op=Op.PRODUCE, url=self._stream.url)
            if isinstance(error, StaleEpochError):
                if self._may_claim(batch, error):
                    continue
                self.fenced_by = max(self.fenced_by or 0, error.current_epoch or 0)
            if (
                isinstance(error, SequenceGapError)
                and gap_waits < _MAX_GAP_WAITS
                and await self._wait_for_gap(batch, error)
            ):
                gap_waits += 1
                continue
            raise error

    def _ack(self, batch: Batch, status: int, hdrs: Mapping[str, str]) -> ProducerAck:
        """The acknowledgement in a success answer, which must look like the answer to it."""
        offset = hdrs.get(h.STREAM_NEXT_OFFSET) or None
        missing = None
        if status == 200 and offset is None:  # a duplicate's 204 may carry no offset
            missing = h.STREAM_NEXT_OFFSET
        elif batch.close and not h.flag(hdrs, h.STREAM_CLOSED):
            missing = h.STREAM_CLOSED
        if missing is not None:
            what = "the answer to a producer's close" if batch.close else "the answer to a batch"
            raise MissingHeaderError(
                missing, what=what, url=self._stream.url, status=status, headers=hdrs
            )
        # A close without a final message is answered 204 whether or not it was a retry:
        # only the 204 of a request with a body says "duplicate".
        duplicate = status == 204 and bool(batch.body)
        return ProducerAck(offset, duplicate, batch.epoch, batch.seq)

    def _headers(self, batch: Batch) -> dict[str, str]:
        headers = {
            h.CONTENT_TYPE: self._content_type,
            h.PRODUCER_ID: self.producer_id,
            h.PRODUCER_EPOCH: str(batch.epoch),
            h.PRODUCER_SEQ: str(batch.seq),
        }
        if batch.close:
            headers[h.STREAM_CLOSED] = h.TRUE
        return headers

    def _may_claim(self, batch: Batch, error: StaleEpochError) -> bool:
        """Auto-claim: retake the stream under the server's epoch + 1, as sequence 0."""
        if not self.auto_claim or self._claimed or error.current_epoch is None:
            return False
        self.epoch = max(self.epoch, error.current_epoch + 1)
        self._in_flight.pop(batch.seq, None)
        batch.epoch, batch.seq = self.epoch, 0
        self._in_flight[0] = batch
        self.next_seq = 1
        log.info("producer %s claimed epoch %d", self.producer_id, self.epoch)
        return True

    async def _wait_for_gap(self, batch: Batch, error: SequenceGapError) -> bool:
        """A 409 gap from pipelining: wait for the earlier batches, then resend this one."""
        expected = error.expected_seq
        if expected is None or expected >= batch.seq or batch.epoch != self.epoch:
            return False
        # The earlier batches may still be on their way, or may have landed after the
        # server answered: either way, resend once they are done. A real gap (the server
        # lost this producer's state) answers 409 again, and _MAX_GAP_WAITS ends it.
        earlier = range(expected, batch.seq)
        while any(seq in self._in_flight for seq in earlier):
            self._landed.clear()
            await self._landed.wait()
        return self.failure is None

    async def _backoff(self, budget: RetryBudget, floor: float | None, cause: object) -> bool:
        """Wait before a retry if the budget grants one; False when it is spent."""
        delay = budget.next_delay(floor)
        if delay is None:
            return False
        self.counters.retries += 1
        log.debug("producer %s batch failed (%s); retry in %.3fs", self.producer_id, cause, delay)
        await asyncio.sleep(delay)
        return True
