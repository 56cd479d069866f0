"""Pull-wake workers against the real server: claim races, leases and fencing, wakes after
release and done, a worker killed mid-claim, cancellation and dropped claims.

Leases are short (1-2 s) so that expiry tests stay quick; waiting for an expiry polls
the server with a deadline, never sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

T = TypeVar("T")

ROOT_DIR = Path(__file__).resolve().parent.parent
DEADLINE = 15.0


@pytest.fixture
async def root(server: ReferenceServer, fast_retry: ds.RetryPolicy) -> AsyncIterator[ds.Session]:
    """A session whose base URL is the reference server's stream root."""
    async with ds.Session(f"{server.url}/v1/stream", retry=fast_retry) as session:
        yield session


class Pool:
    """One test's subscription: a wake stream, a glob over its own event streams."""

    def __init__(self, session: ds.Session, prefix: str) -> None:
        self.session = session
        self.prefix = prefix
        self.wake = session.stream(f"{prefix}/wake")
        self.subscription = session.subscription(f"{prefix}-sub")

    def path(self, name: str) -> str:
        return f"{self.prefix}/events/{name}"

    async def setup(self, *, lease_ttl: float, streams: int = 0) -> None:
        await self.wake.create(content_type="application/json")
        config = ds.SubscriptionConfig.pull_wake(
            f"{self.prefix}/wake", pattern=f"{self.prefix}/events/*", lease_ttl=lease_ttl
        )
        await self.subscription.create(config)
        for n in range(streams):
            await self.session.stream(self.path(str(n))).create(content_type="application/json")

    async def append(self, name: str, value: object) -> str:
        return (await self.session.stream(self.path(name)).append(value)).offset

    async def wakes(self) -> list[dict[str, Any]]:
        return await self.wake.read_all()


@pytest.fixture
async def pool(root: ds.Session) -> AsyncIterator[Pool]:
    p = Pool(root, f"p-{uuid.uuid4().hex[:12]}")
    yield p
    await p.subscription.delete()  # stops its lease timers on the server


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll the server until ``probe`` gives a value, within a deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def heartbeat_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "claim heartbeat" in t.get_name()]


# -- claiming ----------------------------------------------------------------------------


async def test_claim_races_between_four_workers_one_wins_each_generation(
    server: ReferenceServer, pool: Pool
) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    sessions = [ds.Session(f"{server.url}/v1/stream") for _ in range(4)]
    handles = [s.subscription(pool.subscription.id) for s in sessions]
    generations = []
    try:
        for round_ in range(5):
            await pool.append("0", {"round": round_})
            claims = await asyncio.gather(*(h.claim(f"w{i}") for i, h in enumerate(handles)))
            won = [c for c in claims if c is not None]
            assert len(won) == 1, claims
            generations.append(won[0].generation)
            acks = {c.path: c.tail_offset for c in won[0].pending}
            assert await won[0].done(acks) is False
    finally:
        for s in sessions:
            await s.aclose()
    assert generations == sorted(set(generations))  # one winner per generation, rising


async def test_workers_following_the_wake_stream_each_claim_a_generation_once(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    won: list[tuple[int, str]] = []
    enough = asyncio.Event()

    async def work(name: str) -> None:
        async with pool.subscription.worker(name) as worker:
            async for claim in worker:
                async with claim:
                    won.append((claim.generation, name))
                    offsets = {c.path: c.tail_offset for c in claim.pending}
                    await claim.done(offsets)
                if len(won) == 3:
                    enough.set()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(work(f"w{i}")) for i in range(4)]
        for n in range(3):
            await pool.append("0", {"n": n})
            await eventually(lambda: _true(len(won) > n), f"claim {n}")  # noqa: B023
        await enough.wait()
        for task in tasks:
            task.cancel()
    generations = [g for g, _ in won]
    assert len(generations) == len(set(generations)) == 3
    assert heartbeat_tasks() == []


async def _true(condition: bool) -> bool | None:
    return True if condition else None


async def test_a_worker_started_late_claims_work_already_waiting(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=2)
    await pool.append("0", {"n": 0})
    await pool.append("1", {"n": 1})  # no worker was following when these woke it
    async with pool.subscription.worker("late") as worker:
        claim = await asyncio.wait_for(anext(worker), DEADLINE)
        async with claim:
            assert sorted(c.path for c in claim.pending) == [pool.path("0"), pool.path("1")]
            items = {c.path: await claim.read(c).read_all() for c in claim.pending}
            assert items == {pool.path("0"): [{"n": 0}], pool.path("1"): [{"n": 1}]}
            await claim.done({c.path: c.tail_offset for c in claim.pending})
    assert worker.statistics().claims == 1


