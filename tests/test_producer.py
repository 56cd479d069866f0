"""The idempotent producer against the real reference server: batching, sequencing,
fencing, auto-claim, closing, input validation and session headers.

Fault injection and restarts live in ``test_producer_faults.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

import durable_streams as ds
from durable_streams.testing import ReferenceServer

MAX_SAFE_INTEGER = 2**53 - 1


async def _raw_produce(
    url: str,
    *,
    producer_id: str,
    epoch: int,
    seq: int,
    body: bytes,
    content_type: str = "application/json",
) -> tuple[int, Mapping[str, str]]:
    """One producer POST sent by hand, to ask the server what state it holds."""
    headers = {
        "Content-Type": content_type,
        "Producer-Id": producer_id,
        "Producer-Epoch": str(epoch),
        "Producer-Seq": str(seq),
    }
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=body, headers=headers) as response,
    ):
        await response.read()
        return response.status, dict(response.headers)


async def _read_live_to_eof(stream: ds.Stream) -> list[Any]:
    """Every message of a closed stream, read live: ends only because the reader saw EOF."""
    async with asyncio.timeout(10), stream.read(live=True) as reader:
        return [message async for message in reader]


class PostTracer:
    """Records every POST the client sends and sees answered, through aiohttp's tracing."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, int]] = []  # (kind, epoch, seq, status)
        self.in_flight = 0
        self.max_in_flight = 0
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_end.append(self._end)
        self.config.on_request_exception.append(self._error)

    @staticmethod
    def _ids(headers: Mapping[str, str]) -> tuple[int, int]:
        return int(headers.get("Producer-Epoch", -1)), int(headers.get("Producer-Seq", -1))

    async def _start(
        self, _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.method == "POST":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.events.append(("start", *self._ids(params.headers), 0))

    async def _end(
        self, _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.method == "POST":
            self.in_flight -= 1
            self.events.append(("end", *self._ids(params.headers), params.response.status))

    async def _error(
        self, _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if params.method == "POST":
            self.in_flight -= 1
            self.events.append(("error", *self._ids(params.headers), 0))


@pytest.fixture
async def traced(
    server: ReferenceServer, fast_retry: ds.RetryPolicy
) -> AsyncIterator[tuple[ds.Session, PostTracer]]:
    tracer = PostTracer()
    async with (
        aiohttp.ClientSession(trace_configs=[tracer.config]) as client,
        ds.Session(server.url, client_session=client, retry=fast_retry) as session,
    ):
        yield session, tracer


# -- sequencing and batching ------------------------------------------------------------


async def test_sequence_numbers_count_batches_not_messages(json_stream: ds.Stream) -> None:
    # A long linger: batches close at 10 items, and the last one when flushed.
    async with json_stream.producer("batches", max_batch_items=10, linger=30.0) as producer:
        receipts = [await producer.append(i) for i in range(100)]
        await producer.flush()
        stats = producer.statistics()
    assert stats.batches_sent == 10
    assert stats.next_seq == 10
    assert stats.messages_sent == 100
    assert (stats.messages_buffered, stats.bytes_buffered, stats.batches_in_flight) == (0, 0, 0)
    assert stats.duplicates == 0
    assert stats.last_offset is not None
    acks = [await receipt for receipt in receipts]
    assert [ack.seq for ack in acks] == [i // 10 for i in range(100)]
    assert {(ack.epoch, ack.duplicate) for ack in acks} == {(0, False)}
    assert acks[-1].offset == stats.last_offset
    assert await json_stream.read_all() == list(range(100))

    # The server counted the same way: seq 9 is its last, seq 10 is the next one.
    status, _ = await _raw_produce(
        json_stream.url, producer_id="batches", epoch=0, seq=9, body=b"[0]"
    )
    assert status == 204
    status, _ = await _raw_produce(
        json_stream.url, producer_id="batches", epoch=0, seq=10, body=b"[100]"
    )
    assert status == 200
    assert await json_stream.read_all() == list(range(101))


async def test_byte_stream_batches_join_bytes(byte_stream: ds.Stream) -> None:
    async with byte_stream.producer("bytes", linger=30.0) as producer:
        for chunk in (b"ab", bytearray(b"cd"), "ef", memoryview(b"\x00\xff")):
            await producer.append(chunk)
        await producer.flush()
        stats = producer.statistics()
    assert stats.batches_sent == 1
    assert stats.messages_sent == 4
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == b"abcdef\x00\xff"


async def test_json_batches_are_arrays_and_a_list_stays_one_message(
    json_stream: ds.Stream,
) -> None:
    values: list[Any] = [[1, 2], {"a": [3]}, "s", None, 0, [], {"nested": [[4]]}]
    async with json_stream.producer("json", linger=30.0) as producer:
        for value in values:
            await producer.append(value)
        await producer.append(b'{"raw": 1}')  # bytes: one already-encoded JSON value
        await producer.append(b"[7, 8]")
        await producer.flush()
        assert producer.statistics().batches_sent == 1
    assert await json_stream.read_all() == [*values, {"raw": 1}, [7, 8]]


async def test_json_batch_body_never_exceeds_max_batch_bytes(json_stream: ds.Stream) -> None:
    """``max_batch_bytes`` is "the largest request body": two 100-byte JSON messages make
    a 203-byte body (``[``, ``,``, ``]``), so with a limit of 202 each goes alone."""
    message = "x" * 98  # 100 bytes encoded
    async with json_stream.producer("bounded", max_batch_bytes=202, linger=30.0) as producer:
        for _ in range(6):
            await producer.append(message)
        await producer.flush()
        stats = producer.statistics()
    assert stats.batches_sent == 6, stats
    assert await json_stream.read_all() == [message] * 6


async def test_batches_fill_up_to_max_batch_bytes(json_stream: ds.Stream) -> None:
    message = "x" * 98  # 100 bytes encoded; two make a 203-byte body
    async with json_stream.producer("filled", max_batch_bytes=203, linger=30.0) as producer:
        for _ in range(6):
            await producer.append(message)
        await producer.flush()
        stats = producer.statistics()
    assert stats.batches_sent == 3
    assert stats.bytes_sent == 3 * 203
    assert await json_stream.read_all() == [message] * 6


async def test_a_message_larger_than_max_batch_bytes_is_sent_alone(
    json_stream: ds.Stream,
) -> None:
    async with json_stream.producer("big", max_batch_bytes=50, linger=30.0) as producer:
        for i in range(3):
            await producer.append({"i": i, "pad": "y" * 100})
        await producer.flush()
        assert producer.statistics().batches_sent == 3
    assert [item["i"] for item in await json_stream.read_all()] == [0, 1, 2]


async def test_linger_sends_a_partial_batch_without_flush(json_stream: ds.Stream) -> None:
    async with json_stream.producer("lingers", linger=0.05) as producer:
        receipt = await producer.append("alone")
        async with asyncio.timeout(5):
            ack = await receipt  # no flush: the linger timer sends it
        assert (ack.seq, ack.duplicate) == (0, False)
    async with json_stream.producer("waits", linger=30.0) as producer:
        receipt = await producer.append("held")
        waiter = asyncio.ensure_future(receipt)
        _, pending = await asyncio.wait({waiter}, timeout=0.2)
        assert waiter in pending  # a 30 s linger holds a lone message
        await producer.flush()
        assert (await waiter).seq == 0
    assert await json_stream.read_all() == ["alone", "held"]


async def test_in_flight_batches_are_bounded(
    server: ReferenceServer,
    traced: tuple[ds.Session, PostTracer],
    path: str,
) -> None:
    session, tracer = traced
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    server.inject_error(path, method="POST", delay_ms=150, count=100)  # every POST is slow
    async with stream.producer("bounded", max_batch_items=1, max_in_flight=2) as producer:
        for i in range(6):
            await producer.append(i)
        await producer.flush()
        assert producer.statistics().batches_sent == 6
    assert tracer.max_in_flight == 2
    assert await stream.read_all() == list(range(6))


async def test_flush_returns_while_another_task_keeps_appending(json_stream: ds.Stream) -> None:
    """flush() waits for what was buffered when it was called, not for the producer to
    fall idle, which a busy producer never does."""
    stop = asyncio.Event()
    appended = 0

    async def keep_appending(producer: ds.IdempotentProducer) -> None:
        nonlocal appended
        while not stop.is_set():
            await producer.append(appended)
            appended += 1
            await asyncio.sleep(0)  # a busy but cooperative producer

    async with json_stream.producer("busy", linger=0.002) as producer:
        before = [await producer.append(f"before {i}") for i in range(10)]
        background = asyncio.create_task(keep_appending(producer))
        try:
            async with asyncio.timeout(5):
                await producer.flush()
            assert all(receipt.done() for receipt in before)
        finally:
            stop.set()
            await background
    items = await json_stream.read_all()
    assert items == [f"before {i}" for i in range(10)] + list(range(appended))


async def test_two_producers_on_one_stream_keep_their_own_order(json_stream: ds.Stream) -> None:
    count = 500

    async def produce(producer: ds.IdempotentProducer, name: str) -> None:
        for i in range(count):
            await producer.append({"p": name, "i": i})
            if i % 17 == 0:
                await asyncio.sleep(0)  # let the other producer in

    async with (
        json_stream.producer("producer-a", max_batch_items=7, linger=0) as a,
        json_stream.producer("producer-b", max_batch_bytes=300, linger=0) as b,
    ):
        await asyncio.gather(produce(a, "a"), produce(b, "b"))
        await asyncio.gather(a.flush(), b.flush())
    items = await json_stream.read_all()
    assert len(items) == 2 * count
    assert [item["i"] for item in items if item["p"] == "a"] == list(range(count))
    assert [item["i"] for item in items if item["p"] == "b"] == list(range(count))


# -- fencing and auto-claim -------------------------------------------------------------


async def test_zombie_is_fenced_by_a_newer_epoch(json_stream: ds.Stream) -> None:
    zombie = json_stream.producer("fenced", epoch=0, linger=0)
    await zombie.start()
    try:
        await (await zombie.append("a1"))
        async with json_stream.producer("fenced", epoch=1) as successor:
            ack = await (await successor.append("b1"))
        assert (ack.epoch, ack.seq) == (1, 0)

        receipt = await zombie.append("a2 from the zombie")
        with pytest.raises(ds.StaleEpochError) as fenced:
            await zombie.flush()
        assert fenced.value.current_epoch == 1
        assert fenced.value.status == 403
        assert not isinstance(fenced.value, ds.ForbiddenError)
        with pytest.raises(ds.StaleEpochError):
            await receipt
        with pytest.raises(ds.StaleEpochError):
            await zombie.append("a3")
        with pytest.raises(ds.StaleEpochError):
            zombie.append_nowait("a3")
        with pytest.raises(ds.StaleEpochError):
            await zombie.flush()
    finally:
        with pytest.raises(ds.StaleEpochError):
            await zombie.aclose()
    assert await json_stream.read_all() == ["a1", "b1"]


async def test_restart_after_being_fenced_never_drops_messages_as_duplicates(
    json_stream: ds.Stream,
) -> None:
    """A fenced producer that restarts must not reuse the fencing producer's epoch: (1, 0)
    is already stored there, so the server would answer 204 and drop the new message."""
    async with json_stream.producer("refenced", epoch=0) as zombie:
        await zombie.append("a1")
        await zombie.flush()
        async with json_stream.producer("refenced", epoch=1) as successor:
            await successor.append("b1")
        await zombie.append("a2")
        with pytest.raises(ds.StaleEpochError) as fenced:
            await zombie.flush()
        assert fenced.value.current_epoch == 1

        await zombie.restart()
        receipt = await zombie.append("a3 after restart")
        await zombie.flush()
        ack = await receipt
        assert not ack.duplicate, f"the new message was taken for a duplicate: {ack}"
        assert zombie.epoch > 1, f"restarted into the fencing epoch: {ack}"
    assert await json_stream.read_all() == ["a1", "b1", "a3 after restart"]


async def test_without_auto_claim_a_lower_epoch_is_fenced(json_stream: ds.Stream) -> None:
    async with json_stream.producer("no-claim", epoch=3) as first:
        await first.append("e3")
    producer = json_stream.producer("no-claim")  # auto_claim is off by default
    assert producer.auto_claim is False
    await producer.start()
    receipt = await producer.append("refused")
    with pytest.raises(ds.StaleEpochError) as fenced:
        await producer.flush()
    assert fenced.value.current_epoch == 3
    assert producer.epoch == 0
    with pytest.raises(ds.StaleEpochError):
        await receipt
    with pytest.raises(ds.StaleEpochError):
        await producer.aclose()
    assert await json_stream.read_all() == ["e3"]


async def test_auto_claim_takes_over_above_the_stored_epoch(json_stream: ds.Stream) -> None:
    async with json_stream.producer("claim", epoch=3) as old:
        await old.append("e3")
    async with json_stream.producer("claim", auto_claim=True, linger=0) as producer:
        assert producer.epoch == 0
        receipts = [await producer.append(i) for i in range(10)]
        await producer.flush()
        assert producer.epoch == 4
        stats = producer.statistics()
    assert stats.epoch == 4
    acks = [await receipt for receipt in receipts]
    assert acks[0].epoch == 4
    assert acks[0].seq == 0
    assert {ack.epoch for ack in acks} == {4}
    assert await json_stream.read_all() == ["e3", *range(10)]

    # The old epoch is now fenced by the claim.
    stale = json_stream.producer("claim", epoch=3)
    await stale.start()
    await stale.append("zombie")
    with pytest.raises(ds.StaleEpochError) as fenced:
        await stale.flush()
    assert fenced.value.current_epoch == 4
    with pytest.raises(ds.StaleEpochError):
        await stale.aclose()


async def test_auto_claim_with_pipelining_is_exact(json_stream: ds.Stream) -> None:
    async with json_stream.producer("claim-pipe", epoch=7) as old:
        await old.append("e7")
    total = 2_000
    async with json_stream.producer(
        "claim-pipe", auto_claim=True, max_batch_bytes=64, max_in_flight=5, linger=0
    ) as producer:
        receipts = [await producer.append({"i": i}) for i in range(total)]
        await producer.flush()
        stats = producer.statistics()
    assert stats.epoch == 8
    assert stats.batches_sent == stats.next_seq > 100  # many batches, pipelined
    assert stats.messages_sent == total
    acks = [await receipt for receipt in receipts]
    assert {ack.epoch for ack in acks} == {8}
    seqs = [ack.seq for ack in acks]
    assert seqs == sorted(seqs)
    assert sorted(set(seqs)) == list(range(stats.next_seq))
    assert await json_stream.read_all() == ["e7", *({"i": i} for i in range(total))]


async def test_auto_claim_sends_one_batch_until_the_claim_lands(
    server: ReferenceServer, traced: tuple[ds.Session, PostTracer], path: str
) -> None:
    session, tracer = traced
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    async with stream.producer("gated", epoch=3) as old:
        await old.append("e3")
    tracer.events.clear()
    server.inject_error(path, method="POST", delay_ms=30, count=100)  # keep batches overlapping
    async with stream.producer(
        "gated", auto_claim=True, max_batch_items=1, max_in_flight=5
    ) as producer:
        for i in range(12):
            await producer.append(i)
        await producer.flush()
    events = tracer.events
    # The first batch is refused (403), resent as (4, 0), and nothing else starts until
    # that claim has been accepted.
    assert events[:4] == [
        ("start", 0, 0, 0),
        ("end", 0, 0, 403),
        ("start", 4, 0, 0),
        ("end", 4, 0, 200),
    ]
    assert all(epoch == 4 for _, epoch, _, _ in events[2:])
    assert tracer.max_in_flight > 1  # and then it pipelines
    assert await stream.read_all() == ["e3", *range(12)]


async def test_auto_claim_applies_to_a_close_sent_first(json_stream: ds.Stream) -> None:
    async with json_stream.producer("claim-close", epoch=3) as old:
        await old.append("e3")
    async with json_stream.producer("claim-close", auto_claim=True) as producer:
        offset = await producer.close_stream(final="bye")
        assert producer.epoch == 4
    info = await json_stream.head()
    assert (info.closed, info.offset) == (True, offset)
    assert await _read_live_to_eof(json_stream) == ["e3", "bye"]


async def test_a_producer_on_a_fork_starts_afresh(
    session: ds.Session, json_stream: ds.Stream
) -> None:
    async with json_stream.producer("forked", max_batch_items=1) as producer:
        for i in range(3):
            await producer.append(i)
    fork = session.stream(json_stream.url + "-fork")
    await fork.fork(json_stream, content_type="application/json")
    async with fork.producer("forked") as producer:
        ack = await (await producer.append("on the fork"))
    assert (ack.epoch, ack.seq, ack.duplicate) == (0, 0, False)
    assert await fork.read_all() == [0, 1, 2, "on the fork"]
    assert await json_stream.read_all() == [0, 1, 2]


async def test_producer_on_a_missing_stream_raises_not_found(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)  # never created; the type is unknown
    with pytest.raises(ds.StreamNotFoundError):
        async with stream.producer("nowhere"):
            pass
    typed = session.stream(path, content_type="application/json")  # no HEAD needed
    producer = typed.producer("nowhere")
    await producer.start()
    receipt = await producer.append("x")
    with pytest.raises(ds.StreamNotFoundError):
        await producer.flush()
    with pytest.raises(ds.StreamNotFoundError):
        await receipt
    with pytest.raises(ds.StreamNotFoundError):
        await producer.aclose()


async def test_auto_claim_on_a_fresh_stream_keeps_epoch_zero(json_stream: ds.Stream) -> None:
    async with json_stream.producer("claim-fresh", auto_claim=True) as producer:
        ack = await (await producer.append("x"))
    assert (ack.epoch, ack.seq) == (0, 0)
    assert producer.epoch == 0


async def test_restart_raises_the_epoch_and_starts_at_seq_zero(json_stream: ds.Stream) -> None:
    async with json_stream.producer("restarts", max_batch_items=1) as producer:
        for i in range(3):
            await producer.append(i)
        await producer.flush()
        assert producer.statistics().next_seq == 3
        await producer.restart()
        assert producer.epoch == 1
        assert producer.statistics().next_seq == 0
        ack = await (await producer.append(3))
        assert (ack.epoch, ack.seq, ack.duplicate) == (1, 0, False)
        await producer.restart(epoch=5)
        ack = await (await producer.append(4))
        assert (ack.epoch, ack.seq) == (5, 0)
    assert await json_stream.read_all() == [0, 1, 2, 3, 4]


# -- closing ----------------------------------------------------------------------------


@pytest.mark.parametrize("observed_by", ["flush", "receipt", "exit"])
async def test_append_to_a_closed_stream_raises(json_stream: ds.Stream, observed_by: str) -> None:
    await json_stream.append("before")
    await json_stream.close()
    producer = json_stream.producer("late", linger=0)
    await producer.start()
    receipt = await producer.append("after the close")
    if observed_by == "flush":
        with pytest.raises(ds.StreamClosedError):
            await producer.flush()
    elif observed_by == "receipt":
        with pytest.raises(ds.StreamClosedError):
            await receipt
    with pytest.raises(ds.StreamClosedError):
        await producer.aclose()  # what leaving `async with` does
    with pytest.raises(ds.StreamClosedError):
        await receipt
    assert await json_stream.read_all() == ["before"]


async def test_exit_of_async_with_raises_stream_closed(json_stream: ds.Stream) -> None:
    await json_stream.close()
    with pytest.raises(ds.StreamClosedError):
        async with json_stream.producer("late-exit") as producer:
            await producer.append("refused")


async def test_close_stream_with_final_message(json_stream: ds.Stream) -> None:
    async with json_stream.producer("closer", linger=30.0) as producer:
        for i in range(5):
            await producer.append(i)
        offset = await producer.close_stream(final={"done": True})
        assert await producer.close_stream(final={"done": "again"}) == offset
        assert await producer.close_stream() == offset
        with pytest.raises(ds.ResourceClosedError):
            await producer.append(6)
        with pytest.raises(ds.ResourceClosedError):
            producer.append_nowait(6)
        stats = producer.statistics()
    info = await json_stream.head()
    assert info.closed is True
    assert info.offset == offset
    assert stats.last_offset == offset
    assert await _read_live_to_eof(json_stream) == [0, 1, 2, 3, 4, {"done": True}]
    # The close came from the producer's sequence: its batches were 0 (the messages)
    # and 1 (final message + close); replaying seq 1 is the close's duplicate.
    status, headers = await _raw_produce(
        json_stream.url, producer_id="closer", epoch=0, seq=1, body=b'[{"done": true}]'
    )
    assert status == 204
    assert headers.get("Stream-Closed") == "true"


async def test_close_stream_with_a_list_as_final_message(json_stream: ds.Stream) -> None:
    async with json_stream.producer("closer-list") as producer:
        await producer.append("first")
        await producer.close_stream(final=[1, 2])
    assert await _read_live_to_eof(json_stream) == ["first", [1, 2]]


async def test_close_stream_without_final_message(json_stream: ds.Stream) -> None:
    async with json_stream.producer("closer-bare") as producer:
        await producer.append("only")
        offset = await producer.close_stream()
        assert await producer.close_stream() == offset
    info = await json_stream.head()
    assert (info.closed, info.offset) == (True, offset)
    assert await _read_live_to_eof(json_stream) == ["only"]
    with pytest.raises(ds.StreamClosedError):
        await json_stream.append("too late")


async def test_close_stream_on_a_byte_stream(byte_stream: ds.Stream) -> None:
    async with byte_stream.producer("closer-bytes") as producer:
        await producer.append(b"body-")
        offset = await producer.close_stream(final=b"end")
    info = await byte_stream.head()
    assert (info.closed, info.offset) == (True, offset)
    async with asyncio.timeout(10), byte_stream.read(live=True) as reader:
        assert await reader.body() == b"body-end"


async def test_close_stream_on_a_stream_closed_by_someone_else(json_stream: ds.Stream) -> None:
    await json_stream.close()
    producer = json_stream.producer("closer-late")
    await producer.start()
    with pytest.raises(ds.StreamClosedError):
        await producer.close_stream(final="late")
    with pytest.raises(ds.StreamClosedError):
        await producer.aclose()


async def test_concurrent_close_stream_calls_return_the_same_offset(
    json_stream: ds.Stream,
) -> None:
    async with json_stream.producer("closer-twice") as producer:
        await producer.append("x")
        first, second = await asyncio.gather(
            producer.close_stream(final="end"), producer.close_stream(final="end")
        )
    assert first == second == (await json_stream.head()).offset
    assert await _read_live_to_eof(json_stream) == ["x", "end"]


async def test_close_stream_with_an_invalid_final_message_leaves_the_stream_open(
    json_stream: ds.Stream,
) -> None:
    async with json_stream.producer("closer-bad") as producer:
        await producer.append("kept")
        with pytest.raises(ds.InvalidArgumentError):
            await producer.close_stream(final=math.nan)
        assert (await json_stream.head()).closed is False
        await producer.append("still open")
        offset = await producer.close_stream(final="end")
    assert (await json_stream.head()).offset == offset
    assert await _read_live_to_eof(json_stream) == ["kept", "still open", "end"]


async def test_aclose_detaches_without_closing_the_stream(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("detach")
    async with producer:
        await producer.append("from the producer")
    await producer.aclose()  # idempotent
    with pytest.raises(ds.ResourceClosedError):
        await producer.append("after aclose")
    info = await json_stream.head()
    assert info.closed is False
    await json_stream.append("plain append")
    assert await json_stream.read_all() == ["from the producer", "plain append"]


async def test_an_unstarted_producer_closes_quietly(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("never-used")
    await producer.flush()
    await producer.aclose()
    assert (await json_stream.head()).closed is False


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("producer_id", "options"),
    [
        ("", {}),
        ("ok", {"epoch": -1}),
        ("ok", {"epoch": MAX_SAFE_INTEGER + 1}),
        ("ok", {"epoch": 1.5}),
        ("ok", {"max_batch_bytes": 0}),
        ("ok", {"max_batch_bytes": -1}),
        ("ok", {"max_batch_items": 0}),
        ("ok", {"max_batch_items": -5}),
        ("ok", {"max_in_flight": 0}),
        ("ok", {"max_in_flight": -1}),
        ("ok", {"max_buffer_bytes": 0}),
        ("ok", {"max_buffer_bytes": -1}),
        ("ok", {"linger": -0.001}),
        ("ok", {"linger": math.nan}),
    ],
)
def test_bad_options_are_rejected_at_construction(
    session: ds.Session, producer_id: str, options: dict[str, Any]
) -> None:
    stream = session.stream("/t/never-created", content_type="application/json")
    with pytest.raises(ds.InvalidArgumentError):
        stream.producer(producer_id, **options)


async def test_largest_epoch_is_accepted(json_stream: ds.Stream) -> None:
    async with json_stream.producer("max-epoch", epoch=MAX_SAFE_INTEGER) as producer:
        ack = await (await producer.append("x"))
    assert ack.epoch == MAX_SAFE_INTEGER
    assert await json_stream.read_all() == ["x"]


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, object(), {"k": {1, 2}}, [1, math.nan], b""],
    ids=["nan", "inf", "-inf", "object", "set", "nan-in-list", "empty-bytes"],
)
async def test_bad_json_value_is_refused_and_buffered_messages_still_land(
    json_stream: ds.Stream, bad: object
) -> None:
    # A long linger keeps "good 1" in the open batch while the bad value arrives.
    async with json_stream.producer("strict", linger=30.0) as producer:
        first = await producer.append("good 1")
        with pytest.raises(ds.InvalidArgumentError):
            await producer.append(bad)
        with pytest.raises(ds.InvalidArgumentError):
            producer.append_nowait(bad)
        assert producer.statistics().messages_buffered == 1
        await producer.append("good 2")
        await producer.flush()
    assert (await first).duplicate is False
    assert await json_stream.read_all() == ["good 1", "good 2"]


async def test_invalid_json_bytes_do_not_poison_the_batch(json_stream: ds.Stream) -> None:
    """Bytes are one encoded JSON value; bytes that are not JSON are bad input, caught
    before anything is sent, so the messages batched with them still land."""
    async with json_stream.producer("strict-bytes", linger=30.0) as producer:
        await producer.append("good 1")
        with pytest.raises(ds.InvalidArgumentError):
            await producer.append(b"{not json")
        await producer.append("good 2")
        await producer.flush()
    assert await json_stream.read_all() == ["good 1", "good 2"]


@pytest.mark.parametrize("bad", [123, None, {"a": 1}, "", b""], ids=repr)
async def test_bad_byte_stream_value_is_refused(byte_stream: ds.Stream, bad: object) -> None:
    async with byte_stream.producer("strict-bytes", linger=30.0) as producer:
        await producer.append(b"good")
        with pytest.raises(ds.InvalidArgumentError):
            await producer.append(bad)
        await producer.flush()
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == b"good"


async def test_message_larger_than_the_buffer_is_refused(json_stream: ds.Stream) -> None:
    async with json_stream.producer("too-big", max_buffer_bytes=100) as producer:
        with pytest.raises(ds.InvalidArgumentError):
            await producer.append("x" * 200)
        with pytest.raises(ds.InvalidArgumentError):
            producer.append_nowait("x" * 200)
        await producer.append("fits")
    assert await json_stream.read_all() == ["fits"]


async def test_append_nowait_needs_a_started_producer(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("not-started")
    with pytest.raises(ds.UsageError):
        producer.append_nowait("x")
    await producer.aclose()


# -- session headers --------------------------------------------------------------------


async def test_session_headers_are_sent_on_every_producer_request(
    server: ReferenceServer, fast_retry: ds.RetryPolicy, path: str
) -> None:
    token_calls = 0

    async def token() -> str:
        nonlocal token_calls
        token_calls += 1
        await asyncio.sleep(0)
        return f"Bearer {token_calls}"

    sent: list[tuple[str, CIMultiDict[str]]] = []

    async def on_request_start(
        client: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        sent.append((params.method, CIMultiDict(params.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    headers: dict[str, ds.DynamicValue] = {
        "Authorization": token,
        "X-Static": "static",
        "X-Sync": lambda: "sync",
        # Protocol headers win over a session header of the same name.
        "Producer-Epoch": "99",
    }
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as client,
        ds.Session(server.url, headers=headers, client_session=client, retry=fast_retry) as session,
    ):
        await session.stream(path).create(content_type="application/json")
        server.inject_error(path, status=503, method="POST")  # one retry, also counted
        sent.clear()
        token_calls = 0
        stream = session.stream(path)  # a new handle: the producer HEADs for the type
        async with stream.producer("with-headers", max_batch_items=1, max_in_flight=1) as p:
            for i in range(5):
                await p.append(i)
            await p.flush()
            stats = p.statistics()

    assert stats.batches_sent == 5
    assert stats.retries == 1
    assert [method for method, _ in sent] == ["HEAD"] + ["POST"] * 6
    assert token_calls == len(sent)
    assert len({h["Authorization"] for _, h in sent}) == len(sent)  # evaluated per request
    for method, h in sent:
        assert h.getall("X-Static") == ["static"]
        assert h.getall("X-Sync") == ["sync"]
        if method == "POST":
            assert h.getall("Producer-Epoch") == ["0"]
            assert h.getall("Producer-Id") == ["with-headers"]
    assert [int(h["Producer-Seq"]) for m, h in sent if m == "POST"][-5:] == list(range(5))
    assert await session_free_read(server, path) == list(range(5))
    # The server holds epoch 0 for this producer, not 99: (0, 5) is simply the next batch.
    status, _ = await _raw_produce(
        server.url + path, producer_id="with-headers", epoch=0, seq=5, body=b"[5]"
    )
    assert status == 200


async def session_free_read(server: ReferenceServer, path: str) -> list[Any]:
    return await ds.read_all(server.url + path)
