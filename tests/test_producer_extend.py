"""IdempotentProducer.extend against the real reference server: the same messages, order
and refusals as one append per message, in groups."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import durable_streams as ds

JSON = "application/json"
BYTES = "application/octet-stream"


async def _messages(stream: ds.Stream) -> list[Any]:
    async with asyncio.timeout(10), stream.read(live=False) as reader:
        return await reader.read_all()


def _values(n: int) -> list[dict[str, Any]]:
    # Integers within 2**53: the reference server (JavaScript) keeps no larger ones exactly.
    return [{"i": i, "pad": "x" * (i % 7), "big": 2**53 - 1 - i, "f": i / 8} for i in range(n)]


async def test_values_arrive_once_and_in_order_across_batches(json_stream: ds.Stream) -> None:
    values = _values(1000)
    # Small batches: groups of 128 messages fill and seal many of them.
    async with json_stream.producer("extend", max_batch_bytes=4096) as producer:
        receipt = await producer.extend(values)
        assert receipt is not None
        ack = await receipt
        stats = producer.statistics()
    assert await _messages(json_stream) == values
    assert ack.seq == stats.next_seq - 1  # the last batch's receipt
    assert stats.messages_sent == 1000
    assert stats.batches_sent > 10


async def test_extend_and_append_mix_in_order(json_stream: ds.Stream) -> None:
    async with json_stream.producer("mix") as producer:
        await producer.append("first")
        await producer.extend([1, b'{"pre":"encoded"}', bytearray(b"[2,3]"), None])
        await producer.append("last")
    assert await _messages(json_stream) == ["first", 1, {"pre": "encoded"}, [2, 3], None, "last"]


async def test_a_generator_is_consumed_as_it_goes(json_stream: ds.Stream) -> None:
    def generate() -> Iterator[int]:
        yield from range(300)

    async with json_stream.producer("gen") as producer:
        await producer.extend(generate())
    assert await _messages(json_stream) == list(range(300))


async def test_nothing_to_extend_gives_no_receipt(json_stream: ds.Stream) -> None:
    async with json_stream.producer("empty") as producer:
        assert await producer.extend([]) is None
        assert await producer.extend(iter(())) is None
    assert await _messages(json_stream) == []


async def test_byte_stream_takes_bytes_and_str(byte_stream: ds.Stream) -> None:
    parts = [b"ab", "cd", bytearray(b"ef"), memoryview(b"gh")] * 100
    async with byte_stream.producer("bytes", max_batch_bytes=64) as producer:
        await producer.extend(parts)
    assert b"".join(await _messages(byte_stream)) == b"abcdefgh" * 100


async def test_a_bad_message_is_refused_with_its_index(json_stream: ds.Stream) -> None:
    values: list[object] = [*range(300), float("nan"), *range(300, 400)]
    consumed: list[object] = []

    def generate() -> Iterator[object]:
        for value in values:
            consumed.append(value)
            yield value

    async with json_stream.producer("bad") as producer:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            await producer.extend(generate())
        # The producer was not harmed: it carries on.
        await producer.append("after")
    assert caught.value.argument == "messages"
    assert "messages[300]" in str(caught.value)
    assert await _messages(json_stream) == [*range(300), "after"]
    # Not consumed past the group that held the bad message.
    assert len(consumed) <= 384


@pytest.mark.parametrize(
    ("content_type", "bad"),
    [
        (JSON, b"{not json"),
        (JSON, b"1 2"),
        (JSON, b"[NaN]"),
        (JSON, b'"\xff"'),
        (JSON, b""),
        (JSON, "\ud800"),
        (JSON, object()),
        (BYTES, 5),
        (BYTES, b""),
        (BYTES, "\udfff"),
    ],
    ids=[
        "invalid",
        "two-values",
        "nan",
        "not-utf8",
        "json-empty",
        "surrogate",
        "object",
        "int",
        "bytes-empty",
        "bytes-surrogate",
    ],
)
async def test_every_refusal_of_append_is_one_of_extend(
    session: ds.Session, path: str, content_type: str, bad: object
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=content_type)
    good = b"ok" if content_type == BYTES else 1
    async with stream.producer("refuse") as producer:
        with pytest.raises(ds.InvalidArgumentError) as appended:
            await producer.append(bad)
        with pytest.raises(ds.InvalidArgumentError) as extended:
            await producer.extend([good, bad, good])
    assert appended.value.argument == "data"
    assert extended.value.argument == "messages"
    assert "messages[1]" in str(extended.value)
    sent = await _messages(stream)
    assert sent == ([b"ok"] if content_type == BYTES else [1])


async def test_messages_larger_than_a_batch_go_one_by_one(byte_stream: ds.Stream) -> None:
    parts = [bytes([i]) * 3000 for i in range(20)]
    async with byte_stream.producer("large", max_batch_bytes=1024) as producer:
        await producer.extend(parts)
        await producer.flush()
        stats = producer.statistics()
    assert b"".join(await _messages(byte_stream)) == b"".join(parts)
    assert stats.batches_sent == 20  # each message alone, as append() would send it


async def test_a_small_buffer_makes_extend_wait_not_fail(json_stream: ds.Stream) -> None:
    values = _values(2000)
    async with json_stream.producer(
        "small-buffer", max_buffer_bytes=16 * 1024, max_batch_bytes=4096
    ) as producer:
        await producer.extend(values)
        assert producer.statistics().bytes_buffered <= 16 * 1024
    assert await _messages(json_stream) == values


async def test_max_batch_items_holds(json_stream: ds.Stream) -> None:
    async with json_stream.producer("items", max_batch_items=50) as producer:
        await producer.extend(range(1000))
        await producer.flush()
        stats = producer.statistics()
    assert await _messages(json_stream) == list(range(1000))
    assert stats.batches_sent >= 20


async def test_extend_on_a_closed_producer_is_refused(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("closed")
    async with producer:
        await producer.close_stream()
        with pytest.raises(ds.ResourceClosedError):
            await producer.extend([1])
    with pytest.raises(ds.ResourceClosedError):
        await producer.extend([1])
