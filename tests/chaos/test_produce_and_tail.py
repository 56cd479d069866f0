"""Scenario 1: producers write through the chaos proxy while SSE and long-poll readers tail
the same stream through it; every reader must end with exactly the stream's sequence.

The proxy resets connections (before, during and after requests), cuts responses and
stalls them, by a seeded schedule. Idempotent producers retry with the same (epoch, seq), so
the server drops the copies; readers resume from their last offset. At the end, the stream
read directly from the server (no proxy) must hold every produced message exactly once, in
each producer's order, and every reader's sequence must equal it item for item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.chaos._support import SEED, check_sequences, record, scaled
from tests.chaos.proxy import ChaosConfig, ChaosProxy, Fault, Plan

MESSAGES = scaled(20_000, 200_000)
PRODUCERS = 4
BATCH_ITEMS = 100
# Readers that tail from the start, and readers that join when half is written.
EARLY: tuple[ds.LiveMode, ...] = ("sse", "sse", "long-poll", "long-poll")
LATE: tuple[ds.LiveMode, ...] = ("sse", "long-poll")
BUDGET_S = scaled(100.0, 800.0)

RETRY = ds.RetryPolicy(max_retries=30, initial_delay=0.01, max_delay=0.25)
# Requests give up after 2 s, live reads after 3 s of silence (the server answers an idle
# long-poll after 2 s and sends SSE keep-alives as often), so the longer stalls time out.
TIMEOUTS = ds.Timeouts(connect=2.0, request=2.0, live_idle=3.0)
CHAOS = ChaosConfig(
    seed=SEED,
    request_bytes=16_000,
    response_bytes=32_000,
    max_stall=2.5,
    max_faults=scaled(300, 3000),
)


@dataclass(frozen=True, slots=True)
class Kind:
    """One content type: how a message is written, and how read items become records."""

    content_type: str
    encode: Callable[[int, int], object]
    decode: Callable[[list[Any]], list[tuple[int, int]]]


def _json_records(items: list[Any]) -> list[tuple[int, int]]:
    return [(item["p"], item["n"]) for item in items]


def _byte_records(items: list[Any]) -> list[tuple[int, int]]:
    lines = b"".join(items).split(b"\n")
    assert lines[-1] == b"", f"the byte stream ends mid-record: {lines[-1][:40]!r}"
    out: list[tuple[int, int]] = []
    for line in lines[:-1]:
        p, n = line.split(b":")
        out.append((int(p), int(n)))
    return out


KINDS = {
    "json": Kind("application/json", lambda p, n: {"p": p, "n": n}, _json_records),
    "bytes": Kind("application/octet-stream", lambda p, n: f"{p}:{n}\n", _byte_records),
}


@dataclass(slots=True)
class Tail:
    """One reader's outcome."""

    live: ds.LiveMode
    late: bool
    items: list[Any] = field(default_factory=list)
    closed: bool = False
    offset: str = ""


async def _tail(stream: ds.Stream, tail: Tail) -> None:
    async with stream.read(live=tail.live) as reader:
        async for item in reader:
            tail.items.append(item)
        tail.closed = reader.stream_closed
        tail.offset = reader.offset


async def _produce(
    stream: ds.Stream, kind: Kind, producer: int, count: int, half: asyncio.Event
) -> ds.ProducerStatistics:
    async with stream.producer(f"chaos-{producer}", max_batch_items=BATCH_ITEMS) as writer:
        for n in range(count):
            await writer.append(kind.encode(producer, n))
            if n == count // 2 and producer == 0:
                half.set()
    return writer.statistics()


