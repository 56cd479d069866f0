"""The one-shot helpers (ds.create/append/read/read_all/head/delete) on the real server."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

JSON = "application/json"


async def test_one_shot_round_trip(server: ReferenceServer, path: str) -> None:
    url = server.stream_url(path)
    made = await ds.create(url, content_type=JSON, ttl=600)
    assert made.created is True
    assert (await ds.create(url, content_type=JSON, ttl=600)).created is False

    first = await ds.append(url, {"id": 1})
    await ds.append(url, [1, 2])
    await ds.append(url, b'["raw", "json"]')  # bytes: one already-encoded message
    assert first.offset

    info = await ds.head(url)
    assert info.content_type == JSON
    assert info.ttl == 600
    assert info.closed is False

    assert await ds.read_all(url) == [{"id": 1}, [1, 2], ["raw", "json"]]
    assert await ds.read_all(url, first.offset) == [[1, 2], ["raw", "json"]]
    assert await ds.read(url) == [{"id": 1}, [1, 2], ["raw", "json"]]

    closed = await ds.append(url, {"id": "last"}, close=True)
    assert closed.closed is True
    assert (await ds.head(url)).closed is True
    for live in ("long-poll", "sse", True):
        async with asyncio.timeout(10):
            assert await ds.read(url, first.offset, live=live) == [
                [1, 2], ["raw", "json"], {"id": "last"},
            ]  # fmt: skip

    await ds.delete(url)
    with pytest.raises(ds.StreamNotFoundError):
        await ds.head(url)
    with pytest.raises(ds.StreamNotFoundError):
        await ds.delete(url)


async def test_one_shot_byte_stream(server: ReferenceServer, path: str) -> None:
    url = server.stream_url(path)
    await ds.create(url, data=b"\x00\x01", closed=False)
    await ds.append(url, b"\xfe\xff")
    await ds.append(url, "text", seq="0002")
    with pytest.raises(ds.SequenceConflictError):
        await ds.append(url, "late", seq="0001")
    assert b"".join(await ds.read_all(url)) == b"\x00\x01\xfe\xfftext"


async def test_one_shot_create_closed(server: ReferenceServer, path: str) -> None:
    url = server.stream_url(path)
    made = await ds.create(url, content_type="text/plain", data="done", closed=True)
    assert made.closed is True
    with pytest.raises(ds.StreamClosedError):
        await ds.append(url, "more")
    async with asyncio.timeout(10):
        assert await ds.read(url, live="sse") == [b"done"]


async def test_one_shot_helpers_send_headers_and_use_retry(
    server: ReferenceServer, path: str
) -> None:
    url = server.stream_url(path)
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return f"Bearer {calls}"

    headers: dict[str, ds.DynamicValue] = {"Authorization": token}
    retry = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)
    await ds.create(url, content_type=JSON, headers=headers, retry=retry)
    server.inject_error(url, status=503, method="POST")
    await ds.append(url, "x", headers=headers, retry=retry)  # HEAD, then POST 503, POST
    await ds.head(url, headers=headers)
    assert await ds.read_all(url, headers=headers) == ["x"]
    await ds.delete(url, headers=headers, timeout=ds.Timeouts(request=5))
    assert calls == 7


async def test_one_shot_errors(server: ReferenceServer, path: str) -> None:
    url = server.stream_url(path)
    with pytest.raises(ds.StreamNotFoundError):
        await ds.read_all(url)
    with pytest.raises(ds.StreamNotFoundError):
        await ds.append(url, "x")
    await ds.create(url, content_type=JSON)
    with pytest.raises(ds.StreamExistsError):
        await ds.create(url, content_type="text/plain")


async def test_one_shot_helpers_close_their_sessions(server: ReferenceServer, path: str) -> None:
    url = server.stream_url(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await ds.create(url, content_type=JSON)
        await ds.append(url, 1)
        await ds.read_all(url)
        await ds.head(url)
        await ds.delete(url)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
