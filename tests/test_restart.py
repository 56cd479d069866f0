"""A live reader against a file-backed reference server that is stopped, or killed, and
restarted between appends: it keeps reading and ends with exactly what was appended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_session import Follower, Recorder

JSON = "application/json"
# Small delays: the reader retries a refused connection every few tens of milliseconds.
POLICY = ds.RetryPolicy(initial_delay=0.01, max_delay=0.1)


@pytest.fixture
async def traced(file_server: ReferenceServer) -> AsyncIterator[tuple[Recorder, ds.Session]]:
    rec = Recorder()
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(file_server.url, client_session=client, retry=POLICY) as session,
    ):
        yield rec, session


async def _outage(server: ReferenceServer, rec: Recorder, how: str) -> None:
    """Take the server down, wait until the reader has failed to reach it twice, restart."""
    failures = sum(1 for s in rec.sent if s.failed)
    await asyncio.to_thread(server.kill if how == "kill" else server.stop)
    await rec.wait_for(lambda: sum(1 for s in rec.sent if s.failed) >= failures + 2)
    await asyncio.to_thread(server.restart)


async def _until_parked(rec: Recorder, reader: ds.StreamReader) -> None:
    """Wait until the reader waits on the server at its current offset.

    The file-backed reference server has a race: a read that lands while an append is
    being stored can see the new data but the old tail, and then answers the next read
    with a ``Stream-Next-Offset`` *before* the offset asked for (the reader goes back and
    gets the data twice). Appending only while the reader is parked on the server keeps
    reads and appends apart, so the test checks the client, not that race.
    """

    def parked() -> bool:
        if not rec.sent:
            return False
        last = rec.sent[-1]
        if last.failed:
            return False
        if last.live == "sse":
            # Once its headers are in, the server has read to the tail and waits there.
            return last.status == 200
        return (
            last.live == "long-poll"
            and last.headers_sent
            and last.url.query.get("offset") == reader.offset
        )

    await rec.wait_for(parked)


@pytest.mark.parametrize("how", ["stop", "kill"])
@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_live_reader_survives_restart(
    file_server: ReferenceServer,
    traced: tuple[Recorder, ds.Session],
    live: ds.LiveMode,
    how: str,
) -> None:
    rec, session = traced
    # The writer has a session of its own: it only writes while the server is up.
    async with ds.Session(file_server.url, retry=POLICY) as writing:
        writer = writing.stream("/restart/s")
        await writer.create(content_type=JSON)
        reader = session.stream("/restart/s").read(live=live)
        got: list[object] = []

        async def append(n: int) -> None:
            await _until_parked(rec, reader)
            await writer.append({"n": n})
            got.extend((await follower.next_batch()).items)

        async with asyncio.timeout(60), Follower(reader) as follower:
            assert (await follower.next_batch()).up_to_date
            assert reader.mode == live
            await append(0)

            await _outage(file_server, rec, how)
            await append(1)
            await append(2)

            await _outage(file_server, rec, how)
            await append(3)
            await _until_parked(rec, reader)
            await writer.close()
            assert await follower.rest() == []
    assert got == [{"n": n} for n in range(4)]
    assert reader.stream_closed
    # It really was cut off, and really came back in the same mode.
    assert sum(1 for s in rec.sent if s.failed) >= 4
    assert rec.sent[-1].url.query.get("live") == live


async def test_catch_up_retries_while_server_is_down(file_server: ReferenceServer) -> None:
    # A catch-up read retries a bounded number of times: enough here to span a restart.
    rec = Recorder()
    policy = ds.RetryPolicy(max_retries=1000, initial_delay=0.01, max_delay=0.05)
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(file_server.url, client_session=client, retry=policy) as session,
    ):
        stream = session.stream("/restart/catch-up")
        await stream.create(content_type=JSON)
        await stream.append("kept")
        await asyncio.to_thread(file_server.kill)
        read = asyncio.create_task(stream.read_all())
        await rec.wait_for(lambda: sum(1 for s in rec.sent if s.failed) >= 2)
        await asyncio.to_thread(file_server.restart)
        async with asyncio.timeout(20):
            assert await read == ["kept"]
