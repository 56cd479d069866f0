"""Pull-wake: a claim (ack, done, release, with its heartbeat) and a worker that wins them.

A :class:`Claim` is the lease on a subscription's work. Its heartbeat is a background
task the claim owns: it starts when the claim is won and stops when the claim ends (done,
released, fenced, failed, closed), so no task outlives it. The task holds the lease
state, not the claim, so a claim dropped without being ended can still be collected:
it then warns with ``ResourceWarning`` and stops its heartbeat, and the server gives the
work away when the lease expires.

A :class:`PullWorker` follows the subscription's wake stream and races the other workers
to claim: one claim attempt when it starts (work may be waiting from before it), then
one per wake event that may be claimable. Losing a race is normal and never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    ResourceClosedError,
    ResponseError,
    SubscriptionFencedError,
    TransportError,
)
from .._log import log
from .._reader import LiveMode, StreamReader
from . import wire
from .records import ClaimInfo, ClaimState, StreamCursor, WakeEvent, WorkerStatistics

if TYPE_CHECKING:
    from .management import Subscription

__all__ = ["Claim", "PullWorker", "claim_once"]


T = TypeVar("T")

AUTHORIZATION = "authorization"
# The heartbeat extends the lease this often (a fraction of its TTL), so two heartbeats
# can be lost or slow before the lease runs out.
HEARTBEAT_FRACTION = 1 / 3


async def finish_shielded(work: Awaitable[T]) -> T:
    """Run ``work`` to its end even if the caller is cancelled, again and again.

    The first cancellation seen is raised afterwards. (``asyncio.shield`` protects the
    task but not the wait, and anyio cancels a cancelled scope's waits at every await.)
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation wins
        raise cancelled
    return task.result()


class _Lease:
    """The mutable core of a claim, shared by the claim and its heartbeat task.

    One state, moved only by :meth:`_end`; one lock, so requests of one claim never
    overlap (an ack and a heartbeat, or a heartbeat and a done).
    """

    __slots__ = ("acked", "error", "extended_at", "info", "lock", "state", "subscription")

    def __init__(self, subscription: Subscription, info: ClaimInfo) -> None:
        self.subscription = subscription
        self.info = info
        self.state = ClaimState.HELD
        self.error: DurableStreamsError | None = None
        self.lock = asyncio.Lock()
        self.extended_at = asyncio.get_running_loop().time()
        self.acked = {s.path: s.acked_offset for s in info.streams}

    def held(self) -> bool:
        """Whether the claim is still held (a method: asked afresh after every await)."""
        return self.state is ClaimState.HELD

    def _end(self, state: ClaimState, error: DurableStreamsError | None = None) -> None:
        if self.state is ClaimState.HELD:
            self.state = state
            self.error = error

    def check_held(self) -> None:
        """Raise why this claim can no longer act, if it cannot."""
        if self.state is ClaimState.HELD:
            return
        if self.error is not None:
            raise self.error
        raise ResourceClosedError(f"the claim is {self.state.value}; claim again for more work")

    async def send(self, acks: Mapping[str, str] | None, *, done: bool) -> bool:
        """Ack (or heartbeat, or finish); the server's ``next_wake``. Fenced ends the claim."""
        info = self.info
        body = wire.encode_acks(info.wake_id, info.generation, acks, done=done)
        async with self.lock:
            self.check_held()
            try:
                response = await self.subscription._call(
                    "POST",
                    ("ack",),
                    op=wire.CallOp.ACK,
                    body=body,
                    headers={AUTHORIZATION: f"Bearer {info.token}"},
                    generation=info.generation,
                )
            except SubscriptionFencedError as exc:
                self._end(ClaimState.FENCED, exc)
                raise
            except ResponseError as exc:
                if exc.status in (400, 401, 404):  # refused token, deleted subscription
                    self._end(ClaimState.FAILED, exc)
                raise
            self.extended_at = asyncio.get_running_loop().time()
            if acks:
                self.acked.update(acks)
            if done:
                self._end(ClaimState.DONE)
                return wire.parse_ack_answer(response.body, url=self.subscription.url)
            return False

    async def release(self) -> None:
        """Give the work back. A claim already fenced has nothing to give: no error."""
        info = self.info
        body = wire.encode_acks(info.wake_id, info.generation)
        async with self.lock:
            if self.state is not ClaimState.HELD:
                return
            try:
                await self.subscription._call(
                    "POST",
                    ("release",),
                    op=wire.CallOp.RELEASE,
                    body=body,
                    headers={AUTHORIZATION: f"Bearer {info.token}"},
                    generation=info.generation,
                )
            except SubscriptionFencedError as exc:
                self._end(ClaimState.FENCED, exc)
                return
            finally:
                # Given back or not, this claim is over; a lease not released expires.
                self._end(ClaimState.RELEASED)


async def _heartbeat(lease: _Lease) -> None:
    """Extend the lease until the claim ends; a fence or refusal ends the claim."""
    loop = asyncio.get_running_loop()
    interval = lease.info.lease_ttl * HEARTBEAT_FRACTION
    while lease.held():
        delay = lease.extended_at + interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
            continue
        try:
            await lease.send(None, done=False)
        except (SubscriptionFencedError, ResourceClosedError):
            return  # the claim has ended; its error is what ack/done raise
        except (TransportError, ResponseError) as exc:
            if not lease.held():
                break  # the request ended the claim (a refused token, say)
            # Transient (the retry budget ran out): try again soon; if the lease is lost
            # meanwhile, the next ack is fenced and says so.
            log.warning("claim %s heartbeat failed: %s", lease.info.wake_id, exc)
            lease.extended_at = loop.time() - interval + min(interval, 1.0)
        except Exception as exc:  # noqa: BLE001 - recorded: ack and done raise it
            error = DurableStreamsError(f"the claim's heartbeat failed: {exc!r}")
            error.__cause__ = exc
            lease._end(ClaimState.FAILED, error)
            return


class Claim:
    """A won claim: the lease on a subscription's pending work, kept by a heartbeat.

    Get one from :meth:`Subscription.claim` or a :class:`PullWorker`. Read each pending
    stream (:attr:`pending`) from its acknowledged offset (:meth:`read`), acknowledge
    progress as you go (:meth:`ack`, which also extends the lease), then finish with
    :meth:`done` or give the work back with :meth:`release`. In ``async with``, leaving
    the block without ``done()`` releases the claim, also on error or cancellation (the
    release is shielded, nothing else is).

    A :class:`SubscriptionFencedError` from ``ack``/``done`` (or found by the heartbeat)
    means the lease was lost and a newer generation has the work: stop; nothing this
    claim sends is applied any more, so unacknowledged work will be done again elsewhere.
    """

    def __init__(self, subscription: Subscription, info: ClaimInfo) -> None:
        self.subscription = subscription
        self._lease = _Lease(subscription, info)
        self._heartbeat: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._heartbeat = asyncio.get_running_loop().create_task(
            _heartbeat(self._lease), name=f"durable_streams claim heartbeat {self.wake_id}"
        )

    # -- what was granted -----------------------------------------------------------

    @property
    def info(self) -> ClaimInfo:
        """What the server granted (wake id, generation, streams, lease TTL)."""
        return self._lease.info

    @property
    def generation(self) -> int:
        """The wake generation this claim holds."""
        return self._lease.info.generation

    @property
    def wake_id(self) -> str:
        """The wake this claim works on."""
        return self._lease.info.wake_id

    @property
    def worker(self) -> str:
        """The worker name that claimed."""
        return self._lease.info.worker

    @property
    def pending(self) -> tuple[StreamCursor, ...]:
        """The streams that had work when the claim was won."""
        return self._lease.info.pending

    @property
    def state(self) -> ClaimState:
        """Where the claim is: held, done, released, fenced or failed."""
        return self._lease.state

    @property
    def error(self) -> DurableStreamsError | None:
        """Why the claim ended, if it was fenced or failed."""
        return self._lease.error

    def acked_offset(self, path: str) -> str:
        """The acknowledged offset of a stream: from the claim, moved by this claim's acks.

        Raises:
            InvalidArgumentError: the stream is not one of the subscription's.
        """
        path = path.removeprefix("/")
        try:
            return self._lease.acked[path]
        except KeyError:
            raise InvalidArgumentError(
                f"{path!r} is not a stream of this claim", argument="path"
            ) from None

    def __repr__(self) -> str:
        info = self._lease.info
        return (
            f"<Claim {info.subscription_id!r} generation={info.generation} "
            f"worker={info.worker!r} {self._lease.state.value}>"
        )

    # -- the work -------------------------------------------------------------------

    def read(self, stream: str | StreamCursor, *, live: LiveMode = False) -> StreamReader:
        """A reader of ``stream`` from its acknowledged offset (no I/O until used).

        By default it stops once caught up (``live=False``); checkpoint with :meth:`ack`
        and each batch's ``offset``.
        """
        path = stream.path if isinstance(stream, StreamCursor) else stream
        offset = self.acked_offset(path)
        return self.subscription.stream(path).read(offset, live=live)

    async def ack(self, acks: Mapping[str, str]) -> None:
        """Record progress: for each stream path, the offset up to which work is done.

        An offset is one the server returned (a batch's ``offset``); the next claim reads
        from it. Also extends the lease. Retried on transient failures (an ack applied
        twice is the same ack).

        Raises:
            SubscriptionFencedError: the lease was lost; this claim has ended.
            InvalidAckError: an unknown stream, or an offset behind the cursor or past
                the tail.
            ResourceClosedError: the claim was finished or released.
        """
        if not isinstance(acks, Mapping) or not acks:
            raise InvalidArgumentError("acks must be a non-empty mapping", argument="acks")
        await self._lease.send(dict(acks), done=False)

    async def heartbeat(self) -> None:
        """Extend the lease now (the background heartbeat does this by itself).

        Raises:
            SubscriptionFencedError: the lease was lost; this claim has ended.
        """
        await self._lease.send(None, done=False)

    async def done(self, acks: Mapping[str, str] | None = None) -> bool:
        """Finish: apply ``acks`` (if any) and release the lease, in one request.

        Returns True when the server found work that arrived after the claim's snapshot
        and woke the subscription again (a new wake event, a new generation).

        Raises:
            SubscriptionFencedError: the lease was lost before the request arrived (after
                a retry, the first attempt may also have finished it).
            InvalidAckError: an ack the server refused; nothing was applied.
        """
        if acks is not None and not isinstance(acks, Mapping):
            raise InvalidArgumentError("acks must be a mapping", argument="acks")
        await self._stop_heartbeat()
        try:
            return await self._lease.send(dict(acks or {}), done=True)
        finally:
            if self._lease.held() and self._heartbeat is None:
                self._start()  # not finished (a transient failure): keep the lease alive

    async def release(self) -> None:
        """Give the work back without acknowledging more; another worker gets a new wake.

        Safe to call twice, and after the claim ended (then it does nothing). If the
        caller is cancelled the release still goes out.

        Raises:
            DurableStreamsError: the release request failed (the lease then expires by
                itself); the claim is over either way.
        """
        await finish_shielded(self._release())

    async def _release(self) -> None:
        await self._stop_heartbeat()
        await self._lease.release()

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def aclose(self) -> None:
        """Release the claim if it is still held (see :meth:`release`); safe twice."""
        await self.release()

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.release()
            return
        try:
            await self.release()
        except DurableStreamsError as release_error:
            # The error that ended the block matters more; keep the other as a note.
            exc.add_note(f"and releasing the claim failed: {release_error}")

    def __del__(self) -> None:
        lease: _Lease | None = getattr(self, "_lease", None)
        if lease is None or lease.state is not ClaimState.HELD:
            return
        warnings.warn(
            "durable_streams.Claim was dropped while held; use 'async with', done() or "
            "release() (the server gives the work away when the lease expires)",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )
        task = self._heartbeat
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.cancel()


async def claim_once(subscription: Subscription, worker: str) -> Claim | None:
    """One claim attempt; None if another worker holds the lease or nothing is pending."""
    claim, _ = await _attempt(subscription, worker)
    return claim


_Refusal = tuple[str | None, int | None]


async def _attempt(subscription: Subscription, worker: str) -> tuple[Claim | None, _Refusal]:
    """A claim attempt: the claim, or None and the refusal's (code, generation)."""
    body = wire.encode_claim(worker)
    response = await subscription._call(
        "POST", ("claim",), op=wire.CallOp.CLAIM, body=body, ok=(200, 409)
    )
    if response.status == 409:
        code, _, error = wire.error_code(response.body)
        if code in (wire.ALREADY_CLAIMED, wire.NO_PENDING_WORK):
            generation = error.get("generation")
            return None, (code, generation if isinstance(generation, int) else None)
        raise wire.error_for_answer(
            response.status, response.headers, response.body, op=wire.CallOp.CLAIM,
            url=subscription.url,
        )  # fmt: skip
    info = wire.parse_claim(
        response.body, url=subscription.url, subscription_id=subscription.id, worker=worker
    )
    claim = Claim(subscription, info)
    claim._start()
    return claim, (None, info.generation)


async def _give_back(attempt: asyncio.Future[tuple[Claim | None, _Refusal]]) -> None:
    """Wait for a claim attempt whose caller was cancelled; release what it won."""
    await asyncio.wait([attempt])
    if attempt.cancelled() or attempt.exception() is not None:
        return
    claim, _ = attempt.result()
    if claim is not None:
        await claim.release()


class PullWorker:
    """A named worker of a pull-wake subscription: follows the wake stream, wins claims.

    Construction does no I/O; get one from :meth:`Subscription.worker`. Iterate it for
    claims: each is already held, with its heartbeat running, and is yours to end
    (``async with claim:``). Between claims the worker waits on the wake stream; losing
    a race to another worker is normal and never raised. Iteration ends if the wake
    stream is closed. ``aclose()`` (or leaving ``async with``) stops following it;
    claims already handed out are not touched.

    Raises (from iteration):
        StreamNotFoundError: the wake stream does not exist (create it first).
        SubscriptionNotFoundError: the subscription does not exist.
    """

    def __init__(self, subscription: Subscription, name: str, *, live: LiveMode = True) -> None:
        self.subscription = subscription
        self.name = wire.check_worker(name)
        self._live: LiveMode = live
        self._reader: StreamReader | None = None
        self._events: Any = None
        self._closed = False
        self._may_claim = True
        # The newest generation known to be taken: wakes up to it are stale.
        self._taken = -1
        self._wakes = self._attempts = self._claims = self._lost = self._empty = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PullWorker {self.name!r} of {self.subscription.id!r} {state}>"

    def statistics(self) -> WorkerStatistics:
        """A snapshot of the worker's counters."""
        return WorkerStatistics(
            wakes=self._wakes,
            claim_attempts=self._attempts,
            claims=self._claims,
            already_claimed=self._lost,
            no_pending_work=self._empty,
        )

    async def claim(self) -> Claim | None:
        """One claim attempt now; None if another worker won or nothing is pending."""
        if self._closed:
            raise ResourceClosedError("the worker is closed")
        self._attempts += 1
        attempt = asyncio.ensure_future(_attempt(self.subscription, self.name))
        try:
            claim, (code, generation) = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The claim may have been won while we were cancelled: give it back.
            await finish_shielded(_give_back(attempt))
            raise
        if generation is not None:
            self._taken = max(self._taken, generation)
        if claim is not None:
            self._claims += 1
        elif code == wire.ALREADY_CLAIMED:
            self._lost += 1
        else:
            self._empty += 1
        return claim

    def __aiter__(self) -> PullWorker:
        return self

    async def __anext__(self) -> Claim:
        """Wait for the next won claim."""
        if self._closed:
            raise StopAsyncIteration
        await self._follow()
        while True:
            if self._may_claim:
                self._may_claim = False
                claim = await self.claim()
                if claim is not None:
                    return claim
            event = await self._next_wake()
            if event is None:
                raise StopAsyncIteration
            self._may_claim = event.generation > self._taken

    async def _follow(self) -> None:
        """Start following the wake stream (once), from its tail as of now.

        The tail is taken before the first claim attempt, so a wake written between the
        two is read, not missed.
        """
        if self._reader is not None:
            return
        config_stream = await self._wake_stream_path()
        stream = self.subscription.stream(config_stream)
        tail = (await stream.head()).offset
        self._reader = stream.read(tail, live=self._live)
        self._events = self._reader.__aiter__()

    async def _wake_stream_path(self) -> str:
        info = await self.subscription.get()
        if info.type != "pull-wake" or info.wake_stream is None:
            raise InvalidArgumentError(
                f"subscription {self.subscription.id!r} is not a pull-wake subscription",
                argument="subscription",
            )
        return info.wake_stream

    async def _next_wake(self) -> WakeEvent | None:
        """The next wake event of this subscription; None at the end of the wake stream."""
        url = self.subscription.url
        while True:
            try:
                item = await self._events.__anext__()
            except StopAsyncIteration:
                return None
            event = wire.parse_wake_event(item, url=url)
            if event is not None and event.subscription_id == self.subscription.id:
                self._wakes += 1
                return event

    async def aclose(self) -> None:
        """Stop following the wake stream. Safe to call twice."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose()

    async def __aenter__(self) -> PullWorker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
