"""A producer's batches: Producer-Id, Producer-Epoch and Producer-Seq on every batch,
sequence numbers per batch (not per message) from 0, the same numbers on a retry, and a
claim that restarts at the server's epoch + 1, sequence 0."""

from __future__ import annotations

from aioresponses import aioresponses

import durable_streams as ds
from tests.mocked.conftest import BASE, FAST, OFFSET_1, Answers, Sent, sent, url_pattern


def producer_headers(request: Sent) -> tuple[str, str, str]:
    h = request.headers
    return h["producer-id"], h["producer-epoch"], h["producer-seq"]


async def test_batches_are_numbered_from_zero_under_the_epoch(
    mock: aioresponses, answers: Answers
) -> None:
    answers.batch("/p", repeat=True)
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/p", content_type="application/json")
        async with stream.producer("order-service-1", epoch=7, max_batch_items=2) as producer:
            for n in range(5):
                await producer.append({"n": n})
    requests = sent(mock)
    # Pipelined batches may go out in any order; each number is used exactly once.
    assert sorted(producer_headers(r) for r in requests) == [
        ("order-service-1", "7", "0"),
        ("order-service-1", "7", "1"),
        ("order-service-1", "7", "2"),
    ]
    assert all(r.headers["content-type"] == "application/json" for r in requests)
    bodies = {r.headers["producer-seq"]: r.json() for r in requests}
    assert bodies == {"0": [{"n": 0}, {"n": 1}], "1": [{"n": 2}, {"n": 3}], "2": [{"n": 4}]}


async def test_a_retried_batch_keeps_its_epoch_and_seq(mock: aioresponses) -> None:
    mock.post(url_pattern("/r"), status=503, content_type="text/plain")
    mock.post(url_pattern("/r"), status=200, headers={"Stream-Next-Offset": OFFSET_1})
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/r", content_type="application/json")
        async with stream.producer("p", epoch=2) as producer:
            await producer.append("once")
    first, retry = sent(mock)
    assert producer_headers(first) == producer_headers(retry) == ("p", "2", "0")
    assert first.body == retry.body == b'["once"]'  # the server deduplicates the pair


async def test_auto_claim_takes_the_next_epoch_from_sequence_zero(mock: aioresponses) -> None:
    # The server holds epoch 4 for this producer: 403 names it.
    mock.post(
        url_pattern("/c"),
        status=403,
        content_type="text/plain",
        headers={"Producer-Epoch": "4"},
    )
    mock.post(
        url_pattern("/c"),
        status=200,
        headers={"Stream-Next-Offset": OFFSET_1},
        repeat=True,
    )
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/c", content_type="application/json")
        async with stream.producer("p", auto_claim=True, max_batch_items=1) as producer:
            await (await producer.append(1))
            await producer.append(2)
    assert [producer_headers(r) for r in sent(mock)] == [
        ("p", "0", "0"),  # refused: stale
        ("p", "5", "0"),  # the claim
        ("p", "5", "1"),
    ]


async def test_a_producer_close_is_a_batch_with_stream_closed(
    mock: aioresponses, answers: Answers
) -> None:
    answers.batch("/e")
    mock.post(
        url_pattern("/e"),
        status=204,
        content_type="text/plain",
        headers={"Stream-Next-Offset": OFFSET_1, "Stream-Closed": "true"},
    )
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/e", content_type="application/json")
        async with stream.producer("p") as producer:
            await (await producer.append(1))
            await producer.close_stream()
    data, close = sent(mock)
    assert producer_headers(close) == ("p", "0", "1")
    assert close.headers["stream-closed"] == "true"
    assert "stream-closed" not in data.headers
