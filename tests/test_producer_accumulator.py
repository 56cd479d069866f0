"""The producer's accumulator on its own: batching, linger, framing, backpressure, flush.

No server and no sender: batches are taken with ``next_batch()`` and settled by hand,
as the sender would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

import durable_streams as ds
from durable_streams._producer._accumulator import Accumulator
from durable_streams._producer._options import ProducerConfig
from durable_streams._producer._records import Batch, ProducerAck, aborted

JSON = "application/json"
BYTES = "application/octet-stream"


def _config(**options: Any) -> ProducerConfig:
    """A validated config with the documented defaults: the producer makes it (no I/O)."""
    return ds.IdempotentProducer(cast(ds.Stream, None), "acc", **options)._config


def _accumulator(content_type: str = JSON, **options: Any) -> Accumulator:
    accumulator = Accumulator(_config(**options))
    accumulator.begin(content_type)
    return accumulator


async def _take(accumulator: Accumulator) -> Batch:
    async with asyncio.timeout(5):
        batch = await accumulator.next_batch()
    assert batch is not None
    return batch


def _ack(accumulator: Accumulator, batch: Batch) -> None:
    accumulator.settle(batch)
    batch.future.set_result(ProducerAck("0_1", False, 0, 0))


async def test_a_batch_closes_at_max_batch_items() -> None:
    accumulator = _accumulator(max_batch_items=3, linger=30.0)
    receipts = [accumulator.add(accumulator.encode(i)) for i in range(7)]
    first, second = await _take(accumulator), await _take(accumulator)
    assert (first.count, second.count) == (3, 3)
    assert accumulator.frame(first) == b"[0,1,2]"
    assert accumulator.frame(second) == b"[3,4,5]"
    # One receipt per batch, shared by its messages.
    assert receipts[0] is receipts[2]
    assert receipts[2] is not receipts[3]
    assert (accumulator.buffered_messages, accumulator.buffered_bytes) == (7, 7)


async def test_a_json_batch_body_never_exceeds_max_batch_bytes() -> None:
    # Two 10-byte messages make a 23-byte body ("[" + 10 + "," + 10 + "]").
    accumulator = _accumulator(max_batch_bytes=22, linger=30.0)
    message = accumulator.encode("x" * 8)
    assert len(message) == 10
    accumulator.add(message)
    accumulator.add(message)
    batch = await _take(accumulator)
    assert batch.count == 1
    assert len(accumulator.frame(batch)) == 12


async def test_byte_batches_are_the_messages_end_to_end() -> None:
    accumulator = _accumulator(BYTES, max_batch_bytes=6, linger=30.0)
    for data in (b"ab", "cd", bytearray(b"ef"), memoryview(b"gh")):
        accumulator.add(accumulator.encode(data))
    batch = await _take(accumulator)
    assert accumulator.frame(batch) == b"abcdef"
    assert batch.parts == []  # framed once: the parts are let go


async def test_a_lone_message_waits_for_linger_then_goes() -> None:
    accumulator = _accumulator(linger=0.05)
    accumulator.add(accumulator.encode("alone"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await _take(accumulator)
    assert loop.time() - started >= 0.04
    assert batch.count == 1


async def test_a_flush_sends_without_linger() -> None:
    accumulator = _accumulator(linger=30.0)
    accumulator.add(accumulator.encode("held"))
    waiting = asyncio.create_task(accumulator.wait_settled(accumulator.pending()))
    batch = await _take(accumulator)  # not 30 s: a flush is waiting
    assert not waiting.done()
    _ack(accumulator, batch)
    async with asyncio.timeout(5):
        await waiting


async def test_end_drains_then_stops() -> None:
    accumulator = _accumulator(linger=30.0)
    accumulator.add(accumulator.encode(1))
    accumulator.end()
    assert (await _take(accumulator)).count == 1
    async with asyncio.timeout(5):
        assert await accumulator.next_batch() is None


async def test_the_close_goes_after_everything_buffered_before_it() -> None:
    accumulator = _accumulator(linger=30.0)
    accumulator.add(accumulator.encode("a"))
    close = accumulator.add_close(accumulator.close_body({"final": True}))
    assert (await _take(accumulator)).count == 1
    assert await _take(accumulator) is close
    assert close.close
    assert close.body == b'[{"final":true}]'
    assert accumulator.close_body(b"[1,2]") == b"[[1,2]]"  # bytes: one message


async def test_backpressure_counts_encoded_bytes_until_settled() -> None:
    accumulator = _accumulator(max_buffer_bytes=25, linger=0)
    message = accumulator.encode("x" * 8)  # 10 bytes
    assert accumulator.fits(10)
    accumulator.add(message)
    accumulator.add(message)
    assert not accumulator.fits(10)
    room = asyncio.create_task(accumulator.wait_for_room())
    batch = await _take(accumulator)
    await asyncio.sleep(0)
    assert not room.done()  # taken is not settled: the bytes are still held
    _ack(accumulator, batch)
    async with asyncio.timeout(5):
        await room
    assert accumulator.fits(10)
    assert (accumulator.buffered_messages, accumulator.buffered_bytes) == (0, 0)
    with pytest.raises(ds.InvalidArgumentError) as too_big:
        accumulator.fits(26)
    assert too_big.value.argument == "data"


async def test_failing_unsent_batches_fails_their_receipts_and_gives_room_back() -> None:
    accumulator = _accumulator(max_batch_items=1, linger=30.0)
    receipts = [accumulator.add(accumulator.encode(i)) for i in range(3)]
    taken = await _take(accumulator)
    accumulator.fail_unsent(aborted())
    assert [r.done() for r in receipts] == [False, True, True]
    assert accumulator.buffered_messages == 1
    with pytest.raises(ds.ResourceClosedError):
        receipts[1].result()
    accumulator.fail_all(aborted(sent=True))
    assert taken.future.done()
    assert (accumulator.buffered_messages, accumulator.buffered_bytes) == (0, 0)
    accumulator.fail(taken, aborted())  # settling twice changes nothing
    assert accumulator.buffered_messages == 0


async def test_json_batches_hold_pre_encoded_bytes_as_one_message_each() -> None:
    accumulator = _accumulator(linger=30.0)
    for data in ([1, 2], b"[3, 4]", b' {"a": 1} ', []):
        accumulator.add(accumulator.encode(data))
    accumulator.end()
    body = accumulator.frame(await _take(accumulator))
    assert json.loads(body) == [[1, 2], [3, 4], {"a": 1}, []]
