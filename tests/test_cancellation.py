"""Cancellation and abandonment leave nothing behind: no acquired connection, no task,
no ResourceWarning; the session keeps working; a cancelled reader resumes exactly."""

from __future__ import annotations

import asyncio
import gc
import random
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_live import Proxy
from tests.test_session import Recorder

JSON = "application/json"
FAST = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)

Traced = tuple[Recorder, aiohttp.ClientSession, ds.Session]


@pytest.fixture
async def traced(server: ReferenceServer) -> AsyncIterator[Traced]:
    rec = Recorder()
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(server.url, client_session=client, retry=FAST) as session,
    ):
        yield rec, client, session


def _acquired(client: aiohttp.ClientSession) -> int:
    connector = client.connector
    assert connector is not None
    return len(connector._acquired)


def _other_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()}


def _resource_warnings() -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


async def _until_live_request(rec: Recorder, live: str, *, answered: bool, after: int = 0) -> None:
    """Wait until a live request (the ``after``-th request or a later one) is on the wire
    and, if ``answered``, its response headers are in."""

    def ready() -> bool:
        return any(
            s.live == live and not s.failed and (s.status is not None or not answered)
            for s in rec.sent[after:]
        )

    await rec.wait_for(ready)


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_cancelled_live_read_leaves_nothing_open(
    traced: Traced, json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    rec, client, session = traced
    before = set(asyncio.all_tasks())
    reader = session.stream(json_stream.url).read(live=live)
    batches = reader.batches()
    assert (await anext(batches)).up_to_date
    waiting = asyncio.create_task(anext(batches))
    # SSE: the event stream is open; long-poll: the request waits on the server.
    await _until_live_request(rec, str(live), answered=live == "sse")
    assert _acquired(client) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert _acquired(client) == 0
    assert _other_tasks(before) == set()
    assert _resource_warnings() == []

    # The session still works, reads and writes alike.
    await json_stream.append("after")
    assert await session.stream(json_stream.url).read_all() == ["after"]
    del reader, batches
    assert _acquired(client) == 0
    assert _resource_warnings() == []


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_cancelled_read_in_owned_pool_leaves_nothing_open(
    session: ds.Session, json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    # The library's own pool, as users get it.
    before = set(asyncio.all_tasks())
    reader = json_stream.read(live=live)
    batches = reader.batches()
    assert (await anext(batches)).up_to_date
    client = session._transport._client
    assert client is not None
    waiting = asyncio.create_task(anext(batches))
    # No event says "the live request is in flight" on a pool we cannot trace; watch it.
    async with asyncio.timeout(10):
        while _acquired(client) == 0:  # noqa: ASYNC110 - no event exists to await
            await asyncio.sleep(0.005)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert _acquired(client) == 0
    assert _other_tasks(before) == set()
    assert _resource_warnings() == []
    await json_stream.append("still works")
    assert await json_stream.read_all() == ["still works"]


async def test_timeout_around_a_live_read_leaves_nothing_open(
    traced: Traced, json_stream: ds.Stream
) -> None:
    _, client, session = traced

    async def drain(reader: ds.StreamReader) -> None:
        async with asyncio.timeout(0.3):
            async for _ in reader:
                pass

    async with session.stream(json_stream.url).read(live="sse") as reader:
        with pytest.raises(TimeoutError):
            await drain(reader)
        assert _acquired(client) == 0
    assert _resource_warnings() == []


async def test_cancel_while_leaving_async_with(traced: Traced, json_stream: ds.Stream) -> None:
    rec, client, session = traced

    async def consume() -> None:
        async with session.stream(json_stream.url).read(live="sse") as reader:
            async for _ in reader:
                pass

    task = asyncio.create_task(consume())
    await _until_live_request(rec, "sse", answered=True)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _acquired(client) == 0
    assert _resource_warnings() == []


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_break_without_async_with_releases_connection(
    traced: Traced, json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    rec, client, session = traced

    async def append_when_live() -> None:
        await _until_live_request(rec, str(live), answered=live == "sse")
        await json_stream.append("one")
        await json_stream.append("two")

    appender = asyncio.create_task(append_when_live())
    got: list[Any] = []
    tail = (await json_stream.head()).offset
    async with asyncio.timeout(10):
        async for message in session.stream(json_stream.url).read(tail, live=live):
            got.append(message)
            break
        await appender
    assert got == ["one"]
    # The abandoned reader is garbage now; collecting it must release its connection.
    assert _resource_warnings() == []
    assert _acquired(client) == 0
    assert await session.stream(json_stream.url).read_all() == ["one", "two"]


async def test_break_out_of_batches_without_async_with(
    traced: Traced, json_stream: ds.Stream
) -> None:
    rec, client, session = traced

    async def append_when_live() -> None:
        await _until_live_request(rec, "sse", answered=True)
        await json_stream.append("x")

    appender = asyncio.create_task(append_when_live())
    async with asyncio.timeout(10):
        async for batch in session.stream(json_stream.url).read("now", live="sse").batches():
            if batch.items:
                assert batch.items == ["x"]
                break
        await appender
    assert _resource_warnings() == []
    assert _acquired(client) == 0


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_cancelled_reader_resumes_without_loss_or_duplication(
    traced: Traced, json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    rec, client, session = traced
    got: list[Any] = []
    reader = session.stream(json_stream.url).read(live=live)
    messages = aiter(reader)
    async with asyncio.timeout(20):
        await json_stream.append(0)
        got.append(await anext(messages))
        new_request = True
        for n in range(1, 6):
            # Cancel a wait while data is arriving, then iterate the same reader again.
            sent = len(rec.sent)
            waiting = asyncio.create_task(anext(messages))
            if new_request:
                await _until_live_request(rec, str(live), answered=live == "sse", after=sent)
            await json_stream.append(n)
            waiting.cancel()
            try:
                got.append(await waiting)
            except asyncio.CancelledError:
                cancelled = True
            else:
                cancelled = False
            # Long-poll sends a request per wait, once the messages of the last answer are
            # all handed out (after cancelled waits one answer may bring several: the
            # position then says how many of its batch were taken); SSE only after a cancel
            # dropped its stream.
            drained = ",skip=" not in reader.position
            new_request = (live == "long-poll" and drained) or cancelled
            assert _acquired(client) <= 1
        await json_stream.append(6)
        await json_stream.close()
        got.extend([message async for message in _rest(messages)])
    assert got == list(range(7))
    assert reader.stream_closed
    assert _acquired(client) == 0
    assert _resource_warnings() == []


async def _rest(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    while True:
        try:
            yield await anext(messages)
        except StopAsyncIteration:
            return


# -- byte bodies that arrive slowly ---------------------------------------------------


@pytest.fixture
async def slow_link(server: ReferenceServer) -> AsyncIterator[str]:
    """A proxy that sends read bodies in 16 KiB pieces, 2 ms apart."""
    async with Proxy(server.url, trickle=16 * 1024) as url:
        yield url


async def _big_byte_stream(session: ds.Session, path: str) -> bytes:
    stream = session.stream(path)
    await stream.create(content_type="application/octet-stream")
    data = random.Random(path).randbytes(256 * 1024)
    await stream.append(data)
    return data


@pytest.mark.parametrize("cancels", ["once", "again-while-reconnecting"])
async def test_cancelled_byte_read_resumes_exactly(
    session: ds.Session, slow_link: str, path: str, cancels: str
) -> None:
    data = await _big_byte_stream(session, path)
    async with (
        aiohttp.ClientSession() as client,
        ds.Session(slow_link, client_session=client, retry=FAST) as via_link,
    ):
        reader = via_link.stream(path).read(live=False)
        pieces = aiter(reader)
        got = [await anext(pieces)]
        # Cancel a wait for the next piece while the body is still arriving.
        for _ in range(100):
            waiting = asyncio.create_task(anext(pieces))
            await asyncio.sleep(0)
            if not waiting.done():
                waiting.cancel()
            try:
                got.append(await waiting)
            except asyncio.CancelledError:
                break
        else:
            pytest.fail("no wait was ever cancelled mid-body")
        assert _acquired(client) == 0
        if cancels == "again-while-reconnecting":
            # The next wait sends the read again; cancel that too, before its answer.
            waiting = asyncio.create_task(anext(pieces))
            await asyncio.sleep(0)
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert _acquired(client) == 0
        got.extend([piece async for piece in _rest(pieces)])
        body = b"".join(got)
        size = len(body)
        assert size == len(data)  # more would mean bytes delivered twice
        assert body == data
    assert _resource_warnings() == []


async def test_break_mid_body_without_async_with_releases_connection(
    session: ds.Session, slow_link: str, path: str
) -> None:
    data = await _big_byte_stream(session, path)
    async with (
        aiohttp.ClientSession() as client,
        ds.Session(slow_link, client_session=client, retry=FAST) as via_link,
    ):
        async for piece in via_link.stream(path).read(live=False):
            assert data.startswith(piece)
            break
        assert _resource_warnings() == []
        assert _acquired(client) == 0
        async with via_link.stream(path).read(live=False) as reader:
            assert await reader.body() == data
