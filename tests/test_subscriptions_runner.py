"""The subscription runner against the real server: every event handled and acked, bounded
concurrency, handler failures, graceful and forced stops (also by signal), fenced claims.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

T = TypeVar("T")
DEADLINE = 15.0


@pytest.fixture
async def root(server: ReferenceServer, fast_retry: ds.RetryPolicy) -> AsyncIterator[ds.Session]:
    """A session whose base URL is the reference server's stream root."""
    async with ds.Session(f"{server.url}/v1/stream", retry=fast_retry) as session:
        yield session


class Pool:
    """One test's pull-wake subscription over its own streams ``<prefix>/events/<n>``."""

    def __init__(self, session: ds.Session) -> None:
        self.session = session
        self.prefix = f"r-{uuid.uuid4().hex[:12]}"
        self.subscription = session.subscription(f"{self.prefix}-sub")
        self.names: list[str] = []

    def path(self, n: int) -> str:
        return f"{self.prefix}/events/{n}"

    async def setup(self, streams: int, *, lease_ttl: float = 5) -> None:
        await self.session.stream(f"{self.prefix}/wake").create(content_type="application/json")
        config = ds.SubscriptionConfig.pull_wake(
            f"{self.prefix}/wake", pattern=f"{self.prefix}/events/*", lease_ttl=lease_ttl
        )
        await self.subscription.create(config)
        for n in range(streams):
            await self.session.stream(self.path(n)).create(content_type="application/json")
            self.names.append(self.path(n))

    async def append(self, n: int, value: object) -> str:
        return (await self.session.stream(self.path(n)).append(value)).offset

    async def all_acked(self) -> bool | None:
        """True once every stream's acked offset is its tail (for :func:`eventually`)."""
        info = await self.subscription.get()
        for name in self.names:
            if info.acked_offset(name) != (await self.session.stream(name).head()).offset:
                return None
        return True


@pytest.fixture
async def pool(root: ds.Session) -> AsyncIterator[Pool]:
    p = Pool(root)
    yield p
    await p.subscription.delete()


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll until ``probe`` gives a value, within a deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def runner(pool: Pool, handler: ds.BatchHandler, **options: Any) -> ds.SubscriptionRunner:
    return ds.SubscriptionRunner(pool.subscription, handler, worker=options.pop("worker", "w1"),
                                 **options)  # fmt: skip


async def test_every_event_is_handled_once_and_acked_with_bounded_concurrency(pool: Pool) -> None:
    await pool.setup(streams=12)
    seen: list[tuple[str, int]] = []
    active = peak = 0

    async def handle(path: str, batch: ds.Batch[Any]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)  # let the others in, if the limit allowed them
        seen.extend((path, item["n"]) for item in batch.items)
        active -= 1

    workers = [runner(pool, handle, worker=f"w{i}", concurrency=3) for i in range(3)]
    async with asyncio.TaskGroup() as group:
        runs = [group.create_task(w.run(stop_signals=())) for w in workers]
        for n in range(10):
            await asyncio.gather(*(pool.append(s, {"n": n}) for s in range(12)))
        await eventually(pool.all_acked, "every stream acked to its tail")
        for w in workers:
            w.stop()
    assert sorted(seen) == sorted((pool.path(s), n) for s in range(12) for n in range(10))
    assert 1 <= peak <= 3
    stats = [r.result() for r in runs]
    assert sum(s.messages for s in stats) == 120
    assert sum(s.claims for s in stats) == sum(s.done + s.released for s in stats)
    assert all(s.fenced == 0 and s.active_streams == 0 for s in stats)
    # Within a stream, order is kept.
    for s in range(12):
        assert [n for p, n in seen if p == pool.path(s)] == list(range(10))


async def test_a_handler_failure_stops_the_runner_and_gives_the_work_back(pool: Pool) -> None:
    await pool.setup(streams=2)
    await pool.append(0, {"n": 0})
    await pool.append(1, {"n": 1})

    async def fail(path: str, batch: ds.Batch[Any]) -> None:
        raise RuntimeError(f"cannot handle {path}")

    failing = runner(pool, fail, concurrency=1)
    with pytest.raises(RuntimeError, match="cannot handle"):
        await asyncio.wait_for(failing.run(stop_signals=()), DEADLINE)
    assert failing.statistics().released == 1
    assert failing.statistics().acks == 0

    handled: list[Any] = []

    async def keep(path: str, batch: ds.Batch[Any]) -> None:
        handled.extend(batch.items)

    second = runner(pool, keep, worker="w2")
    task = asyncio.create_task(second.run(stop_signals=()))
    await eventually(pool.all_acked, "the work to be done by another runner")
    second.stop()
    await task
    assert sorted(item["n"] for item in handled) == [0, 1]  # the failed batch too


