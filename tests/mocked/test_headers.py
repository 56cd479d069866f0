"""Session headers go with every request: plain calls, producer batches, long-polls, SSE.

Static values are sent as they are; sync and async callables are called once per
request, retries and reconnects included, so a refreshed token is picked up at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import pytest
from aioresponses import aioresponses

import durable_streams as ds
from tests.mocked.conftest import BASE, FAST, OFFSET_2, OFFSET_3, Answers, Sent, sent


def token_headers() -> tuple[dict[str, ds.DynamicValue], Callable[[], int]]:
    """Headers of all three kinds; the sync and async ones count their calls."""
    sync_calls = itertools.count(1)
    async_calls = itertools.count(1)

    def sync_token() -> str:
        return f"sync-{next(sync_calls)}"

    async def async_token() -> str:
        return f"Bearer async-{next(async_calls)}"

    headers: dict[str, ds.DynamicValue] = {
        "X-Static": "static",
        "X-Sync": sync_token,
        "Authorization": async_token,
    }
    return headers, lambda: next(sync_calls) - 1


def assert_fresh_tokens(requests: list[Sent]) -> None:
    """Every request carries the three headers, with a new callable value each time."""
    assert requests
    assert all(r.headers["x-static"] == "static" for r in requests)
    syncs = [r.headers["x-sync"] for r in requests]
    asyncs = [r.headers["authorization"] for r in requests]
    assert len(set(syncs)) == len(requests), syncs
    assert len(set(asyncs)) == len(requests), asyncs
    assert all(a.startswith("Bearer async-") for a in asyncs)


async def test_every_stream_operation_sends_the_session_headers(
    mock: aioresponses, answers: Answers
) -> None:
    headers, _ = token_headers()
    answers.create("/h")
    answers.head("/h")
    answers.append("/h")
    answers.read("/h", [{"n": 1}])
    answers.close("/h")
    answers.delete("/h")
    async with ds.Session(BASE, headers=headers, retry=FAST) as session:
        stream = session.stream("/h")
        await stream.create(content_type="application/json")
        await stream.head()
        await stream.append({"n": 1})
        assert await stream.read_all() == [{"n": 1}]
        await stream.close()
        await stream.delete()
    requests = sent(mock)
    assert sorted(r.method for r in requests) == ["DELETE", "GET", "HEAD", "POST", "POST", "PUT"]
    assert_fresh_tokens(requests)


async def test_a_retried_request_calls_the_header_functions_again(
    mock: aioresponses, answers: Answers
) -> None:
    headers, sync_calls = token_headers()
    mock.head(f"{BASE}/r", status=503, content_type="text/plain")
    answers.head("/r")
    async with ds.Session(BASE, headers=headers, retry=FAST) as session:
        await session.stream("/r").head()
    requests = sent(mock)
    assert len(requests) == 2
    assert_fresh_tokens(requests)
    assert sync_calls() == 2


async def test_producer_batches_send_the_session_headers(
    mock: aioresponses, answers: Answers
) -> None:
    headers, _ = token_headers()
    answers.batch("/p", repeat=True)
    async with ds.Session(BASE, headers=headers, retry=FAST) as session:
        stream = session.stream("/p", content_type="application/json")
        async with stream.producer("writer-1", max_batch_items=1) as producer:
            for n in range(3):
                await producer.append({"n": n})
    requests = sent(mock)
    assert [r.method for r in requests] == ["POST"] * 3
    assert_fresh_tokens(requests)


async def test_every_long_poll_sends_the_session_headers(
    mock: aioresponses, answers: Answers
) -> None:
    headers, _ = token_headers()
    answers.read("/lp", [1])  # catch-up
    answers.read("/lp", [2], offset=OFFSET_2, cursor="c1")  # first long-poll
    answers.read("/lp", [3], offset=OFFSET_3, cursor="c2", closed=True)  # then EOF
    async with ds.Session(BASE, headers=headers, retry=FAST) as session:
        stream = session.stream("/lp", content_type="application/json")
        assert [m async for m in stream.read(live="long-poll")] == [1, 2, 3]
    requests = sent(mock)
    assert [r.query.get("live") for r in requests] == [None, "long-poll", "long-poll"]
    assert_fresh_tokens(requests)


async def test_every_sse_reconnect_sends_the_session_headers(
    mock: aioresponses, answers: Answers
) -> None:
    headers, _ = token_headers()
    answers.read("/sse", [1])  # catch-up
    # The connection ends after one delivery (the server recycles it): reconnect.
    answers.sse(
        "/sse",
        ("data", [2]),
        ("control", {"streamNextOffset": OFFSET_2, "streamCursor": "c1"}),
    )
    answers.sse(
        "/sse",
        ("data", [3]),
        ("control", {"streamNextOffset": OFFSET_3, "streamClosed": True}),
    )
    async with ds.Session(BASE, headers=headers, retry=FAST) as session:
        stream = session.stream("/sse", content_type="application/json")
        assert [m async for m in stream.read(live="sse")] == [1, 2, 3]
    requests = sent(mock)
    assert [r.query.get("live") for r in requests] == [None, "sse", "sse"]
    assert_fresh_tokens(requests)
    reconnect = requests[-1]
    assert (reconnect.query["offset"], reconnect.query["cursor"]) == (OFFSET_2, "c1")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_header_function_that_fails_sends_nothing(mock: aioresponses, kind: str) -> None:
    def broken() -> str:
        raise RuntimeError("token store down")

    async def broken_async() -> str:
        raise RuntimeError("token store down")

    value: Callable[[], str] | Callable[[], Awaitable[str]] = (
        broken if kind == "sync" else broken_async
    )
    async with ds.Session(BASE, headers={"Authorization": value}) as session:
        with pytest.raises(RuntimeError, match="token store down"):
            await session.stream("/f").head()
    assert sent(mock) == []
