"""A producer left by cancellation, under asyncio and under anyio (asyncio backend).

anyio's cancel scopes deliver a cancellation again at every await inside the cancelled
scope, so the producer's cleanup (cancel the sender, wait for it, fail what is left) must
survive repeated cancellation. Whatever cancels the block, the same holds afterwards: no
receipt is pending, no task is left, no connection is held, and nothing warns. Regression
tests for issue 11, item 5.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import anyio
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

FAST = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)
MESSAGES = 50
DEADLINE = 0.3

Scenario = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as borrowed:
        yield borrowed


@pytest.fixture
async def slow_stream(
    server: ReferenceServer, client: aiohttp.ClientSession, path: str
) -> AsyncIterator[ds.Stream]:
    """A JSON stream on which every POST is held 1.5 s, through a pool we can inspect."""
    async with ds.Session(server.url, client_session=client, retry=FAST) as session:
        stream = session.stream(path)
        await stream.create(content_type="application/json")
        await asyncio.to_thread(server.inject_error, path, method="POST", delay_ms=1500, count=1000)
        yield stream
        await asyncio.to_thread(server.clear_errors)


def _acquired(client: aiohttp.ClientSession) -> int:
    connector = client.connector
    assert connector is not None
    return len(connector._acquired)


def _resource_warnings() -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def _producing(stream: ds.Stream, receipts: list[ds.Receipt], blocked_in: str) -> Scenario:
    """Append, then block where ``blocked_in`` says while the server holds every batch."""

    async def scenario() -> None:
        async with stream.producer(
            "cancelled", max_batch_items=1, max_in_flight=5, linger=0, max_buffer_bytes=1000
        ) as producer:
            for i in range(MESSAGES):
                # One by one: the caller inspects the list after the cancellation.
                receipts.append(await producer.append(f"{i:04d}" + "x" * 14))  # noqa: PERF401
            if blocked_in == "append":
                await producer.append("y" * 20)  # the buffer (1000 bytes) is full
            elif blocked_in == "flush":
                await producer.flush()
            # "exit": leaving the block waits for the held batches

    return scenario


async def _under_asyncio_timeout(scenario: Scenario) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(DEADLINE):
            await scenario()


async def _under_task_cancel(scenario: Scenario) -> None:
    task = asyncio.create_task(scenario())
    await asyncio.sleep(DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _under_anyio_move_on_after(scenario: Scenario) -> None:
    with anyio.move_on_after(DEADLINE) as scope:
        await scenario()
    assert scope.cancelled_caught


async def _under_anyio_fail_after(scenario: Scenario) -> None:
    with pytest.raises(TimeoutError), anyio.fail_after(DEADLINE):
        await scenario()


async def _under_anyio_task_group(scenario: Scenario) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(scenario)
        await anyio.sleep(DEADLINE)
        group.cancel_scope.cancel()


CANCELLERS: dict[str, Callable[[Scenario], Awaitable[None]]] = {
    "asyncio.timeout": _under_asyncio_timeout,
    "task.cancel": _under_task_cancel,
    "anyio.move_on_after": _under_anyio_move_on_after,
    "anyio.fail_after": _under_anyio_fail_after,
    "anyio.task_group": _under_anyio_task_group,
}


@pytest.mark.parametrize("blocked_in", ["flush", "exit", "append"])
@pytest.mark.parametrize("canceller", CANCELLERS)
async def test_a_cancelled_producer_leaves_nothing_behind(
    slow_stream: ds.Stream, client: aiohttp.ClientSession, canceller: str, blocked_in: str
) -> None:
    before = set(asyncio.all_tasks())
    receipts: list[ds.Receipt] = []
    started = time.monotonic()
    await CANCELLERS[canceller](_producing(slow_stream, receipts, blocked_in))
    # The exit did not wait for the held batches.
    assert time.monotonic() - started < DEADLINE + 1.0

    assert len(receipts) == MESSAGES
    pending = [i for i, receipt in enumerate(receipts) if not receipt.done()]
    assert pending == [], f"{len(pending)} receipts pending"
    for receipt in receipts:
        with pytest.raises(ds.ResourceClosedError):
            receipt.result()  # in flight or unsent: all were stopped
    leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leftover, leftover
    assert _acquired(client) == 0
    assert _resource_warnings() == []


async def test_the_session_works_after_a_cancelled_producer(
    server: ReferenceServer, slow_stream: ds.Stream, client: aiohttp.ClientSession, path: str
) -> None:
    receipts: list[ds.Receipt] = []
    await _under_anyio_move_on_after(_producing(slow_stream, receipts, "flush"))
    await asyncio.to_thread(server.clear_errors)
    async with slow_stream.producer("after", linger=0) as producer:
        ack = await (await producer.append("after the cancel"))
    assert not ack.duplicate
    # The cancelled batches may or may not have been stored (the docs say so); the new
    # producer's message is there, once.
    items = await slow_stream.read_all()
    assert items.count("after the cancel") == 1
    assert _acquired(client) == 0


async def test_cancelling_aclose_again_and_again_still_stops_the_sender(
    slow_stream: ds.Stream, client: aiohttp.ClientSession
) -> None:
    """aclose() cancelled while draining, then its cleanup cancelled over and over (what
    an anyio scope does): it still ends with the sender stopped and every receipt failed."""
    before = set(asyncio.all_tasks())
    producer = slow_stream.producer("stubborn", max_batch_items=1, linger=0)
    await producer.start()
    receipts = [await producer.append(i) for i in range(10)]
    closing = asyncio.create_task(producer.aclose())
    await asyncio.sleep(0.05)
    for _ in range(20):  # cancel, and keep cancelling while it cleans up
        closing.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert all(receipt.done() for receipt in receipts)
    leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leftover, leftover
    assert _acquired(client) == 0
    await producer.aclose()  # safe again: already closed
    assert _resource_warnings() == []


def test_anyio_is_the_asyncio_backend_here() -> None:
    # These tests use anyio's cancel scopes inside pytest-asyncio's loop.
    assert anyio.__name__ == "anyio"
    assert Any is not None