async def test_a_stop_lets_the_batch_in_hand_finish_and_be_acked(pool: Pool) -> None:
    await pool.setup(streams=3)
    for s in range(3):
        await pool.append(s, {"n": s})
    entered, finish = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def slow(path: str, batch: ds.Batch[Any]) -> None:
        entered.set()
        await finish.wait()
        handled.append(path)

    one = runner(pool, slow, concurrency=1)
    task = asyncio.create_task(one.run(stop_signals=()))
    await entered.wait()
    one.stop()
    assert one.stopping
    finish.set()
    stats = await asyncio.wait_for(task, DEADLINE)
    assert (stats.batches, stats.acks, stats.released, stats.done) == (1, 1, 1, 0)
    info = await pool.subscription.get()
    (path,) = handled
    assert info.acked_offset(path) == (await pool.session.stream(path).head()).offset
    left = [p for p in pool.names if p != path]
    assert all(info.acked_offset(p) == "-1" for p in left)  # given back, not acked
    again = await pool.subscription.claim("w2")  # the release woke it: no lease to wait
    assert again is not None
    assert sorted(c.path for c in again.pending) == sorted(left)
    await again.release()


async def test_a_signal_stops_gracefully_and_a_second_one_cancels(pool: Pool) -> None:
    await pool.setup(streams=1)
    await pool.append(0, {"n": 0})
    entered = asyncio.Event()

    async def stuck(path: str, batch: ds.Batch[Any]) -> None:
        entered.set()
        await asyncio.Event().wait()  # only cancellation ends this

    one = runner(pool, stuck)
    task = asyncio.create_task(one.run(stop_signals=(signal.SIGUSR1,)))
    await entered.wait()
    # The receiver is installed before the first claim, so before the handler ran.
    assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGUSR1)
    await eventually(lambda: _true(one.stopping), "the first signal")
    assert not task.done()  # graceful: the handler in hand is waited for
    os.kill(os.getpid(), signal.SIGUSR1)
    stats = await asyncio.wait_for(task, DEADLINE)
    assert (stats.batches, stats.released) == (0, 1)  # cancelled: released, not acked
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # removed again
    again = await pool.subscription.claim("w2")
    assert again is not None
    await again.release()


async def _true(condition: bool) -> bool | None:
    return True if condition else None


async def test_a_fenced_claim_is_abandoned_and_the_runner_carries_on(
    server: ReferenceServer, pool: Pool
) -> None:
    await pool.setup(streams=1, lease_ttl=1)
    await pool.append(0, {"n": 0})
    entered, finish = asyncio.Event(), asyncio.Event()
    handled: list[Any] = []

    async def handle(path: str, batch: ds.Batch[Any]) -> None:
        if not entered.is_set():
            entered.set()
            await finish.wait()
        handled.extend(batch.items)

    one = runner(pool, handle)
    task = asyncio.create_task(one.run(stop_signals=()))
    await entered.wait()
    # Its heartbeats stop reaching the server until the lease is lost to a rival.
    ack_path = pool.subscription.url.removeprefix(server.url) + "/ack"
    server.inject_error(ack_path, status=503, count=10_000)
    try:
        rival = await eventually(lambda: pool.subscription.claim("rival"), "the lease to expire")
    finally:
        server.clear_errors()
    await rival.release()  # the work is offered again
    finish.set()  # the first handler returns; its ack is fenced
    await eventually(pool.all_acked, "the runner to take the work again")
    one.stop()
    stats = await asyncio.wait_for(task, DEADLINE)
    assert stats.fenced == 1
    assert stats.done == 1
    assert handled == [{"n": 0}, {"n": 0}]  # at least once: the fenced batch came again


async def test_cancelling_run_releases_the_claim(pool: Pool) -> None:
    await pool.setup(streams=1, lease_ttl=30)
    await pool.append(0, {"n": 0})
    entered = asyncio.Event()

    async def stuck(path: str, batch: ds.Batch[Any]) -> None:
        entered.set()
        await asyncio.Event().wait()

    one = runner(pool, stuck)
    task = asyncio.create_task(one.run(stop_signals=()))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert one.statistics().released == 1
    again = await pool.subscription.claim("w2")  # no 30 s lease to wait out
    assert again is not None
    await again.release()


async def test_a_runner_runs_once_and_checks_its_options(pool: Pool) -> None:
    await pool.setup(streams=0)

    async def handle(path: str, batch: ds.Batch[Any]) -> None:
        raise AssertionError("no work")

    with pytest.raises(ds.InvalidArgumentError):
        runner(pool, handle, concurrency=0)
    with pytest.raises(ds.InvalidArgumentError):
        runner(pool, "not a function")  # type: ignore[arg-type]
    one = runner(pool, handle)
    one.stop()  # before run: it returns at once
    assert await one.run(stop_signals=()) == one.statistics()
    with pytest.raises(ds.UsageError):
        await one.run(stop_signals=())
