"""Scenario 6: live readers behind a proxy that cuts every connection after a few tens of KB.

A writer appends large batches straight to the server, round after round, each one a
single SSE ``data`` event longer than the proxy lets through, so no SSE connection can
ever reach the control event after it: SSE cannot make progress there, however often it
reconnects. (Before the fix such a reader reconnected for ever: each chunk reset its
failure count, and the fallback to long-poll judged only how long a connection lasted.)
Long-poll answers are compressed and small, so each gets through, but the answers of many
rounds add up on a kept-alive connection until it is cut in the middle of one. Both
readers must deliver every message exactly once, in order, and stop at the end of the
stream; the SSE reader by falling back to long-poll after a few connections that made no
progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.chaos._support import record, scaled
from tests.test_session import Recorder

MESSAGES = scaled(24_000, 50_001)
# An append of this many messages is one SSE event of ~60 KB (full: ~120 KB) of JSON,
# more than a connection may carry; compressed, its long-poll answer is ~3 KB (~5 KB).
PER_APPEND = scaled(1_000, 2_000)
CUT_AFTER = scaled(48 * 1024, 96 * 1024)  # bytes a connection carries before it is cut
BUDGET_S = scaled(60.0, 300.0)
RETRY = ds.RetryPolicy(initial_delay=0.01, max_delay=0.1)


class CuttingProxy:
    """Forwards TCP to ``upstream`` and closes each connection once it has carried
    ``cut_after`` bytes from the server (keep-alive requests add up)."""

    def __init__(self, upstream: str, cut_after: int) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None
        assert parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._cut_after = cut_after
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.cuts = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Closing every socket ends every link by itself (a cancelled handler task of
        # asyncio.start_server would be reported as an error).
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._links, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._writers.add(client_w)
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            self._writers.discard(client_w)
            self._links.discard(task)
            return
        self._writers.add(server_w)
        up = asyncio.ensure_future(self._pump(client_r, server_w))
        try:
            await self._pump_down(server_r, client_w)
        finally:
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await up
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)
            self._links.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _pump_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                room = self._cut_after - sent
                writer.write(data[:room])
                await writer.drain()
                sent += min(len(data), room)
                if sent >= self._cut_after:
                    self.cuts += 1  # the rest of this answer, and of the connection, is lost
                    return


@dataclass
class Tail:
    live: ds.LiveMode
    items: list[Any] = field(default_factory=list)
    closed: bool = False
    live_now: asyncio.Event = field(default_factory=asyncio.Event)
    requests: Recorder = field(default_factory=Recorder)


async def _follow(url: str, path: str, start: str, tail: Tail, progress: asyncio.Condition) -> None:
    """Read through the proxy at ``url`` to the end, with a session of the reader's own."""
    async with (
        aiohttp.ClientSession(trace_configs=[tail.requests.config]) as client,
        ds.Session(url, client_session=client, retry=RETRY) as session,
        session.stream(path, content_type="application/json").read(start, live=tail.live) as reader,
    ):
        async for batch in reader.batches():
            if batch.up_to_date:
                tail.live_now.set()
            tail.items.extend(batch.items)
            async with progress:
                progress.notify_all()
        tail.closed = reader.stream_closed


def _all_read(tails: list[Tail], count: int) -> bool:
    return all(len(tail.items) >= count for tail in tails)


async def _append_raw(url: str, values: list[Any]) -> None:
    """One POST of many messages: the server stores it as one append (one SSE event)."""
    body = json.dumps(values, separators=(",", ":")).encode()
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
    ):
        assert answer.status in (200, 204), await answer.text()


@pytest.mark.timeout(BUDGET_S + 60)
async def test_live_readers_deliver_everything_through_a_cutting_proxy(
    server: ReferenceServer, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    tails = [Tail("sse"), Tail("long-poll")]
    proxy = CuttingProxy(server.url, CUT_AFTER)
    progress = asyncio.Condition()
    started = time.monotonic()
    async with ds.Session(server.url) as direct, proxy as proxy_url:
        origin = direct.stream(path)
        await origin.create(content_type="application/json")
        start = (await origin.head()).offset
        with caplog.at_level("WARNING", logger="durable_streams"):
            async with asyncio.timeout(BUDGET_S), asyncio.TaskGroup() as group:
                for tail in tails:
                    group.create_task(_follow(proxy_url, path, start, tail, progress))
                    await tail.live_now.wait()
                for first in range(0, MESSAGES, PER_APPEND):
                    last = min(first + PER_APPEND, MESSAGES)
                    await _append_raw(
                        origin.url, [{"n": n, "pad": "x" * 40} for n in range(first, last)]
                    )
                    # Round by round: each answer stays small, the connections' bytes add up.
                    async with progress:
                        await progress.wait_for(functools.partial(_all_read, tails, last))
                await origin.close()
    seconds = round(time.monotonic() - started, 1)
    fell_back = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    record(
        "6 cutting proxy",
        messages=MESSAGES,
        cut_after_bytes=CUT_AFTER,
        connections=proxy.connections,
        cuts=proxy.cuts,
        read={str(t.live): len(t.items) for t in tails},
        requests={
            str(t.live): {mode: t.requests.count(mode) for mode in (None, "sse", "long-poll")}
            for t in tails
        },
        fallbacks=len(fell_back),
        seconds=seconds,
    )
    expected = list(range(MESSAGES))
    for tail in tails:
        assert [m["n"] for m in tail.items] == expected, f"{tail.live}: not every message once"
        assert tail.closed
    # SSE could not get past the first append: after three SSE connections without
    # progress the reader fell back, and read everything over long-poll.
    sse, long_poll = tails
    assert sse.requests.count("sse") == 3
    assert sse.requests.count("long-poll") >= 1
    assert long_poll.requests.count("sse") == 0
    assert len(fell_back) == 1
    # Long-poll answers were cut too (beyond the three SSE connections), and resumed.
    assert proxy.cuts >= 3 + 2, proxy.cuts