async def test_nothing_pending_and_already_claimed_are_not_errors(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    assert await pool.subscription.claim("w1") is None  # no pending work
    await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("w1")
    assert claim is not None
    async with claim:
        assert await pool.subscription.claim("w2") is None  # another worker holds it
        assert repr(claim).endswith("held>")
        assert "token" not in repr(claim.info)  # a secret


async def test_wake_events_of_other_subscriptions_are_ignored(root: ds.Session, pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    await pool.wake.append({"type": "wake", "subscription_id": "someone-else", "stream": "x",
                            "generation": 99})  # fmt: skip
    await pool.wake.append({"hello": "not a wake event"})
    await pool.append("0", {"n": 0})
    async with pool.subscription.worker("w1") as worker:
        claim = await asyncio.wait_for(anext(worker), DEADLINE)
        await claim.release()
    assert claim.state is ds.ClaimState.RELEASED


# -- leases and fencing -----------------------------------------------------------------


async def test_the_heartbeat_keeps_the_lease_well_past_its_ttl(pool: Pool) -> None:
    await pool.setup(lease_ttl=1, streams=1)
    await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("holder")
    assert claim is not None
    async with claim:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # three TTLs: only heartbeats keep it
            assert await pool.subscription.claim("rival") is None
            await asyncio.sleep(0.1)
        assert claim.state is ds.ClaimState.HELD
        await claim.ack({pool.path("0"): claim.pending[0].tail_offset})  # still ours
        assert await claim.done() is False
    assert heartbeat_tasks() == []


async def test_a_worker_that_stops_heartbeating_is_fenced(
    server: ReferenceServer, pool: Pool
) -> None:
    await pool.setup(lease_ttl=1, streams=1)
    first_offset = await pool.append("0", {"n": 0})
    zombie = await pool.subscription.claim("zombie")
    assert zombie is not None
    # The zombie's heartbeats (acks) stop reaching the server.
    ack_path = zombie.subscription.url.removeprefix(server.url) + "/ack"
    server.inject_error(ack_path, status=503, count=10_000)
    try:
        rival = await eventually(lambda: pool.subscription.claim("rival"), "the lease to expire")
    finally:
        server.clear_errors()
    async with rival:
        assert rival.generation > zombie.generation
        with pytest.raises(ds.SubscriptionFencedError) as caught:
            await zombie.ack({pool.path("0"): first_offset})
        assert caught.value.generation == zombie.generation
        assert zombie.state is ds.ClaimState.FENCED
        with pytest.raises(ds.SubscriptionFencedError):  # ended: no more requests either
            await zombie.done()
        await zombie.release()  # nothing to give back: no error
        assert zombie.error is caught.value
        await rival.done({pool.path("0"): first_offset})
    info = await pool.subscription.get()
    assert info.acked_offset(pool.path("0")) == first_offset  # the rival's ack, not the zombie's


async def test_an_ack_the_cursor_refuses_leaves_the_claim_held(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    offset = await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("w1")
    assert claim is not None
    async with claim:
        with pytest.raises(ds.InvalidAckError):
            await claim.ack({pool.path("0"): "9999999999999999_9999999999999999"})  # past tail
        with pytest.raises(ds.InvalidAckError):
            await claim.ack({f"{pool.prefix}/events/unknown": offset})
        with pytest.raises(ds.InvalidArgumentError):
            await claim.ack({pool.path("0"): "-1"})
        assert claim.state is ds.ClaimState.HELD
        await claim.ack({pool.path("0"): offset})
        assert claim.acked_offset(pool.path("0")) == offset
        await claim.done()
    with pytest.raises(ds.ResourceClosedError):
        await claim.ack({pool.path("0"): offset})


# -- wakes after release and done --------------------------------------------------------


async def test_release_with_pending_work_makes_a_new_wake(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("w1")
    assert claim is not None
    before = [w["generation"] for w in await pool.wakes()]
    await claim.release()
    await claim.release()  # twice: nothing more
    after = [w["generation"] for w in await pool.wakes()]
    assert after == [*before, claim.generation + 1]
    again = await pool.subscription.claim("w2")  # at once: no lease to wait for
    assert again is not None
    assert again.generation == claim.generation + 1
    assert again.pending[0].acked_offset == "-1"  # nothing was acked
    await again.release()


async def test_done_with_events_after_the_snapshot_makes_a_new_wake(pool: Pool) -> None:
    await pool.setup(lease_ttl=5, streams=1)
    await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("w1")
    assert claim is not None
    snapshot = claim.pending[0].tail_offset
    later = await pool.append("0", {"n": 1})  # after the snapshot
    assert await claim.done({pool.path("0"): snapshot}) is True
    wakes = await pool.wakes()
    assert wakes[-1]["generation"] == claim.generation + 1
    again = await pool.subscription.claim("w2")
    assert again is not None
    async with again:
        (cursor,) = again.pending
        assert (cursor.acked_offset, cursor.tail_offset) == (snapshot, later)
        assert await again.read(cursor).read_all() == [{"n": 1}]  # only the new event
        assert await again.done({cursor.path: later}) is False
    assert (await pool.wakes())[-1]["generation"] == again.generation  # no further wake


# -- cancellation and resources ----------------------------------------------------------


async def test_cancellation_releases_the_claim(pool: Pool) -> None:
    await pool.setup(lease_ttl=30, streams=1)
    await pool.append("0", {"n": 0})
    holding = asyncio.Event()
    claims: list[ds.Claim] = []

    async def hold() -> None:
        claim = await pool.subscription.claim("w1")
        assert claim is not None
        claims.append(claim)
        async with claim:
            holding.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(hold())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert claims[0].state is ds.ClaimState.RELEASED
    assert heartbeat_tasks() == []
    again = await pool.subscription.claim("w2")  # no 30 s lease to wait out
    assert again is not None
    await again.release()


async def test_a_worker_cancelled_while_claiming_gives_the_claim_back(
    server: ReferenceServer, pool: Pool
) -> None:
    await pool.setup(lease_ttl=30, streams=1)
    await pool.append("0", {"n": 0})
    claim_path = pool.subscription.url.removeprefix(server.url) + "/claim"
    server.inject_error(claim_path, delay_ms=300)  # the claim is won, the answer is slow
    async with pool.subscription.worker("w1") as worker:
        attempt = asyncio.create_task(worker.claim())
        await eventually(lambda: _true(worker.statistics().claim_attempts == 1), "the attempt")
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
    again = await pool.subscription.claim("w2")  # released: no 30 s lease to wait out
    assert again is not None
    await again.release()
    assert heartbeat_tasks() == []


async def test_a_dropped_claim_warns_and_stops_its_heartbeat(pool: Pool) -> None:
    await pool.setup(lease_ttl=30, streams=1)
    await pool.append("0", {"n": 0})
    claim = await pool.subscription.claim("w1")
    assert claim is not None
    (task,) = heartbeat_tasks()
    with pytest.warns(ResourceWarning, match="Claim was dropped while held"):
        del claim  # nothing else holds it: not even its own heartbeat task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert heartbeat_tasks() == []


# -- a worker process killed mid-claim ---------------------------------------------------

_CHILD = """
import asyncio, json, sys
import durable_streams as ds

async def main(root, subscription_id, handled_up_to):
    async with ds.Session(root) as session:
        claim = await session.subscription(subscription_id).claim("doomed")
        assert claim is not None
        (cursor,) = claim.pending
        items = await claim.read(cursor).read_all()
        # Events n=0 and n=1 are handled and acked; n=2 is being handled when it dies.
        await claim.ack({cursor.path: handled_up_to})
        print(json.dumps({"acked": handled_up_to, "processing": items[2]}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_worker_killed_mid_claim_is_taken_over_and_acked_work_is_not_redone(
    server: ReferenceServer, pool: Pool, tmp_path: Path
) -> None:
    await pool.setup(lease_ttl=1, streams=1)
    offsets = [await pool.append("0", {"n": n}) for n in range(4)]
    script = tmp_path / "doomed.py"
    script.write_text(_CHILD)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), f"{server.url}/v1/stream", pool.subscription.id, offsets[1],
        cwd=ROOT_DIR, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(DEADLINE):
            progress = json.loads(await proc.stdout.readline())
        assert progress["processing"] == {"n": 2}
        proc.send_signal(signal.SIGKILL)  # mid-claim: holding the lease, n=2 unacked
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The server gives the work away when the lease expires; another worker takes it.
    async with pool.subscription.worker("heir") as worker:
        claim = await asyncio.wait_for(anext(worker), DEADLINE)
        async with claim:
            (cursor,) = claim.pending
            assert cursor.acked_offset == progress["acked"]
            redone = await claim.read(cursor).read_all()
            assert redone == [{"n": 2}, {"n": 3}]  # n=0, n=1 were acked: not again
            await claim.done({cursor.path: cursor.tail_offset})
