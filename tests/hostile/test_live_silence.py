"""A silent server on a live read: the reader, not aiohttp, bounds the silence.

Live requests are *watched* (no aiohttp ``sock_read`` timer, which would move on every
arrival of bytes on every open connection): the reader's own timers must then bound the
wait for the answer, for a long-poll's body and the silence of an open SSE connection,
by ``Timeouts.live_idle``, with ``Timeouts.sse_probe`` HEAD requests in between on SSE.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

import durable_streams as ds
from tests.hostile.servers import (
    BYTES,
    JSON,
    OFFSET,
    Handler,
    HostileServer,
    by_live,
    drop_mid_body,
    stub,
)

_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_CONTROL = (
    b'event: control\ndata: {"streamNextOffset":"%s","streamCursor":"7","upToDate":true}\n\n'
    % OFFSET.encode()
)


def _never_answers(stopping: asyncio.Event) -> Handler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        await stopping.wait()
        return web.Response(status=503)

    return handle


def _control_then_silence(stopping: asyncio.Event) -> Handler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE)
        await response.prepare(request)
        await response.write(_CONTROL)
        await stopping.wait()
        return response

    return handle


def _session(server: HostileServer, *, idle: float, probe: float | None) -> ds.Session:
    return ds.Session(
        server.url,
        timeout=ds.Timeouts(live_idle=idle, sse_probe=probe),
        retry=ds.RetryPolicy(live_max_retries=1, initial_delay=0.001, max_delay=0.002),
    )


async def _drain(reader: ds.StreamReader) -> None:
    """Take every batch until the reader stops (it should, with an error), within 20 s."""
    async with asyncio.timeout(20):
        async for _ in reader.batches():
            pass


def _sse_gets(server: HostileServer) -> int:
    return _live_gets(server, "sse")


def _live_gets(server: HostileServer, mode: str) -> int:
    return sum(1 for r in server.seen(method="GET") if ("live", mode) in r.query)


def _headers_then_silence(stopping: asyncio.Event, content_type: str) -> Handler:
    """A long-poll answer whose status and headers come, and then no byte of its body."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "Stream-Next-Offset": OFFSET,
                "Stream-Cursor": "7",
                "Content-Length": "64",
            }
        )
        await response.prepare(request)
        await response.write(b"[" if content_type == JSON else b"ab")
        await stopping.wait()
        return response

    return handle


@pytest.mark.parametrize("mode", ["sse", "long-poll"])
async def test_a_live_answer_that_never_comes_times_out_and_is_retried(
    hostile: HostileServer, mode: ds.LiveMode
) -> None:
    hostile.handler = by_live(stub(), _never_answers(hostile.stopping))
    started = time.monotonic()
    async with _session(hostile, idle=0.3, probe=None) as session:
        reader = session.stream("s", content_type=JSON).read(live=mode)
        with pytest.raises(ds.RequestTimeoutError, match="live_idle"):
            async with asyncio.timeout(20):
                await reader.read_all()
    elapsed = time.monotonic() - started
    # One retry allowed (live_max_retries=1): two live requests, each given 0.3 s.
    assert _live_gets(hostile, str(mode)) == 2
    assert elapsed >= 0.6


async def test_an_open_sse_connection_gone_silent_times_out(hostile: HostileServer) -> None:
    hostile.handler = by_live(stub(), _control_then_silence(hostile.stopping))
    started = time.monotonic()
    async with _session(hostile, idle=0.3, probe=None) as session:
        reader = session.stream("s", content_type=JSON).read(live="sse")
        with pytest.raises(ds.RequestTimeoutError, match="live_idle"):
            await _drain(reader)
    assert _sse_gets(hostile) == 2
    assert time.monotonic() - started >= 0.6
    assert not hostile.seen(method="HEAD")  # sse_probe=None: no probe


async def test_probes_run_until_live_idle_ends_the_connection(hostile: HostileServer) -> None:
    hostile.handler = by_live(stub(), _control_then_silence(hostile.stopping))
    async with _session(hostile, idle=0.5, probe=0.2) as session:
        reader = session.stream("s", content_type=JSON).read(live="sse")
        with pytest.raises(ds.RequestTimeoutError, match="live_idle"):
            await _drain(reader)
    # Each connection: probes after 0.2 s and 0.4 s of silence, then the last wait is cut
    # to what is left of 0.5 s (one probe fewer if a probe took longer than 0.1 s).
    heads = len(hostile.seen(method="HEAD"))
    assert _sse_gets(hostile) == 2
    assert 2 <= heads <= 4


async def test_a_deleted_streams_probe_still_ends_the_read(hostile: HostileServer) -> None:
    sse = _control_then_silence(hostile.stopping)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=404)
        return await by_live(stub(), sse)(request)

    hostile.handler = handle
    async with _session(hostile, idle=60, probe=0.2) as session:
        reader = session.stream("s", content_type=JSON).read(live="sse")
        with pytest.raises(ds.StreamNotFoundError):
            await _drain(reader)
    assert _sse_gets(hostile) == 1


@pytest.mark.parametrize("content_type", [JSON, BYTES])
async def test_a_long_poll_body_gone_silent_times_out(
    hostile: HostileServer, content_type: str
) -> None:
    hostile.handler = by_live(
        stub(content_type), _headers_then_silence(hostile.stopping, content_type)
    )
    async with _session(hostile, idle=0.3, probe=None) as session:
        reader = session.stream("s", content_type=content_type).read(live="long-poll")
        with pytest.raises(ds.RequestTimeoutError, match="live_idle"):
            await _drain(reader)
        # Nothing of the silent bodies was delivered: the position is where they began.
        assert reader.position.startswith(OFFSET)
    assert _live_gets(hostile, "long-poll") == 2


async def test_a_long_poll_cut_short_is_still_a_transport_failure(
    hostile: HostileServer,
) -> None:
    cut = drop_mid_body({"Content-Type": JSON, "Stream-Next-Offset": OFFSET, "Stream-Cursor": "7"})
    hostile.handler = by_live(stub(), cut)
    async with _session(hostile, idle=30, probe=None) as session:
        reader = session.stream("s", content_type=JSON).read(live="long-poll")
        with pytest.raises(ds.NetworkError):
            await _drain(reader)
    assert _live_gets(hostile, "long-poll") == 2
