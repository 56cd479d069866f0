"""Scenario: a pool of worker processes shares one pull-wake subscription while workers are
killed (SIGKILL) and restarted at random.

Four worker processes run :class:`durable_streams.SubscriptionRunner` on one subscription
whose glob matches every event stream; the test appends events across the streams and,
meanwhile, kills a worker (usually the one working) and starts a new one in its place.
Each worker logs every batch it handled (one ``write`` on an ``O_APPEND`` file, before the
handler returns, so before the ack) and the test checks, at the end:

- every event was handled: none lost;
- an event handled more than once was handled, every time but the last, by a worker that
  was killed afterwards: duplicates come only from killed workers' unacknowledged
  batches (they are counted and reported). The one other allowed cause is a claim the
  server fenced because a worker stalled past its lease on an overloaded machine; the
  worker reports it, and the count is recorded (``fenced_claims``, 0 in normal runs);
- every stream's acknowledged offset on the server equals its tail;
- the workers still alive stop cleanly on SIGTERM (exit status 0).

Reduced by default; ``CHAOS_SCALE=full`` (``nox -s chaos``) runs 200 streams and 20,000
events. Run as ``python -m tests.chaos.test_subscription_workers worker ...``, the module
is one worker process.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.chaos._support import SEED, record, scaled

ROOT_DIR = Path(__file__).resolve().parents[2]
STREAMS = scaled(20, 200)
EVENTS = scaled(2_000, 20_000)
WORKERS = 4
KILLS = scaled(5, 16)
# Events are appended over this long, so that kills land while work arrives.
WRITE_S = scaled(6.0, 30.0)
BUDGET_S = scaled(60.0, 240.0)
# A killed holder's work waits for its lease to expire; heartbeats go every third of it.
LEASE_TTL = 2.0
CONCURRENCY = 8
APPENDERS = 8


# -- the worker process ---------------------------------------------------------------


async def _work(root: str, subscription_id: str, name: str, log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(path: str, batch: ds.Batch[Any]) -> None:
        ids = ",".join(f"{item['s']}:{item['i']}" for item in batch.items)
        # CLOCK_MONOTONIC is one clock for every process: the logs merge into one order.
        line = f"{time.monotonic_ns()}\t{name}\t{path}\t{ids}\n"
        os.write(fd, line.encode())  # one write: whole or absent

    try:
        async with ds.Session(root) as session:
            runner = ds.SubscriptionRunner(
                session.subscription(subscription_id), handle, worker=name,
                concurrency=CONCURRENCY,
            )  # fmt: skip
            running = asyncio.create_task(runner.run())
            # "ready" once SIGTERM would stop it gracefully (its receiver is installed).
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not running.done():  # noqa: ASYNC110 - no event says so
                await asyncio.sleep(0)
            print("ready", flush=True)
            stats = await running
            print(f"stopped {stats}", flush=True)
    finally:
        os.close(fd)


# -- the scenario ---------------------------------------------------------------------


@dataclass(slots=True)
class Worker:
    """One worker process (an incarnation of a slot)."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    stderr: Path
    killed: bool = False
    # Claims the server fenced (its lease expired: the worker stalled past the TTL).
    fenced: int = 0


@dataclass(slots=True)
class Pool:
    root: str
    subscription_id: str
    tmp: Path
    rng: random.Random
    live: dict[int, Worker] = field(default_factory=dict)
    all: list[Worker] = field(default_factory=list)
    kills: int = 0
    holder_kills: int = 0

    async def start(self, slot: int) -> None:
        name = f"w{slot}-{len(self.all)}"
        log, stderr = self.tmp / f"{name}.log", self.tmp / f"{name}.stderr"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.chaos.test_subscription_workers", "worker",
                self.root, self.subscription_id, name, str(log),
                cwd=ROOT_DIR, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        worker = Worker(name, proc, log, stderr)
        self.live[slot] = worker
        self.all.append(worker)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        assert line == b"ready\n", f"{name} did not start: {stderr.read_text()}"

    def busiest(self) -> int:
        """The slot whose worker logged last: most likely the one holding the claim."""

        def mtime(slot: int) -> float:
            log = self.live[slot].log
            return log.stat().st_mtime if log.exists() else 0.0

        return max(self.live, key=mtime)

    async def kill_one(self) -> None:
        if self.rng.random() < 0.75:
            slot, self.holder_kills = self.busiest(), self.holder_kills + 1
        else:
            slot = self.rng.choice(sorted(self.live))
        victim = self.live[slot]
        victim.killed = True
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()
        self.kills += 1
        await self.start(slot)

    async def stop_all(self) -> list[int]:
        for worker in self.live.values():
            worker.proc.send_signal(signal.SIGTERM)
        codes: list[int] = []
        for worker in self.live.values():
            assert worker.proc.stdout is not None
            async with asyncio.timeout(20):
                out = (await worker.proc.stdout.read()).decode()
                codes.append(await worker.proc.wait())
            found = re.search(r"\bfenced=(\d+)", out)
            worker.fenced = int(found.group(1)) if found else 0
        return codes

    def kill_leftovers(self) -> None:
        for worker in self.all:
            if worker.proc.returncode is None:
                worker.proc.kill()


