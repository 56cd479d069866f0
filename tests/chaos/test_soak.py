"""Scenario 5: a soak of mixed load through the chaos proxy, bounded in time, with this
process's resident memory, tasks and sockets sampled throughout.

The load runs in rounds on one session. Each round creates a stream; two idempotent
producers write to it at a steady pace while an SSE and a long-poll reader tail it, and
a side lane opens short-lived readers and plain appends and cancels them at random; then
the producers finish, the stream is closed, each reader must have seen every message of
every producer exactly once and in order, and the stream is deleted. Readers count as
they go and keep nothing, so memory must stay flat: after a warm-up, the resident set may
not grow beyond a small allowance, the client's tasks and the sockets stay under fixed
bounds, and once everything is closed nothing is left over.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.chaos._support import SEED, LeakProbe, record, rss_bytes, scaled, socket_fds
from tests.chaos.proxy import ChaosConfig, ChaosProxy

SOAK_S = scaled(24.0, 600.0)
ROUND_S = scaled(6.0, 30.0)
SAMPLE_EVERY_S = 0.25
# The first rounds warm up (imports, pools, allocator arenas); only later samples count.
WARMUP_SHARE = 0.34
# Growth allowed between the warm middle and the end of the soak: allocator noise, not a
# leak. A leak of one kilobyte per message would add tens of megabytes per round.
GROWTH_ALLOWANCE = 8 * 1024 * 1024
# The same for the interpreter's own count of allocated blocks (objects and buffers), which
# a leak moves even when freed memory left over from earlier tests hides it from the RSS.
BLOCKS_ALLOWANCE = 50_000
PRODUCERS = 2
PACE = 100  # messages between pauses, per producer
PAUSE_S = 0.02

RETRY = ds.RetryPolicy(max_retries=30, initial_delay=0.02, max_delay=0.25, retry_appends=False)
TIMEOUTS = ds.Timeouts(connect=2.0, request=2.0, live_idle=3.0)
CHAOS = ChaosConfig(
    seed=SEED, fault_rate=0.5, request_bytes=256_000, response_bytes=512_000, max_stall=1.0
)
MiB = 1024 * 1024
# Bounds on what the client holds at any moment (two producers with up to five batches in
# flight each, four readers, the side lane, the test's own tasks; every connection counts
# twice more through the proxy in this same process).
MAX_CLIENT_TASKS = 40
MAX_SOCKETS = 80


@dataclass(slots=True)
class Tracker:
    """Checks (producer, n) records as they stream by, keeping only counters."""

    next_n: dict[int, int] = field(default_factory=dict)
    seen: int = 0
    duplicated: int = 0
    lost: int = 0
    closed: bool = False

    def feed(self, producer: int, n: int) -> None:
        self.seen += 1
        expected = self.next_n.get(producer, 0)
        if n < expected:
            self.duplicated += 1
            return
        self.lost += n - expected
        self.next_n[producer] = n + 1

    def finish(self, written: dict[int, int]) -> None:
        for producer, count in written.items():
            self.lost += max(count - self.next_n.get(producer, 0), 0)


@dataclass(slots=True)
class Samples:
    rss: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    sockets: list[int] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.rss.append(rss_bytes())
            self.blocks.append(sys.getallocatedblocks())
            self.tasks.append(sum(1 for t in asyncio.all_tasks() if not _is_proxy(t)))
            self.sockets.append(socket_fds())
            await asyncio.sleep(SAMPLE_EVERY_S)


def _is_proxy(task: asyncio.Task[Any]) -> bool:
    """The proxy's own tasks (one per connection, two per link) are not the client's."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return name.startswith(("ChaosProxy.", "_Link."))


async def _tail(stream: ds.Stream, live: ds.LiveMode, tracker: Tracker) -> None:
    async with stream.read(live=live) as reader:
        async for message in reader:
            tracker.feed(message["p"], message["n"])
        tracker.closed = reader.stream_closed


async def _produce(stream: ds.Stream, producer: int, until: float) -> int:
    n = 0
    async with stream.producer(f"soak-{producer}", max_batch_items=50) as writer:
        while time.monotonic() < until:
            for _ in range(PACE):
                await writer.append({"p": producer, "n": n, "pad": "x" * 40})
                n += 1
            await asyncio.sleep(PAUSE_S)
    return n


