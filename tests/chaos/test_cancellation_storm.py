"""Scenario 3: a storm of cancellations at random points, through the chaos proxy.

Several lanes run side by side on one session, each starting an operation as a task and
cancelling it after a seeded random delay, over and over: appends (plain, and through an
idempotent producer whose small buffer makes ``append`` wait), ``flush``, long-poll and
SSE reads (of a JSON and of a byte stream, on readers kept across cancellations),
requests stuck in retry backoff (a path the server answers 503 forever), and whole life
cycles (a producer's ``async with``, a reader's, a session's). Where each cancellation
landed is recorded from the task's await chain.

Afterwards, with the proxy calm:

- the session still works (create, produce, read);
- every message whose ``append`` returned is stored exactly once, in order; a message
  whose ``append`` was cancelled is not stored; a cancelled plain append or a producer
  cancelled mid-exit stored its message at most once;
- every reader kept across the cancellations read exactly the stream, item for item,
  as the reader's docstring promises ("resumes from its last delivered offset, so nothing
  is skipped or repeated");
- once everything is closed, no task, socket, ``ResourceWarning``, unraisable error or
  event-loop error is left.

Random cancellations rarely land at the rarer wait points, so two more tests aim: a reader
cancelled at each of its wait points (held there by the proxy's schedule) must then read
on exactly; and an ``append`` cancelled at its first wait must not have written its
message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.chaos._support import SEED, LeakProbe, record, scaled, suspended_in
from tests.chaos.proxy import ChaosConfig, ChaosProxy, Fault, Plan

CANCELLATIONS = scaled(1000, 10_000)
BUDGET_S = scaled(100.0, 900.0)
JSON = "application/json"
BYTES = "application/octet-stream"

RETRY = ds.RetryPolicy(max_retries=30, initial_delay=0.05, max_delay=0.3, retry_appends=False)
TIMEOUTS = ds.Timeouts(connect=2.0, request=2.0, live_idle=3.0)
# Mostly cut responses: reads then fail mid-body and wait in their retry backoff, where
# many of the cancellations land.
CHAOS = ChaosConfig(
    seed=SEED,
    weights={
        Fault.REFUSE: 0.5,
        Fault.RESET_REQUEST: 1.0,
        Fault.RESET_RESPONSE: 1.0,
        Fault.CUT: 4.0,
        Fault.STALL: 1.0,
    },
    request_bytes=16_000,
    response_bytes=4_000,
    max_stall=0.5,
)

# lane -> (share of the cancellations, longest delay before the cancel, in seconds)
LANES: dict[str, tuple[int, float]] = {
    "producer-append": (3, 0.05),
    "producer-flush": (2, 0.05),
    "plain-append": (1, 0.05),
    "bytes-append": (2, 0.05),
    "long-poll-json": (2, 0.3),
    "sse-json": (2, 0.3),
    "long-poll-bytes": (2, 0.3),
    "sse-bytes": (2, 0.3),
    "backoff": (2, 0.2),
    "life-cycles": (2, 0.1),
}


@dataclass(slots=True)
class Ledger:
    """What the writers know about each message they tried to write."""

    accepted: list[str] = field(default_factory=list)  # append() returned, in order
    refused: set[str] = field(default_factory=set)  # append() was cancelled: not buffered
    at_most_once: set[str] = field(default_factory=set)  # may or may not be stored
    exactly_once: set[str] = field(default_factory=set)  # acknowledged outside the order


@dataclass(slots=True)
class Storm:
    """Counts of the cancellations, by lane and by where they landed."""

    rng: random.Random
    cancelled: Counter[str] = field(default_factory=Counter)
    finished_first: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    where: Counter[str] = field(default_factory=Counter)

    async def strike(
        self,
        lane: str,
        make: Callable[[], Coroutine[Any, Any, Any]],
        longest: float,
        tolerate: tuple[type[Exception], ...],
    ) -> None:
        """Run ``make()`` as a task and cancel it after a random delay.

        Errors of the types in ``tolerate`` are counted; any other error fails the test.
        """
        task = asyncio.create_task(make())
        roll = self.rng.random()
        if roll < 0.1:
            pass  # cancelled before it even starts
        elif roll < 0.4:
            for _ in range(self.rng.randint(1, 30)):
                await asyncio.sleep(0)  # a few steps into it
        else:
            await asyncio.wait({task}, timeout=self.rng.uniform(0, longest))
        if task.done():
            self.finished_first[lane] += 1
        else:
            self.where[suspended_in(task)] += 1
            self.cancelled[lane] += 1
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except tolerate:
            self.failed[lane] += 1


def _ledger_problems(
    who: str, stored: list[str], *, written: list[str], refused: set[str], maybe: set[str]
) -> dict[str, object]:
    """What is wrong with ``stored`` (message names, in stream order) for one writer.

    ``written`` must each be stored exactly once and in this order, ``refused`` never,
    ``maybe`` at most once; nothing else may appear.
    """
    counts = Counter(stored)
    found: dict[str, object] = {
        "stored twice": sorted(name for name, n in counts.items() if n > 1)[:5],
        "stored although its append was cancelled": sorted(refused & counts.keys())[:5],
        "acknowledged but not stored": sorted(set(written) - counts.keys())[:5],
        "stored but never written": sorted(counts.keys() - set(written) - refused - maybe)[:5],
    }
    if not any(found.values()):
        accepted = set(written)
        found["out of order"] = [n for n in stored if n in accepted] != written
    return {f"{who}: {problem}": what for problem, what in found.items() if what}


class Follower:
    """A reader kept across cancellations; ``items`` is everything it ever yielded."""

    def __init__(self, stream: ds.Stream, live: ds.LiveMode) -> None:
        self.reader = stream.read(live=live)
        self.iterator = aiter(self.reader)
        self.items: list[Any] = []

    async def read_while_cancelled(self, i: int) -> None:
        """Read until cancelled (``i``, the attempt number, is not used)."""
        while True:
            self.items.append(await anext(self.iterator))

    async def drain(self) -> None:
        """Read to the end of the stream (the same iterator: a reader is consumed once)."""
        while True:
            try:
                item = await anext(self.iterator)
            except StopAsyncIteration:
                return
            self.items.append(item)


async def _lane(storm: Storm, lane: str, count: int, make: Callable[[int], Awaitable[Any]]) -> None:
    longest = LANES[lane][1]
    # A plain append is not retried (retry_appends=False): a fault fails it, and it is then
    # written at most once. Everything else retries, and must never fail.
    tolerate: tuple[type[Exception], ...] = (ds.TransportError,) if lane == "plain-append" else ()
    # Some operations finish before their cancel comes: go on until ``count`` of them
    # were cancelled while pending (with a bound, in case a lane never waits).
    for i in range(count * 10):
        if storm.cancelled[lane] >= count:
            return

        async def run(i: int = i) -> None:
            await make(i)

        await storm.strike(lane, run, longest, tolerate)


@pytest.mark.timeout(BUDGET_S + 60)
async def test_cancellation_storm_leaves_nothing_behind(server: ReferenceServer, path: str) -> None:
    probe = LeakProbe()
    probe.start()
    started = time.monotonic()
    storm = Storm(random.Random(f"{SEED}/storm"))
    ledger = Ledger()
    bytes_ledger = Ledger()
    bad_path = path + "-always-503"
    server.inject_error(bad_path, status=503, count=10**9)
    try:
        async with (
            ChaosProxy(server.url, CHAOS) as proxy,
            ds.Session(proxy.url, retry=RETRY, timeout=TIMEOUTS) as session,
        ):
            json_stream = session.stream(path)
            await json_stream.create(content_type=JSON)
            byte_stream = session.stream(path + "-bytes")
            await byte_stream.create(content_type=BYTES)
            followers = {
                "long-poll-json": Follower(json_stream, "long-poll"),
                "sse-json": Follower(json_stream, "sse"),
                "long-poll-bytes": Follower(byte_stream, "long-poll"),
                "sse-bytes": Follower(byte_stream, "sse"),
            }
            producer = json_stream.producer(
                "storm", max_buffer_bytes=2048, max_batch_items=16, max_in_flight=2
            )
            byte_producer = byte_stream.producer(
                "storm-bytes", max_buffer_bytes=1024, max_batch_items=8, max_in_flight=2
            )
            async with producer, byte_producer:
                counter = iter(range(10**9))

                async def append_some(writer: ds.IdempotentProducer, book: Ledger) -> None:
                    for _ in range(4):
                        name = f"m{next(counter)}"
                        message: object = {"id": name} if book is ledger else f"{name}\n"
                        try:
                            await writer.append(message)
                        except asyncio.CancelledError:
                            book.refused.add(name)
                            raise
                        book.accepted.append(name)

                async def flush(i: int) -> None:
                    await append_some(producer, ledger)
                    await producer.flush()

                async def plain(i: int) -> None:
                    name = f"plain{i}"
                    ledger.at_most_once.add(name)
                    await json_stream.append({"id": name})
                    ledger.at_most_once.discard(name)
                    ledger.exactly_once.add(name)

                bad = session.stream(bad_path, content_type=JSON)

                async def backoff(i: int) -> None:
                    if i % 3 == 0:
                        await bad.head()
                    else:
                        async with bad.read(live="sse" if i % 3 == 1 else "long-poll") as r:
                            async for _ in r:
                                pass

                async def life_cycle(i: int) -> None:
                    kind = i % 3
                    if kind == 0:
                        name = f"life{i}"
                        ledger.at_most_once.add(name)
                        # No content type on this handle: start() sends a HEAD first.
                        handle = session.stream(path)
                        async with handle.producer(f"life-{i}") as short_lived:
                            receipt = await short_lived.append({"id": name})
                        await receipt
                        ledger.at_most_once.discard(name)
                        ledger.exactly_once.add(name)
                    elif kind == 1:
                        async with json_stream.read(live="sse") as r:
                            async for _ in r:
                                pass
                    else:
                        async with ds.Session(proxy.url, retry=RETRY, timeout=TIMEOUTS) as other:
                            await other.stream(path).head()

                share = CANCELLATIONS / sum(weight for weight, _ in LANES.values())
                counts = {lane: round(weight * share) for lane, (weight, _) in LANES.items()}
                work: dict[str, Callable[[int], Awaitable[Any]]] = {
                    "producer-append": lambda i: append_some(producer, ledger),
                    "producer-flush": flush,
                    "plain-append": plain,
                    "bytes-append": lambda i: append_some(byte_producer, bytes_ledger),
                    "backoff": backoff,
                    "life-cycles": life_cycle,
                }
                for lane, follower in followers.items():
                    work[lane] = follower.read_while_cancelled
                async with asyncio.timeout(BUDGET_S), asyncio.TaskGroup() as group:
                    for lane, make in work.items():
                        group.create_task(_lane(storm, lane, counts[lane], make))

                proxy.calm()
                # The session still works: a new stream, written and read back.
                fresh = session.stream(path + "-after")
                await fresh.create(content_type=JSON)
                async with fresh.producer("after") as after:
                    for n in range(100):
                        await after.append(n)
                assert await fresh.read_all() == list(range(100))
            # Leaving the producers' block flushed them; now end both streams.
            await json_stream.close()
            await byte_stream.close()
            async with asyncio.timeout(60):
                for follower in followers.values():
                    await follower.drain()
                    await follower.reader.aclose()
            stored = await json_stream.read_all()
            stored_bytes = b"".join(await byte_stream.read_all())
            chaos = proxy.stats()
            proxy_errors = list(proxy.errors)
    finally:
        server.clear_errors()
    leaks = await probe.finish()

    ids = [m["id"] for m in stored]
    byte_ids = stored_bytes.decode().split("\n")[:-1]
    problems = {
        **_ledger_problems(
            "producer",
            [i for i in ids if i.startswith("m")],
            written=ledger.accepted,
            refused=ledger.refused,
            maybe=set(),
        ),
        **_ledger_problems(
            "byte producer",
            byte_ids,
            written=bytes_ledger.accepted,
            refused=bytes_ledger.refused,
            maybe=set(),
        ),
        # Plain appends and short-lived producers: no order between them.
        **_ledger_problems(
            "plain appends and short-lived producers",
            sorted(i for i in ids if not i.startswith("m")),
            written=sorted(ledger.exactly_once),
            refused=set(),
            maybe=ledger.at_most_once,
        ),
    }
    reader_problems = {
        lane: len(f.items)
        for lane, f in followers.items()
        if (f.items if lane.endswith("json") else [b"".join(f.items)])
        != (stored if lane.endswith("json") else [stored_bytes])
    }
    record(
        "3 cancellation storm",
        cancellations=sum(storm.cancelled.values()),
        finished_before_cancel=sum(storm.finished_first.values()),
        plain_appends_failed_by_faults=sum(storm.failed.values()),
        by_lane=dict(storm.cancelled),
        where=dict(storm.where.most_common()),
        messages_accepted=len(ledger.accepted) + len(bytes_ledger.accepted),
        appends_cancelled=len(ledger.refused) + len(bytes_ledger.refused),
        faults=dict(chaos.injected),
        readers_not_exact=len(reader_problems),
        leaked_tasks=len(leaks.tasks),
        leaked_sockets=leaks.sockets,
        resource_warnings=len(leaks.resource_warnings),
        seconds=round(time.monotonic() - started, 1),
    )
    assert proxy_errors == []
    assert {k: v for k, v in problems.items() if v} == {}
    assert reader_problems == {}, (
        "readers kept across cancellations did not read exactly the stream "
        "(lane: items read); stream has "
        f"{len(stored)} JSON messages and {len(stored_bytes)} bytes"
    )
    assert leaks.clean, leaks
    assert sum(storm.cancelled.values()) >= CANCELLATIONS * 0.95, storm.cancelled


# -- cancellations aimed at each wait point of a reader ------------------------------------

AIM_RETRY = ds.RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=0.5)
AIM_TIMEOUTS = ds.Timeouts(connect=5.0, request=10.0, live_idle=10.0)
BODY = 600_000  # bytes of data before a reader starts: a catch-up body this long
MID = 300_000  # where in that body a stall or a cut strikes


@dataclass(frozen=True, slots=True)
class Aim:
    """Where to cancel a reader, and the proxy plans that hold it there.

    Each target is a ``suspended_in`` label (a prefix) and the number of scheduled faults
    that must have struck first; the reader is cancelled as soon as it waits there then
    (and, for a live reader, once it is live), once per target, in order.
    """

    live: ds.LiveMode
    targets: tuple[tuple[str, int], ...]
    schedule: tuple[Plan, ...] = ()
    offset: str = "-1"


_READ = "BodyStream."  # every body read (bytes, SSE, JSON) waits for bytes in one of its methods
_BACKOFF = "StreamReader._read_failed>sleep"
# A JSON stream's long-poll is shared by the session's readers at one position: its reader
# waits for the session's poll; a byte stream's reader waits in its own request.
_LIVE_POLL = {"json": "SharedPolls.poll", "bytes": "Transport.send"}
_HELD = Plan(Fault.STALL, after=MID, stall=3.0)  # a body held in its middle
_HELD_HEAD = Plan(Fault.STALL, after=0, stall=3.0)  # an answer held before its first byte
AIMS = {
    "catch-up mid-body": Aim(False, ((_READ, 1),), (_HELD,)),
    "catch-up retry backoff after a cut": Aim(False, ((_BACKOFF, 1),), (Plan(Fault.CUT, MID),)),
    # aiohttp itself retries an idempotent request once on a refused connection: two in a
    # row reach the library's backoff.
    "request retry backoff": Aim(
        False, (("Session._request>sleep", 2),), (Plan(Fault.REFUSE), Plan(Fault.REFUSE))
    ),
    "re-request after a cancelled read": Aim(
        False, ((_READ, 1), ("Transport.send", 2)), (_HELD, _HELD_HEAD)
    ),
    "cut, then cancelled in backoff, then in the re-request": Aim(
        False, ((_BACKOFF, 1), ("Transport.send", 2)), (Plan(Fault.CUT, MID), _HELD_HEAD)
    ),
    "long-poll wait": Aim("long-poll", (("long-poll", 0),)),
    "SSE read": Aim("sse", ((_READ, 0),)),
    "SSE retry backoff after a cut": Aim(
        "sse", ((_BACKOFF, 1),), (Plan(Fault.CUT, after=4_000),), "now"
    ),
}


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ReferenceServer]:
    """A server that never compresses: a body's bytes on the wire are the data's bytes, so
    a fault aimed at byte ``MID`` of a response lands in the middle of the data."""
    with ReferenceServer(long_poll_timeout_ms=2000, compression=False) as srv:
        yield srv


async def _fill(stream: ds.Stream, kind: str, size: int, tag: str) -> None:
    """Append about ``size`` bytes of data, in 1 KiB messages."""
    rng = random.Random(f"{SEED}/{tag}")
    async with stream.producer(f"fill-{tag}") as writer:
        for n in range(size // 1024):
            if kind == "json":
                await writer.append({"n": n, "tag": tag, "pad": rng.randbytes(490).hex()})
            else:
                await writer.append(rng.randbytes(1024))


async def _collect(iterator: AsyncIterator[Any], items: list[Any]) -> None:
    while True:
        try:
            items.append(await anext(iterator))
        except StopAsyncIteration:
            return


async def _cancel_at(
    iterator: AsyncIterator[Any],
    items: list[Any],
    target: str,
    ready: Callable[[], bool],
    kick: tuple[Callable[[], bool], Callable[[], object]] | None = None,
) -> str:
    """Read until the reader waits at ``target`` (and ``ready()``), then cancel it there.

    ``kick`` is a condition and an action: the action runs once, when the reader first
    waits for body bytes while the condition holds (for a reader at the tail, it starts
    the writes that reach it).
    """
    task = asyncio.create_task(_collect(iterator, items))
    deadline = time.monotonic() + 15
    where = "not started"
    reached = False
    while not task.done() and time.monotonic() < deadline:
        where = suspended_in(task)
        if kick is not None and where.startswith(_READ) and kick[0]():
            kick[1]()
            kick = None
        elif where.startswith(target) and ready():
            reached = True
            break
        await asyncio.sleep(0.001)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, f"the reader did not stop within 5 s of being cancelled at {where}"
    if not reached:
        error = task.exception() if task.done() and not task.cancelled() else None
        pytest.fail(f"the reader never waited at {target} (last seen at {where}); error: {error!r}")
    assert task.cancelled(), f"the reader was cancelled at {where} but did not end cancelled"
    return where


@pytest.mark.parametrize("kind", ["json", "bytes"])
@pytest.mark.parametrize("aim_name", list(AIMS))
async def test_reader_cancelled_at_a_wait_point_resumes_exactly(
    plain_server: ReferenceServer, path: str, aim_name: str, kind: str
) -> None:
    aim = AIMS[aim_name]
    content_type = JSON if kind == "json" else BYTES
    probe = LeakProbe()
    probe.start()
    config = ChaosConfig(seed=SEED, fault_rate=0.0, schedule=aim.schedule)
    async with (
        ds.Session(plain_server.url) as direct,
        ChaosProxy(plain_server.url, config) as proxy,
        ds.Session(proxy.url, retry=AIM_RETRY, timeout=AIM_TIMEOUTS) as session,
    ):
        origin = direct.stream(path)
        await origin.create(content_type=content_type)
        start = aim.offset
        if start == "now":
            start = (await origin.head()).offset
        else:
            await _fill(origin, kind, BODY, "before")
        reader = session.stream(path, content_type=content_type).read(aim.offset, live=aim.live)
        iterator = aiter(reader)
        items: list[Any] = []

        landed = []
        fillers: list[asyncio.Task[None]] = []

        def fill_live() -> None:
            # Data to be cut in the middle of, written once the reader waits at the tail.
            fillers.append(asyncio.create_task(_fill(origin, kind, 64 * 1024, "live")))

        def live() -> bool:
            return aim.live is False or reader.mode == aim.live

        for aimed, struck in aim.targets:
            target = _LIVE_POLL[kind] if aimed == "long-poll" else aimed

            def ready(struck: int = struck) -> bool:
                return live() and proxy.stats().faults >= struck

            kick = (live, fill_live) if aim.offset == "now" and not fillers else None
            landed.append(await _cancel_at(iterator, items, target, ready, kick))
        await asyncio.gather(*fillers)
        if aim.live is not False:
            await _fill(origin, kind, 8 * 1024, "after")
            await origin.close()
        async with asyncio.timeout(30):
            await _collect(iterator, items)
        await reader.aclose()
        expected = await origin.read_all(start)
        faults = dict(proxy.stats().injected)
    leaks = await probe.finish()
    exact = (b"".join(items) == b"".join(expected)) if kind == "bytes" else items == expected
    record(f"3 aimed cancel: {aim_name} ({kind})", cancelled_at=landed, exact=exact)
    if kind == "bytes":
        got, want = b"".join(items), b"".join(expected)
        assert len(got) == len(want), f"cancelled at {landed}: read {len(got)} of {len(want)} bytes"
        assert got == want, f"cancelled at {landed}: the bytes read differ from the stream's"
    else:
        assert len(items) == len(expected), (
            f"cancelled at {landed}: {len(items)} of {len(expected)}"
        )
        assert items == expected, f"cancelled at {landed}: the messages read differ"
    assert faults == Counter(str(p.fault) for p in aim.schedule), "a planned fault did not strike"
    assert leaks.clean, leaks


# -- a cancelled append: buffered or not, the caller must be able to tell --------------------


@pytest.mark.parametrize("case", ["appends with room", "appends waiting for room"])
async def test_cancelled_append_is_not_written(
    server: ReferenceServer, path: str, case: str
) -> None:
    """``append`` promises that a cancelled call buffered nothing, so the caller may send
    the message again without writing it twice. Each append runs as a task that is
    cancelled at its first wait, if it waits at all; an append that returned was buffered.
    """
    options: dict[str, Any] = {}
    if case == "appends waiting for room":
        # Room for one message: the next append waits until the first is acknowledged.
        options = {"max_buffer_bytes": 16, "linger": 0.2}
    count = 400 if case == "appends with room" else 20
    async with ds.Session(server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        outcomes: list[tuple[int, str]] = []
        async with stream.producer("cancelled-appends", **options) as writer:
            await writer.append(0)
            for n in range(1, count + 1):
                task = asyncio.create_task(writer.append(n))
                await asyncio.sleep(0)  # the append runs up to its first wait
                if task.done():
                    continue
                where = suspended_in(task)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcomes.append((n, where))
            await writer.flush()
        stored = await stream.read_all()
    cancelled = {n for n, _ in outcomes}
    places = sorted({w for _, w in outcomes})
    written_anyway = sorted(cancelled & set(stored))
    record(
        f"3 cancelled append: {case}",
        appends=count,
        cancelled=len(cancelled),
        where=places,
        written_anyway=len(written_anyway),
    )
    assert cancelled, "no append was ever cancelled while pending"
    assert written_anyway == [], f"appends cancelled at {places} were written: {written_anyway}"
    assert sorted(stored) == sorted(set(range(count + 1)) - cancelled)