async def _append_all(session: ds.Session, prefix: str, rng: random.Random) -> None:
    """Append EVENTS events across the streams, in order per stream, over WRITE_S."""
    per_stream = EVENTS // STREAMS

    async def appender(k: int) -> None:
        mine = [s for s in range(STREAMS) if s % APPENDERS == k]
        sent = dict.fromkeys(mine, 0)
        bursts = per_stream * len(mine) // 3 or 1
        pause = WRITE_S / bursts
        while mine:
            s = rng.choice(mine)
            count = min(rng.randint(1, 5), per_stream - sent[s])
            stream = session.stream(f"{prefix}/events/{s}", content_type="application/json")
            for _ in range(count):
                await stream.append({"s": s, "i": sent[s]})
                sent[s] += 1
            if sent[s] == per_stream:
                mine.remove(s)
            await asyncio.sleep(pause * rng.random() * 2)  # pacing load, not synchronising

    async with asyncio.TaskGroup() as group:
        for k in range(APPENDERS):
            group.create_task(appender(k))


async def _all_acked(session: ds.Session, subscription: ds.Subscription, prefix: str) -> bool:
    info = await subscription.get()
    for s in range(STREAMS):
        path = f"{prefix}/events/{s}"
        if info.acked_offset(path) != (await session.stream(path).head()).offset:
            return False
    return True


def _handled(workers: list[Worker]) -> list[tuple[str, tuple[int, int]]]:
    """(worker, event) for every handled event, in the order they were handled."""
    batches: list[list[str]] = []
    for worker in workers:
        if worker.log.exists():
            batches.extend(line.split("\t") for line in worker.log.read_text().splitlines())
    batches.sort(key=lambda fields: int(fields[0]))  # one lease at a time: a total order
    out = []
    for _, name, _, ids in batches:
        for pair in ids.split(","):
            s, i = pair.split(":")
            out.append((name, (int(s), int(i))))
    return out


async def test_workers_killed_at_random_lose_nothing_and_repeat_only_unacked_work(
    tmp_path: Path,
) -> None:
    rng = random.Random(f"{SEED}/subscription-workers")
    prefix = f"pool-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with ReferenceServer(long_poll_timeout_ms=2000) as server:
        root = f"{server.url}/v1/stream"
        async with ds.Session(root, max_connections=64) as session:
            await session.stream(f"{prefix}/wake").create(content_type="application/json")
            subscription = session.subscription(f"{prefix}-sub")
            await subscription.create(
                ds.SubscriptionConfig.pull_wake(
                    f"{prefix}/wake", pattern=f"{prefix}/events/*", lease_ttl=LEASE_TTL
                )
            )
            for s in range(STREAMS):
                await session.stream(f"{prefix}/events/{s}").create(content_type="application/json")
            pool = Pool(root, subscription.id, tmp_path, rng)
            try:
                for slot in range(WORKERS):
                    await pool.start(slot)
                writing = asyncio.create_task(_append_all(session, prefix, rng))
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.3, 2.0) * WRITE_S / KILLS)  # pacing
                    await pool.kill_one()
                await writing
                deadline = time.monotonic() + BUDGET_S
                while not await _all_acked(session, subscription, prefix):
                    assert time.monotonic() < deadline, "the pool did not catch up in time"
                    await asyncio.sleep(0.2)
                codes = await pool.stop_all()
            finally:
                pool.kill_leftovers()
    elapsed = time.monotonic() - started

    handled = _handled(pool.all)
    copies = Counter(event for _, event in handled)
    expected = {(s, i) for s in range(STREAMS) for i in range(EVENTS // STREAMS)}
    lost = expected - set(copies)
    foreign = set(copies) - expected
    duplicates = sum(n - 1 for n in copies.values())
    killed = {w.name for w in pool.all if w.killed}
    fenced = {w.name for w in pool.all if w.fenced}
    # Every copy but the last of an event was handled by a worker that was then killed
    # (or, on a machine too loaded to heartbeat in time, one whose claim was fenced: it
    # says so, and the scenario reports it).
    last_by: dict[tuple[int, int], str] = {}
    earlier: list[tuple[str, tuple[int, int]]] = []
    for name, event in reversed(handled):
        if event in last_by:
            earlier.append((name, event))
        else:
            last_by[event] = name
    unexplained = [(n, e) for n, e in earlier if n not in killed | fenced]
    by_killed = sum(1 for name, _ in handled if name in killed | fenced)
    record(
        "subscription_workers",
        streams=STREAMS,
        events=EVENTS,
        workers=WORKERS,
        kills=pool.kills,
        kills_of_the_busiest=pool.holder_kills,
        duplicates=duplicates,
        handled_by_killed_workers=by_killed,
        fenced_claims=sum(w.fenced for w in pool.all),
        seconds=round(elapsed, 1),
    )
    assert not lost, f"{len(lost)} events never handled, e.g. {sorted(lost)[:5]}"
    assert not foreign, sorted(foreign)[:5]
    assert unexplained == [], f"duplicates from workers never killed: {unexplained[:5]}"
    assert duplicates <= by_killed
    assert codes == [0] * WORKERS, [w.stderr.read_text()[-2000:] for w in pool.live.values()]
    for worker in pool.live.values():
        assert "Traceback" not in worker.stderr.read_text(), worker.stderr.read_text()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    asyncio.run(_work(*sys.argv[2:6]))
