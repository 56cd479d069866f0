"""A ready worker loop for a pull-wake subscription: claim, handle batches, ack, finish.

The runner adds no coordination of its own: the server decides who holds the work and
stores the acks. Within one claim it reads the pending streams concurrently (at most
``concurrency`` at a time), each in order, calls the handler once per batch and acks the
batch's offset after the handler returns. A stream is read up to the tail the claim
reported; what arrives later makes the server wake the subscription again after
``done``. A stop (``stop()``, SIGTERM, SIGINT) lets every handler call in progress
finish and be acked, then gives back whatever is left.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from .._errors import InvalidArgumentError, StreamNotFoundError, SubscriptionFencedError, UsageError
from .._log import log
from .._types import Batch
from .pull import Claim, PullWorker, finish_shielded
from .records import ClaimState, RunnerStatistics, StreamCursor

if TYPE_CHECKING:
    from .management import Subscription

__all__ = ["BatchHandler", "SubscriptionRunner"]


BatchHandler: TypeAlias = Callable[[str, Batch[Any]], Awaitable[None]]
"""``async def handler(path, batch)``: handle one batch of the stream at ``path``."""

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SubscriptionRunner:
    """Process a pull-wake subscription: a handler per batch, acks after it, claims in turn.

    Construction does no I/O. :meth:`run` works until stopped: it follows the wake
    stream as worker ``worker``, and for each won claim reads every pending stream from
    its acknowledged offset, calls ``handler(path, batch)`` for each batch with messages,
    and acks the batch's offset once the handler has returned. With everything read up
    to the claim's snapshot it finishes with ``done``; stopped early, it releases.

    Delivery is at least once: a batch is handled again only if its ack did not reach
    the server (the worker died, or lost its lease, between handler and ack). Make the
    handler idempotent, for example keyed by stream and offset.

    Args:
        subscription: the pull-wake subscription.
        handler: ``async def handler(path: str, batch: Batch) -> None``. An exception
            from it stops the runner: the claim is released (that batch is not acked)
            and :meth:`run` raises it.
        worker: this worker's name, unique among the workers of the subscription.
        concurrency: how many streams of one claim are handled at the same time.
    """

    def __init__(
        self,
        subscription: Subscription,
        handler: BatchHandler,
        *,
        worker: str,
        concurrency: int = 8,
    ) -> None:
        if not callable(handler):
            raise InvalidArgumentError("handler must be an async function", argument="handler")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(
                f"concurrency must be a positive integer, got {concurrency!r}",
                argument="concurrency",
            )
        self.subscription = subscription
        self.worker = PullWorker(subscription, worker)
        """The pull worker the runner claims through (its ``statistics()`` count races)."""
        self._handler = handler
        self._concurrency = concurrency
        self._stop = asyncio.Event()
        self._started = False
        self._claims = self._batches = self._messages = self._acks = 0
        self._done = self._released = self._fenced = self._active = 0

    def __repr__(self) -> str:
        return f"<SubscriptionRunner {self.subscription.id!r} worker={self.worker.name!r}>"

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask :meth:`run` to stop: handler calls in progress finish and are acked first.

        Does not wait; ``run()`` returns once it has stopped. Safe to call more than once
        and before ``run()`` (which then returns at once).
        """
        self._stop.set()

    def statistics(self) -> RunnerStatistics:
        """A snapshot of the runner's counters."""
        return RunnerStatistics(
            claims=self._claims,
            batches=self._batches,
            messages=self._messages,
            acks=self._acks,
            done=self._done,
            released=self._released,
            fenced=self._fenced,
            active_streams=self._active,
        )

    # -- the loop -------------------------------------------------------------------

    async def run(
        self, *, stop_signals: Iterable[signal.Signals] = DEFAULT_SIGNALS
    ) -> RunnerStatistics:
        """Work until stopped; the final statistics.

        Args:
            stop_signals: signals that stop the runner gracefully while it runs (the
                default SIGTERM and SIGINT; empty for none). A second one cancels the
                work in progress (the claim is still released). Signal handlers can only
                be installed in the main thread; they are removed when ``run`` returns.

        A claim fenced by the server (its lease was lost, say during a long pause) is
        abandoned and counted, and the runner carries on. Cancelling ``run`` releases the
        claim in hand.

        Raises:
            UsageError: ``run`` was called twice.
            DurableStreamsError: the subscription or its wake stream is missing, or
                another failure the server or network made permanent.
            Exception: whatever the handler raised.
        """
        if self._started:
            raise UsageError("a SubscriptionRunner runs once; make a new one")
        self._started = True
        signals = tuple(stop_signals)
        try:
            async with asyncio.TaskGroup() as group:
                main = group.create_task(self._loop(), name=f"{self!r} loop")
                if signals:
                    watcher = group.create_task(self._watch(signals, main))
                    main.add_done_callback(lambda _: watcher.cancel())
        except BaseExceptionGroup as failure:
            raise _single(failure) from None
        return self.statistics()

    async def _watch(self, signals: tuple[signal.Signals, ...], main: asyncio.Task[None]) -> None:
        import anyio  # noqa: PLC0415 - needed only where signals are handled

        with anyio.open_signal_receiver(*signals) as received:
            async for signum in received:
                if self._stop.is_set():
                    log.warning("signal %d again: cancelling the work in progress", signum)
                    main.cancel()
                    return
                log.info("signal %d: stopping once the batches in hand are acked", signum)
                self.stop()

    async def _loop(self) -> None:
        async with self.worker:
            while not self._stop.is_set():
                claim = await self._next_claim()
                if claim is None:
                    return
                await self._work(claim)

    async def _next_claim(self) -> Claim | None:
        """The next won claim, or None once stopped (or the wake stream ended)."""
        waiting = asyncio.ensure_future(anext(self.worker, None))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((waiting, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not waiting.done():
                waiting.cancel()  # a claim won meanwhile is released by the worker
                await finish_shielded(asyncio.wait([waiting]))
        if waiting.cancelled():
            return None
        claim = waiting.result()
        if claim is not None and self._stop.is_set():
            await claim.release()
            return None
        return claim

    async def _work(self, claim: Claim) -> None:
        """Handle one claim: its pending streams, then done or release."""
        self._claims += 1
        try:
            async with claim:
                complete = await self._handle_streams(claim)
                if complete:
                    await claim.done()
        except SubscriptionFencedError as exc:
            log.warning("claim of generation %d was fenced: %s", claim.generation, exc)
        finally:
            self._count_end(claim)

    def _count_end(self, claim: Claim) -> None:
        state = claim.state
        if state is ClaimState.DONE:
            self._done += 1
        elif state is ClaimState.RELEASED:
            self._released += 1
        elif state is ClaimState.FENCED:
            self._fenced += 1

    async def _handle_streams(self, claim: Claim) -> bool:
        """Every pending stream up to the claim's snapshot; False if stopped first."""
        limit = asyncio.Semaphore(self._concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._handle_stream(claim, cursor, limit))
                    for cursor in claim.pending
                ]
        except BaseExceptionGroup as failure:
            raise _single(failure) from None
        return all(task.result() for task in tasks)

    async def _handle_stream(
        self, claim: Claim, cursor: StreamCursor, limit: asyncio.Semaphore
    ) -> bool:
        """One stream, batch by batch; True once it reached the snapshot's tail."""
        async with limit:
            if self._stop.is_set():
                return False
            self._active += 1
            try:
                return await self._read_stream(claim, cursor)
            except StreamNotFoundError:
                # Deleted meanwhile: the server drops its link, so there is nothing to ack.
                log.info("stream %r is gone; skipped", cursor.path)
                return True
            finally:
                self._active -= 1

    async def _read_stream(self, claim: Claim, cursor: StreamCursor) -> bool:
        path = cursor.path
        async with claim.read(cursor) as reader:
            async for batch in reader.batches():
                if batch.items:
                    await self._handler(path, batch)
                    self._batches += 1
                    self._messages += len(batch.items)
                if batch.offset != claim.acked_offset(path):
                    await claim.ack({path: batch.offset})
                    self._acks += 1
                # Offsets sort lexicographically (PROTOCOL.md section 8).
                if batch.up_to_date or batch.closed or batch.offset >= cursor.tail_offset:
                    return True
                if self._stop.is_set():
                    return False
        return True


def _single(failure: BaseExceptionGroup[Any]) -> BaseException:
    """What a task group's failure means: its one error, else the group.

    Several streams of one claim all find it fenced at once: that is one fence.
    """
    fenced, rest = failure.split(SubscriptionFencedError)
    if rest is None and fenced is not None:
        return _leaves(fenced)[0]
    if rest is not None:
        leaves = _leaves(rest)
        if len(leaves) == 1:
            return leaves[0]
    return failure


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
