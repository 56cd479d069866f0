"""One retry budget per operation (issue 10, item 5).

With ``RetryPolicy(max_retries=2)`` an operation makes three requests on the wire, however
it fails: no loop inside another, no hidden retry of aiohttp's. The server counts them, and
``Session.statistics()`` must count the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import durable_streams as ds
from tests.hostile.servers import (
    BYTES,
    JSON,
    OFFSET,
    Handler,
    HostileServer,
    drop,
    drop_mid_body,
    respond,
)

Op = Callable[[ds.Stream], Awaitable[Any]]


async def _head(stream: ds.Stream) -> Any:
    return await stream.head()


async def _create(stream: ds.Stream) -> Any:
    return await stream.create(content_type=JSON)


async def _append(stream: ds.Stream) -> Any:
    return await stream.append({"n": 1})


async def _delete(stream: ds.Stream) -> Any:
    return await stream.delete()


async def _read_all(stream: ds.Stream) -> Any:
    return await stream.read_all()


OPS: dict[str, tuple[str, Op]] = {
    "head": ("HEAD", _head),
    "create": ("PUT", _create),
    "append": ("POST", _append),
    "delete": ("DELETE", _delete),
    "read_all": ("GET", _read_all),
}

FAULTS: dict[str, tuple[Callable[[], Handler], type[ds.DurableStreamsError]]] = {
    "503": (lambda: respond(503, body=b"busy"), ds.ServerError),
    "drop": (drop, ds.NetworkError),
}


async def _warm(session: ds.Session, server: HostileServer) -> None:
    """One good request first, so the failing one rides a kept-alive connection.

    That is where aiohttp would resend an idempotent request on its own.
    """
    assert await session.stream("/warm").exists()
    server.clear()


def _assert_counted(
    session: ds.Session, before: ds.SessionStatistics, server: HostileServer, expected: int
) -> None:
    after = session.statistics()
    assert len(server.requests) == expected, [(r.method, r.raw_path) for r in server.requests]
    assert after.requests - before.requests == expected
    assert after.retries - before.retries == expected - 1


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("op_name", OPS)
async def test_two_retries_are_three_requests(
    hostile: HostileServer, budget: ds.RetryPolicy, op_name: str, fault: str
) -> None:
    method, op = OPS[op_name]
    make, error = FAULTS[fault]
    hostile.routes["/s"] = make()
    async with ds.Session(hostile.url, retry=budget) as session:
        await _warm(session, hostile)
        before = session.statistics()
        with pytest.raises(error):
            await op(session.stream("/s", content_type=JSON))
        _assert_counted(session, before, hostile, 3)
    assert {(r.method, r.raw_path) for r in hostile.requests} == {(method, "/s")}


@pytest.mark.parametrize("content_type", [JSON, BYTES])
async def test_a_catch_up_body_cut_off_spends_the_same_budget(
    hostile: HostileServer, budget: ds.RetryPolicy, content_type: str
) -> None:
    headers = {
        "Content-Type": content_type,
        "Stream-Next-Offset": OFFSET,
        "Stream-Up-To-Date": "true",
    }
    hostile.routes["/s"] = drop_mid_body(headers)
    async with ds.Session(hostile.url, retry=budget) as session:
        await _warm(session, hostile)
        before = session.statistics()
        with pytest.raises(ds.NetworkError):
            await session.stream("/s").read_all()
        _assert_counted(session, before, hostile, 3)
    assert {(r.method, r.raw_path) for r in hostile.requests} == {("GET", "/s")}


async def test_a_retry_policy_set_later_takes_full_effect(hostile: HostileServer) -> None:
    # The first policy's delays would take an hour: if any of them is used, the guard
    # below fails the test.
    slow = ds.RetryPolicy(max_retries=5, initial_delay=3600, max_delay=3600)
    fast = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
    hostile.routes["/s"] = respond(503)
    async with ds.Session(hostile.url, retry=slow) as session:
        try:
            session.retry = fast
        except AttributeError:
            # Read-only configuration is the other allowed design: then it must stay.
            assert session.retry is slow
            return
        assert session.retry is fast
        async with asyncio.timeout(10):
            with pytest.raises(ds.ServerError):
                await session.stream("/s").head()
        assert len(hostile.requests) == 3
        assert session.statistics().requests == 3
        assert session.statistics().retries == 2