async def _side_lane(session: ds.Session, path: str, until: float, rng: random.Random) -> int:
    """Short-lived readers and plain appends, cancelled at random; returns cancellations."""
    side = session.stream(path)
    await side.create(content_type="application/json")
    cancelled = 0

    async def one(i: int) -> None:
        if i % 2:
            await side.append({"side": i})
        else:
            async with side.read(live="sse" if i % 4 else "long-poll") as reader:
                async for _ in reader:
                    pass

    i = 0
    while time.monotonic() < until:
        task = asyncio.create_task(one(i))
        await asyncio.wait({task}, timeout=rng.uniform(0, 0.2))
        if not task.done():
            task.cancel()
            cancelled += 1
        try:
            await task
        except asyncio.CancelledError:
            pass
        except ds.TransportError:
            pass  # a plain append is not retried when the proxy breaks it (retry_appends)
        i += 1
    await side.delete()
    return cancelled


async def _round(
    session: ds.Session, direct: ds.Session, path: str, seconds: float
) -> dict[str, Any]:
    stream = session.stream(path, content_type="application/json")
    await direct.stream(path).create(content_type="application/json")
    trackers: dict[ds.LiveMode, Tracker] = {"sse": Tracker(), "long-poll": Tracker()}
    until = time.monotonic() + seconds
    async with asyncio.TaskGroup() as group:
        for live, tracker in trackers.items():
            group.create_task(_tail(stream, live, tracker))
        counts = await asyncio.gather(*(_produce(stream, p, until) for p in range(PRODUCERS)))
        await direct.stream(path).close()
    written = dict(enumerate(counts))
    for tracker in trackers.values():
        tracker.finish(written)
    await direct.stream(path).delete()
    return {"written": sum(counts), "trackers": trackers}


def _early_late(values: list[int]) -> tuple[float, float]:
    """Medians of the first and last thirds of the samples taken after the warm-up."""
    warm = values[int(len(values) * WARMUP_SHARE) :]
    third = max(len(warm) // 3, 1)
    return statistics.median(warm[:third]), statistics.median(warm[-third:])


@pytest.mark.timeout(SOAK_S + 120)
async def test_soak_keeps_memory_tasks_and_sockets_flat(server: ReferenceServer, path: str) -> None:
    rng = random.Random(f"{SEED}/soak")
    probe = LeakProbe()
    probe.start()
    samples = Samples()
    stop = asyncio.Event()
    started = time.monotonic()
    deadline = started + SOAK_S
    written = seen = lost = duplicated = not_closed = cancelled = rounds = 0
    async with (
        ChaosProxy(server.url, CHAOS) as proxy,
        ds.Session(proxy.url, retry=RETRY, timeout=TIMEOUTS) as session,
        ds.Session(server.url) as direct,
    ):
        sampler = asyncio.create_task(samples.run(stop))
        side = asyncio.create_task(_side_lane(session, path + "-side", deadline, rng))
        while time.monotonic() + ROUND_S <= deadline + 1:
            outcome = await _round(session, direct, f"{path}-r{rounds}", ROUND_S)
            rounds += 1
            written += outcome["written"]
            for tracker in outcome["trackers"].values():
                seen += tracker.seen
                lost += tracker.lost
                duplicated += tracker.duplicated
                not_closed += not tracker.closed
        cancelled = await side
        stop.set()
        await sampler
        chaos = proxy.stats()
        assert proxy.errors == []
    leaks = await probe.finish()

    early, late = _early_late(samples.rss)
    blocks_early, blocks_late = _early_late(samples.blocks)
    record(
        "5 soak",
        seconds=round(time.monotonic() - started, 1),
        rounds=rounds,
        messages_written=written,
        messages_read=seen,
        side_cancellations=cancelled,
        faults=dict(chaos.injected),
        rss_start_mib=round(samples.rss[0] / MiB, 1),
        rss_warm_mib=round(early / MiB, 1),
        rss_end_mib=round(late / MiB, 1),
        rss_growth_mib=round((late - early) / MiB, 2),
        rss_max_mib=round(max(samples.rss) / MiB, 1),
        heap_blocks_warm=int(blocks_early),
        heap_blocks_end=int(blocks_late),
        client_tasks_max=max(samples.tasks),
        sockets_max=max(samples.sockets),
        lost=lost,
        duplicated=duplicated,
        leaked_tasks=len(leaks.tasks),
        leaked_sockets=leaks.sockets,
    )
    assert rounds >= 3
    assert (lost, duplicated, not_closed) == (0, 0, 0)
    assert seen == written * 2
    assert late - early <= GROWTH_ALLOWANCE, f"RSS grew {(late - early) / MiB:.1f} MiB"
    assert blocks_late - blocks_early <= BLOCKS_ALLOWANCE, (
        f"Python's allocated blocks grew from {blocks_early:.0f} to {blocks_late:.0f}"
    )
    assert max(samples.tasks) <= MAX_CLIENT_TASKS
    assert max(samples.sockets) <= MAX_SOCKETS
    assert leaks.clean, leaks
