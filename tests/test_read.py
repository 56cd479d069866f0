"""Catch-up reads against the real reference server: iteration, batches, checkpoints,
sentinels, JSON flattening, byte bodies, accumulators and single consumption."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest

import durable_streams as ds

JSON = "application/json"


def _requests(session: ds.Session) -> int:
    return session.statistics().requests


async def test_catch_up_stops_when_up_to_date(session: ds.Session, json_stream: ds.Stream) -> None:
    for n in range(3):
        await json_stream.append({"n": n})
    before = _requests(session)
    got = [msg async for msg in json_stream.read(live=False)]
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
    # The reference server answers a whole catch-up in one response: no further request.
    assert _requests(session) - before == 1


async def test_reader_state_after_catch_up(json_stream: ds.Stream) -> None:
    tail = (await json_stream.append("x")).offset
    reader = json_stream.read(live=False)
    assert reader.mode == "catch-up"
    assert reader.offset == "-1"
    assert reader.live is False
    async with reader:
        assert [m async for m in reader] == ["x"]
    assert reader.offset == tail
    assert reader.up_to_date is True
    assert reader.stream_closed is False
    assert reader.mode == "done"


async def test_catch_up_of_empty_stream(json_stream: ds.Stream) -> None:
    assert await json_stream.read_all() == []
    async with json_stream.read(live=False) as reader:
        batches = [b async for b in reader.batches()]
    # The first arrival at the tail is reported even without messages.
    assert len(batches) == 1
    assert batches[0].items == []
    assert batches[0].up_to_date is True
    assert batches[0].closed is False


async def test_read_all_from_stream_and_reader(json_stream: ds.Stream) -> None:
    first = (await json_stream.append("a")).offset
    await json_stream.append("b")
    assert await json_stream.read_all() == ["a", "b"]
    assert await json_stream.read_all(first) == ["b"]
    async with json_stream.read(live=False) as reader:
        assert await reader.read_all() == ["a", "b"]


async def test_batches_carry_offset_cursor_and_flags(json_stream: ds.Stream) -> None:
    await json_stream.append({"a": 1})
    tail = (await json_stream.append({"b": 2})).offset
    async with json_stream.read(live=False) as reader:
        batches = [b async for b in reader.batches()]
    assert len(batches) == 1
    batch = batches[0]
    assert isinstance(batch, ds.Batch)
    assert batch.items == [{"a": 1}, {"b": 2}]
    assert batch.offset == tail
    assert batch.up_to_date is True
    assert batch.closed is False
    # Catch-up responses of the reference server carry no cursor.
    assert batch.cursor is None


async def test_batches_of_closed_stream_end_with_closed_batch(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    final = await json_stream.close()
    async with json_stream.read(live="long-poll") as reader:
        batches = [b async for b in reader.batches()]
    assert [item for b in batches for item in b.items] == [1]
    assert batches[-1].closed is True
    assert batches[-1].up_to_date is True
    assert batches[-1].offset == final
    assert all(not b.closed for b in batches[:-1])
    assert reader.stream_closed is True


async def test_batch_is_frozen(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    async with json_stream.read(live=False) as reader:
        batch = await anext(reader.batches())
    with pytest.raises(AttributeError):
        batch.offset = "x"  # type: ignore[misc]


async def test_resume_from_saved_batch_offset_gives_exactly_the_rest(
    json_stream: ds.Stream,
) -> None:
    for n in range(3):
        await json_stream.append(n)
    checkpoint = "-1"
    async with json_stream.read(live=False) as reader:
        async for batch in reader.batches():
            checkpoint = batch.offset
    for n in range(3, 6):
        await json_stream.append(n)
    async with json_stream.read(checkpoint, live=False) as reader:
        assert await reader.read_all() == [3, 4, 5]
    # And from any offset an append returned.
    offsets = [(await json_stream.append(n)).offset for n in range(6, 9)]
    assert await json_stream.read_all(offsets[0]) == [7, 8]
    assert await json_stream.read_all(offsets[-1]) == []


async def test_resume_from_reader_offset(byte_stream: ds.Stream) -> None:
    await byte_stream.append(b"one")
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == b"one"
        resume = reader.offset
    await byte_stream.append(b"two")
    async with byte_stream.read(resume, live=False) as reader:
        assert await reader.body() == b"two"


async def test_offset_now_skips_history(json_stream: ds.Stream) -> None:
    await json_stream.append("old")
    assert await json_stream.read_all("now") == []

    caught_up = asyncio.Event()
    got: list[Any] = []

    # A long-poll at "now" waits on the server; its first answer (here the server's 2 s
    # timeout, a 204 with the tail) fixes where the reader stands. Only then is appending
    # sure to come after that position.
    async def follow() -> None:
        async with json_stream.read("now", live="long-poll") as reader:
            async for batch in reader.batches():
                got.extend(batch.items)
                if batch.up_to_date:
                    caught_up.set()

    task = asyncio.create_task(follow())
    async with asyncio.timeout(10):
        await caught_up.wait()
        await json_stream.append("new")
        await json_stream.close()
        await task
    assert got == ["new"]


async def test_offset_now_on_closed_stream_ends_at_once(json_stream: ds.Stream) -> None:
    await json_stream.append("old")
    final = await json_stream.close()
    for live in (False, True, "long-poll", "sse"):
        async with asyncio.timeout(5), json_stream.read("now", live=live) as reader:
            assert await reader.read_all() == []
            assert reader.offset == final


async def _post(stream: ds.Stream, body: bytes) -> None:
    """Append a raw JSON body, as any other client may (the server flattens one level)."""
    headers = {"Content-Type": JSON}
    async with (
        aiohttp.ClientSession() as client,
        client.post(stream.url, data=body, headers=headers) as r,
    ):
        assert r.status in (200, 204), await r.text()


async def test_json_reads_flatten_one_level(json_stream: ds.Stream) -> None:
    await json_stream.append([1, 2])  # one message that is an array
    await _post(json_stream, b"[[3,4],[5]]")  # two messages that are arrays
    await _post(json_stream, b"[[[6]]]")  # one message [[6]]
    assert await json_stream.read_all() == [[1, 2], [3, 4], [5], [[6]]]


async def test_byte_stream_yields_bytes(byte_stream: ds.Stream) -> None:
    await byte_stream.append(b"\x00\x01")
    await byte_stream.append(b"\xff")
    items = [item async for item in byte_stream.read(live=False)]
    assert all(isinstance(item, bytes) for item in items)
    assert b"".join(items) == b"\x00\x01\xff"


async def test_body_and_text(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type="text/plain; charset=utf-8")
    await stream.append("héllo\n")
    await stream.append("wörld ✓")
    async with stream.read(live=False) as reader:
        assert await reader.text() == "héllo\nwörld ✓"
    async with stream.read(live=False) as reader:
        assert await reader.body() == "héllo\nwörld ✓".encode()


async def test_text_with_other_encoding(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type="text/plain; charset=latin-1")
    await stream.append("café".encode("latin-1"))
    async with stream.read(live=False) as reader:
        assert await reader.text("latin-1") == "café"


async def test_body_of_json_stream_is_usage_error(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    async with json_stream.read(live=False) as reader:
        with pytest.raises(ds.UsageError):
            await reader.body()


async def test_consuming_a_reader_after_its_end_is_reader_consumed_error(
    json_stream: ds.Stream,
) -> None:
    await json_stream.append(1)
    reader = json_stream.read(live=False)
    async with reader:
        assert [m async for m in reader] == [1]
        with pytest.raises(ds.ReaderConsumedError):
            [m async for m in reader]
        with pytest.raises(ds.ReaderConsumedError):
            await reader.read_all()
        with pytest.raises(ds.ReaderConsumedError):
            reader.batches()
        with pytest.raises(ds.ReaderConsumedError):
            await reader.body()
        # An iterator at its end keeps saying so.
        with pytest.raises(StopAsyncIteration):
            await anext(reader)

    other = json_stream.read(live=False)
    async with other:
        assert await other.read_all() == [1]
        with pytest.raises(ds.ReaderConsumedError):
            [m async for m in other]


async def test_closed_reader_refuses_every_use(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    reader = json_stream.read(live=False)
    await reader.aclose()
    await reader.aclose()
    assert reader.mode == "done"
    with pytest.raises(ds.ResourceClosedError):
        [m async for m in reader]
    with pytest.raises(ds.ResourceClosedError):
        await anext(reader)
    with pytest.raises(ds.ResourceClosedError):
        await reader.read_all()
    with pytest.raises(ds.ResourceClosedError):
        await reader.body()
    with pytest.raises(ds.ResourceClosedError):
        await reader.text()
    with pytest.raises(ds.ResourceClosedError):
        reader.batches()
    assert reader.position == "-1"


async def test_read_missing_stream_is_not_found(session: ds.Session, path: str) -> None:
    with pytest.raises(ds.StreamNotFoundError):
        await session.stream(path).read_all()
    reader = session.stream(path).read(live="sse")
    with pytest.raises(ds.StreamNotFoundError):
        await anext(reader)


async def test_large_byte_stream_read_completely(byte_stream: ds.Stream) -> None:
    rng = random.Random(20261128)
    # Appends stay under 1 MiB each (see test_append_larger_than_one_mib); the stream is 6 MiB.
    parts = [rng.randbytes(768 * 1024 + n) for n in range(8)]
    for part in parts:
        await byte_stream.append(part)
    expected = b"".join(parts)
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == expected
    # Iterating delivers the body piece by piece as it arrives, never all at once.
    async with byte_stream.read(live=False) as reader:
        pieces = [piece async for piece in reader]
    assert len(pieces) > 1
    assert max(len(piece) for piece in pieces) < len(expected)
    assert b"".join(pieces) == expected
    # Long-poll mode on the closed stream, through the same path, ends at EOF.
    await byte_stream.close()
    async with byte_stream.read(live="long-poll") as reader:
        assert await reader.body() == expected
        assert reader.stream_closed is True


async def test_large_json_stream_read_completely(json_stream: ds.Stream) -> None:
    batch = [{"n": n, "pad": "x" * 100} for n in range(2000)]
    encoded = "[" + ",".join(f'{{"n":{n},"pad":"{"x" * 100}"}}' for n in range(2000)) + "]"
    for _ in range(5):
        await _post(json_stream, encoded.encode())
    assert await json_stream.read_all() == batch * 5