def _leaf(error: BaseException | None) -> str | None:
    """The first real error inside (nested) exception groups, for the summary."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return None if error is None else f"{type(error).__name__}: {error}"


@pytest.mark.timeout(BUDGET_S + 60)
@pytest.mark.parametrize("kind_name", sorted(KINDS))
async def test_every_reader_ends_with_exactly_the_produced_sequence(
    server: ReferenceServer, path: str, kind_name: str
) -> None:
    kind = KINDS[kind_name]
    per_producer = MESSAGES // PRODUCERS
    written = dict.fromkeys(range(PRODUCERS), per_producer)
    started = time.monotonic()
    async with (
        ChaosProxy(server.url, CHAOS) as proxy,
        ds.Session(proxy.url, retry=RETRY, timeout=TIMEOUTS) as chaotic,
        ds.Session(server.url) as direct,
    ):
        await direct.stream(path).create(content_type=kind.content_type)
        stream = chaotic.stream(path, content_type=kind.content_type)
        tails = [Tail(live, late=False) for live in EARLY]
        tails += [Tail(live, late=True) for live in LATE]
        half = asyncio.Event()
        stats: list[ds.ProducerStatistics] = []

        async def late_readers(group: asyncio.TaskGroup) -> None:
            await half.wait()
            for tail in tails:
                if tail.late:
                    group.create_task(_tail(stream, tail))

        async def produce_then_close() -> None:
            stats.extend(
                await asyncio.gather(
                    *(_produce(stream, kind, p, per_producer, half) for p in range(PRODUCERS))
                )
            )
            await direct.stream(path).close()

        failure: Exception | None = None
        try:
            async with asyncio.timeout(BUDGET_S), asyncio.TaskGroup() as group:
                for tail in tails:
                    if not tail.late:
                        group.create_task(_tail(stream, tail))
                group.create_task(late_readers(group))
                group.create_task(produce_then_close())
        except Exception as exc:  # recorded with the numbers, then raised
            failure = exc
        chaos = proxy.stats()
        assert proxy.errors == []
    async with ds.Session(server.url) as direct:
        stored = kind.decode(await direct.stream(path).read_all())

    check = check_sequences(stored, written)
    reader_mismatches = {
        f"{tail.live}{'-late' if tail.late else ''}#{i}": len(tail.items)
        for i, tail in enumerate(tails)
        if kind.decode(tail.items) != stored or not tail.closed
    }
    record(
        f"1 produce+tail {kind_name}",
        messages=MESSAGES,
        producers=PRODUCERS,
        readers=len(tails),
        connections=chaos.connections,
        faults=dict(chaos.injected),
        producer_retries=sum(s.retries for s in stats),
        server_deduplicated_batches=sum(s.duplicates for s in stats),
        lost=check.lost,
        duplicated=check.duplicated,
        out_of_order=check.out_of_order,
        readers_not_exact=len(reader_mismatches),
        seconds=round(time.monotonic() - started, 1),
        failure=_leaf(failure),
    )
    if failure is not None:
        raise failure
    assert check.exact, check
    assert reader_mismatches == {}, f"readers whose sequence differs from the stream's: {check}"
    assert chaos.faults >= 15, f"the proxy injected too few faults to prove much: {chaos}"


@pytest.mark.timeout(60)
async def test_producer_resends_a_batch_whose_gap_answer_was_overtaken(
    server: ReferenceServer, path: str
) -> None:
    """The race behind the random scenario's failures, aimed at with the proxy's schedule.

    Batch 0 and batch 1 are pipelined on two connections. The proxy holds batch 0's request
    for 0.3 s, so the server sees batch 1 first and answers 409 (gap: expected 0); it holds
    that answer for 1 s. Meanwhile batch 0 lands and is acknowledged. When the 409 finally
    arrives nothing is missing any more: the producer must resend batch 1, not fail.
    """
    schedule = (
        # Connection 0 carries batch 0: its request is held.
        Plan(Fault.STALL_REQUEST, after=0, stall=0.3),
        # Connection 1 carries batch 1: its answer is held.
        Plan(Fault.STALL, after=0, stall=1.0),
    )
    config = ChaosConfig(seed=SEED, fault_rate=0.0, schedule=schedule)
    async with (
        ds.Session(server.url) as direct,
        ChaosProxy(server.url, config) as proxy,
        ds.Session(proxy.url, retry=RETRY, timeout=TIMEOUTS) as session,
    ):
        await direct.stream(path).create(content_type="application/json")
        stream = session.stream(path, content_type="application/json")
        async with stream.producer("overtaken", max_batch_items=1, max_in_flight=2) as writer:
            first = await writer.append({"n": 0})
            # The linger timer sends batch 0 alone, on the only connection there is yet.
            await asyncio.sleep(0.1)
            second = await writer.append({"n": 1})
        acks = [await first, await second]
        injected = dict(proxy.stats().injected)
        stored = [m["n"] for m in await direct.stream(path).read_all()]
    assert injected == {"stall": 1, "stall-request": 1}, "the race was not set up as planned"
    assert [ack.seq for ack in acks] == [0, 1]
    assert stored == [0, 1]
