"""The producer's sender on its own, against a scripted stand-in for the session.

Each test scripts the answers to the sender's POSTs (status and headers), so numbering,
the in-flight bound, retries under one budget per batch, gap waits, auto-claim, halting
after a failure and the checks on success answers are each seen in isolation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

import durable_streams as ds
from durable_streams._producer._accumulator import Accumulator
from durable_streams._producer._records import Receipt
from durable_streams._producer._sender import Sender
from durable_streams._protocol.retry import RetryBudget

JSON = "application/json"


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def ok(offset: str = "0_1") -> Answer:
    return Answer(200, {"stream-next-offset": offset})


@dataclass
class Sent:
    epoch: int
    seq: int
    body: bytes
    closed: bool


Script = Callable[[Sent], Awaitable[Answer]]


class FakeSession:
    """Records each POST and answers it with ``script`` (a single attempt each).

    It stands in for both the session and its package-internal request interface.
    """

    def __init__(self, script: Script, *, max_retries: int = 3) -> None:
        self.retry = ds.RetryPolicy(max_retries=max_retries, initial_delay=0.001, max_delay=0.002)
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script = script
        self._wire = self  # what session_wire(session) returns

    def once(self) -> RetryBudget:
        return self.retry.budget(0)

    async def fetch(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes, **_: object
    ) -> Answer:
        assert method == "POST"
        sent = Sent(
            int(headers["producer-epoch"]),
            int(headers["producer-seq"]),
            body,
            headers.get("stream-closed") == "true",
        )
        self.sent.append(sent)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._script(sent)
        finally:
            self.in_flight -= 1


@dataclass
class FakeStream:
    session: FakeSession
    url: str = "http://stub/s"


class Harness:
    def __init__(self, script: Script, *, max_retries: int = 3, **options: Any) -> None:
        self.session = FakeSession(script, max_retries=max_retries)
        # A validated config with the documented defaults; the producer makes it (no I/O).
        config = ds.IdempotentProducer(cast(ds.Stream, None), "sender-test", **options)._config
        self.accumulator = Accumulator(config)
        self.accumulator.begin(JSON)
        self.sender = Sender(cast(ds.Stream, FakeStream(self.session)), config, self.accumulator)
        self.sender.start(JSON)

    def add(self, value: object) -> Receipt:
        return self.accumulator.add(self.accumulator.encode(value))

    async def finish(self) -> None:
        self.accumulator.end()
        task = self.sender.task
        assert task is not None
        async with asyncio.timeout(5):
            await task


async def test_batches_are_numbered_in_order_and_bounded_in_flight() -> None:
    gate = asyncio.Event()

    async def slow(sent: Sent) -> Answer:
        await gate.wait()
        return ok(f"0_{sent.seq}")

    harness = Harness(slow, max_batch_items=1, max_in_flight=2, linger=0)
    receipts = [harness.add(i) for i in range(5)]
    async with asyncio.timeout(5):
        while len(harness.session.sent) < 2:  # noqa: ASYNC110 - no event for "sent"
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    assert len(harness.session.sent) == 2  # the bound holds until answers come
    gate.set()
    await harness.finish()
    assert [s.seq for s in harness.session.sent] == [0, 1, 2, 3, 4]
    assert harness.session.max_in_flight == 2
    assert [(await r).seq for r in receipts] == [0, 1, 2, 3, 4]
    assert harness.sender.counters.batches == 5
    assert harness.sender.last_offset == "0_4"


async def test_each_batch_has_its_own_retry_budget() -> None:
    failures: dict[int, int] = {0: 3, 1: 3}  # each batch fails 3 times, then lands

    async def flaky(sent: Sent) -> Answer:
        if failures[sent.seq]:
            failures[sent.seq] -= 1
            return Answer(503)
        return ok()

    harness = Harness(flaky, max_retries=3, max_batch_items=1, max_in_flight=1, linger=0)
    receipts = [harness.add(i) for i in range(2)]
    await harness.finish()
    assert [(await r).seq for r in receipts] == [0, 1]
    assert harness.sender.counters.retries == 6
    assert len(harness.session.sent) == 8  # 1 + 3 retries per batch: nothing more


async def test_a_spent_budget_fails_the_batch_and_halts_the_sender() -> None:
    async def down(sent: Sent) -> Answer:
        return Answer(503) if sent.seq == 0 else ok()

    harness = Harness(down, max_retries=2, max_batch_items=1, max_in_flight=1, linger=0)
    first, second = harness.add("a"), harness.add("b")
    await harness.finish()
    with pytest.raises(ds.ServerError):
        await first
    with pytest.raises(ds.ServerError):
        await second  # failed with the first failure, never sent
    assert [s.seq for s in harness.session.sent] == [0, 0, 0]
    assert isinstance(harness.sender.failure, ds.ServerError)
    assert harness.accumulator.buffered_messages == 0


async def test_a_gap_from_pipelining_waits_for_the_earlier_batch_then_resends() -> None:
    first_done = asyncio.Event()
    stored: list[int] = []

    async def reordered(sent: Sent) -> Answer:
        if sent.seq == 0:
            await asyncio.sleep(0.02)
            stored.append(0)
            first_done.set()
            return ok("0_1")
        if not stored:  # seq 1 arrived first: the server expects 0
            return Answer(409, {"producer-expected-seq": "0", "producer-received-seq": "1"})
        stored.append(1)
        return ok("0_2")

    harness = Harness(reordered, max_batch_items=1, max_in_flight=2, linger=0)
    receipts = [harness.add(i) for i in range(2)]
    await harness.finish()
    assert [(await r).seq for r in receipts] == [0, 1]
    assert stored == [0, 1]
    assert [s.seq for s in harness.session.sent].count(1) == 2
    assert harness.sender.counters.retries == 0  # a gap wait is not a retry


async def test_auto_claim_retakes_the_stream_one_epoch_up_at_sequence_zero() -> None:
    async def fenced(sent: Sent) -> Answer:
        if sent.epoch < 4:
            return Answer(403, {"producer-epoch": "3"})
        return ok()

    harness = Harness(fenced, auto_claim=True, max_batch_items=1, linger=0)
    receipts = [harness.add(i) for i in range(3)]
    await harness.finish()
    assert [((await r).epoch, (await r).seq) for r in receipts] == [(4, 0), (4, 1), (4, 2)]
    assert [(s.epoch, s.seq) for s in harness.session.sent] == [(0, 0), (4, 0), (4, 1), (4, 2)]
    assert harness.sender.epoch == 4


async def test_without_auto_claim_a_stale_epoch_is_remembered_for_restart() -> None:
    async def fenced(sent: Sent) -> Answer:
        return Answer(403, {"producer-epoch": "7"})

    harness = Harness(fenced, linger=0)
    receipt = harness.add("x")
    await harness.finish()
    with pytest.raises(ds.StaleEpochError):
        await receipt
    assert harness.sender.fenced_by == 7
    harness.sender.restart(8)
    assert (harness.sender.failure, harness.sender.epoch, harness.sender.next_seq) == (None, 8, 0)


@pytest.mark.parametrize(
    ("body", "status", "duplicate"),
    [(b"", 204, False), (b'["end"]', 204, True), (b'["end"]', 200, False)],
    ids=["close-only-204", "final-204", "final-200"],
)
async def test_only_a_request_with_a_body_is_a_duplicate(
    body: bytes, status: int, duplicate: bool
) -> None:
    async def closing(sent: Sent) -> Answer:
        return Answer(status, {"stream-next-offset": "0_9", "stream-closed": "true"})

    harness = Harness(closing, linger=0)
    close = harness.accumulator.add_close(body)
    await harness.finish()
    ack = close.future.result()
    assert ack.duplicate is duplicate
    assert harness.sender.counters.duplicates == int(duplicate)
    assert harness.session.sent[0].closed


async def test_a_close_waits_for_every_batch_before_it() -> None:
    order: list[str] = []

    async def answer(sent: Sent) -> Answer:
        if sent.closed:
            order.append("close")
            return Answer(204, {"stream-next-offset": "0_3", "stream-closed": "true"})
        await asyncio.sleep(0.02)
        order.append(f"batch {sent.seq}")
        return ok()

    harness = Harness(answer, max_batch_items=1, max_in_flight=5, linger=0)
    harness.add(1)
    harness.add(2)
    harness.accumulator.add_close(b"")
    await harness.finish()
    assert order == ["batch 0", "batch 1", "close"]


@pytest.mark.parametrize(
    ("closing", "answer", "missing"),
    [
        (False, Answer(200, {}), "stream-next-offset"),
        (True, Answer(204, {"stream-next-offset": "0_1"}), "stream-closed"),
    ],
    ids=["batch-200-without-offset", "close-without-stream-closed"],
)
async def test_a_success_that_is_no_answer_to_the_request_is_an_error(
    closing: bool, answer: Answer, missing: str
) -> None:
    async def wrong(sent: Sent) -> Answer:
        return answer

    harness = Harness(wrong, linger=0)
    receipt = harness.accumulator.add_close(b"").receipt if closing else harness.add("x")
    await harness.finish()
    with pytest.raises(ds.MissingHeaderError) as caught:
        await receipt
    assert caught.value.header == missing


async def test_a_duplicate_without_an_offset_is_accepted() -> None:
    async def duplicate(sent: Sent) -> Answer:
        return Answer(204, {})

    harness = Harness(duplicate, linger=0)
    receipt = harness.add("x")
    await harness.finish()
    ack = await receipt
    assert (ack.offset, ack.duplicate) == (None, True)


async def test_cancelling_the_sender_fails_what_it_holds() -> None:
    async def stalled(sent: Sent) -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    harness = Harness(stalled, max_batch_items=1, max_in_flight=1, linger=0)
    in_flight, waiting = harness.add(1), harness.add(2)
    async with asyncio.timeout(5):
        while not harness.session.sent:  # noqa: ASYNC110 - no event for "sent"
            await asyncio.sleep(0.001)
    task = harness.sender.task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for receipt in (in_flight, waiting):
        with pytest.raises(ds.ResourceClosedError):
            await receipt
    assert harness.accumulator.buffered_messages == 0
