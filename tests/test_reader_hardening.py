"""The reader against servers that misbehave: answers without the headers their kind must
carry, an offset past the tail, a deleted stream behind a silent SSE connection, and
failures that must all come out of one retry budget."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_reader_styles import offset_of, serving
from tests.test_session import Recorder

JSON = "application/json"
FAST = ds.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.005)


def _headers(next_offset: str | None, **flags: str) -> dict[str, str]:
    headers = {"Content-Type": JSON}
    if next_offset is not None:
        headers["Stream-Next-Offset"] = next_offset
    names = {"cursor": "Stream-Cursor", "up_to_date": "Stream-Up-To-Date"}
    headers.update({names.get(k, "Stream-Closed"): v for k, v in flags.items()})
    return headers


def _sse(*events: tuple[str, object]) -> bytes:
    return "".join(f"event: {kind}\ndata:{json.dumps(data)}\n\n" for kind, data in events).encode()


# -- item 9: headers an answer must carry ---------------------------------------------------


LIVE_ANSWERS = {
    "long-poll-200": lambda: web.Response(body=b"[2]", headers=_headers("o2")),
    "long-poll-204": lambda: web.Response(status=204, headers=_headers("o1", up_to_date="true")),
    "sse-control": lambda: web.Response(
        body=_sse(("data", [2]), ("control", {"streamNextOffset": "o2", "upToDate": True})),
        headers={"Content-Type": "text/event-stream"},
    ),
}


@pytest.mark.parametrize("answer", list(LIVE_ANSWERS))
async def test_live_answer_without_cursor_is_missing_header_error(answer: str) -> None:
    live: ds.LiveMode = "sse" if answer.startswith("sse") else "long-poll"

    async def read(request: web.Request) -> web.StreamResponse:
        if "live" not in request.query:
            return web.Response(body=b"[1]", headers=_headers("o1", up_to_date="true"))
        return LIVE_ANSWERS[answer]()

    async with (
        serving(read) as url,
        ds.Session(retry=FAST) as session,
        session.stream(url, content_type=JSON).read(live=live) as reader,
    ):
        assert await anext(reader) == 1
        with pytest.raises(ds.MissingHeaderError) as info:
            await anext(reader)
        assert reader.position == "o1"  # nothing of the refused answer was taken
    assert info.value.header == "stream-cursor"
    assert info.value.offset == "o1"
    assert isinstance(info.value, ds.ParseError)


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_closing_live_answer_needs_no_cursor(live: ds.LiveMode) -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        if "live" not in request.query:
            return web.Response(body=b"[1]", headers=_headers("o1", up_to_date="true"))
        if live == "sse":
            body = _sse(
                ("data", [2]), ("control", {"streamNextOffset": "o2", "streamClosed": True})
            )
            return web.Response(body=body, headers={"Content-Type": "text/event-stream"})
        return web.Response(body=b"[2]", headers=_headers("o2", closed="true"))

    async with (
        serving(read) as url,
        ds.Session(retry=FAST) as session,
        session.stream(url, content_type=JSON).read(live=live) as reader,
    ):
        assert await reader.read_all() == [1, 2]
        assert reader.stream_closed


@pytest.mark.parametrize("where", ["catch-up", "long-poll-200", "long-poll-204"])
async def test_read_answer_without_next_offset_is_missing_header_error(where: str) -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        if where == "catch-up":
            return web.Response(body=b"[1]", headers=_headers(None, up_to_date="true"))
        if "live" not in request.query:
            return web.Response(body=b"[]", headers=_headers("o1", up_to_date="true"))
        if where == "long-poll-204":
            return web.Response(status=204, headers=_headers(None, cursor="1", up_to_date="true"))
        return web.Response(body=b"[2]", headers=_headers(None, cursor="1"))

    async with serving(read) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=JSON)
        with pytest.raises(ds.MissingHeaderError) as info:
            await stream.read(live="long-poll").read_all()
    assert info.value.header == "stream-next-offset"


# -- item 11: an offset past the tail -------------------------------------------------------


def _past(offset: str, by: int = 1000) -> str:
    """A well-formed reference-server offset ``by`` bytes past ``offset``."""
    prefix, _, number = offset.rpartition("_")
    return f"{prefix}_{int(number) + by:0{len(number)}d}"


@pytest.mark.parametrize("live", [False, "long-poll", "sse"])
async def test_reading_past_the_tail_is_invalid_offset_error(
    json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    tail = (await json_stream.append({"n": 1})).offset
    async with asyncio.timeout(10), json_stream.read(_past(tail), live=live) as reader:
        with pytest.raises(ds.InvalidOffsetError):
            await reader.read_all()
    # Nothing is wrong with the stream: from a real offset it reads as ever.
    assert await json_stream.read_all(tail) == []


async def test_a_live_reader_past_the_tail_does_not_spin(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    rec = Recorder()
    tail = (await json_stream.append(1)).offset
    retry = ds.RetryPolicy(initial_delay=0.05, max_delay=0.05)
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(server.url, client_session=client, retry=retry) as session,
    ):
        reader = session.stream(json_stream.url).read(_past(tail), live="long-poll")
        with pytest.raises(ds.InvalidOffsetError):
            await reader.read_all()
    # A few reads, backed off, then the error: not a stream of requests, not a stall.
    assert len(rec.sent) == 4


def _behind_then(behind: int) -> tuple[Any, list[str]]:
    """A server whose first ``behind`` answers place the tail before the reader (the
    file-backed reference server's race), then answer properly."""
    seen: list[str] = []

    async def read(request: web.Request) -> web.StreamResponse:
        offset = request.query["offset"]
        seen.append(offset)
        if offset == "-1":
            return web.Response(body=b"[1]", headers=_headers("o2", up_to_date="true"))
        if len(seen) <= behind + 1:
            return web.Response(body=b"[]", headers=_headers("o1", cursor="1"))
        return web.Response(body=b"[2]", headers=_headers("o3", cursor="1", closed="true"))

    return read, seen


@pytest.mark.parametrize("behind", [1, 3])
async def test_answers_behind_the_reader_are_read_again(behind: int) -> None:
    read, seen = _behind_then(behind)
    async with serving(read) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=JSON)
        assert await stream.read(live="long-poll").read_all() == [1, 2]
    assert seen == ["-1", *["o2"] * (behind + 1)]


async def test_answers_behind_the_reader_in_a_row_are_invalid_offset() -> None:
    read, seen = _behind_then(4)
    async with serving(read) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=JSON)
        with pytest.raises(ds.InvalidOffsetError):
            await stream.read(live="long-poll").read_all()
    assert seen == ["-1", *["o2"] * 4]


async def test_sse_control_events_behind_the_reader_in_a_row_are_invalid_offset() -> None:
    connections = 0

    async def read(request: web.Request) -> web.StreamResponse:
        nonlocal connections
        if "live" not in request.query:
            return web.Response(body=b"[1]", headers=_headers("o2", up_to_date="true"))
        connections += 1
        body = _sse(("control", {"streamNextOffset": "o1", "streamCursor": "1"}))
        return web.Response(body=body, headers={"Content-Type": "text/event-stream"})

    async with serving(read) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=JSON)
        async with asyncio.timeout(10), stream.read(live="sse") as reader:
            with pytest.raises(ds.InvalidOffsetError):
                await reader.read_all()
            assert reader.mode == "sse"  # no fallback: SSE works, the offset is wrong
    assert connections == 4


# -- item 10: a deleted stream behind a silent SSE connection -------------------------------


@pytest.fixture
async def probing(server: ReferenceServer) -> AsyncIterator[tuple[Recorder, ds.Session]]:
    """A session whose SSE readers probe after 0.3 s of silence (the server's keep-alive
    comes every 2 s), with every request recorded."""
    rec = Recorder()
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(
            server.url,
            client_session=client,
            retry=FAST,
            timeout=ds.Timeouts(sse_probe=0.3),
        ) as session,
    ):
        yield rec, session


async def test_sse_reader_notices_a_deleted_stream(
    probing: tuple[Recorder, ds.Session], json_stream: ds.Stream
) -> None:
    rec, session = probing
    await json_stream.append("before")
    reader = session.stream(json_stream.url).read(live="sse")
    async with asyncio.timeout(10), reader:
        assert await anext(reader) == "before"
        waiting = asyncio.ensure_future(anext(reader))
        await rec.wait_for(lambda: rec.count("sse") == 1 and rec.sent[-1].status == 200)
        await json_stream.delete()
        started = time.monotonic()
        with pytest.raises(ds.StreamNotFoundError):
            await waiting
        noticed = time.monotonic() - started
    # Within about one probe interval; the connection was kept until then.
    assert noticed < 2.0
    assert rec.count("sse") == 1
    assert rec.count(method="HEAD") >= 1


async def test_probes_keep_a_quiet_connection(
    probing: tuple[Recorder, ds.Session], json_stream: ds.Stream
) -> None:
    rec, session = probing
    reader = session.stream(json_stream.url).read(live="sse")
    async with asyncio.timeout(10), reader:
        batches = reader.batches()
        assert (await anext(batches)).up_to_date
        waiting = asyncio.ensure_future(anext(batches))
        heads = rec.count(method="HEAD")
        await rec.wait_for(lambda: rec.count(method="HEAD") >= heads + 2)
        await json_stream.append("after")
        assert (await waiting).items == ["after"]
    assert rec.count("sse") == 1  # the same connection throughout


# -- one retry budget for every failure of a read -------------------------------------------


async def test_one_budget_covers_refused_requests_and_bodies_cut_short() -> None:
    """Failures before an answer (503) and in its body (a cut) alternate: with
    ``max_retries=2`` the read makes 3 requests in all, not 3 per kind of failure."""
    requests = 0

    async def read(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        if requests % 2:
            return web.Response(status=503)
        headers = {**_headers("o9", up_to_date="true"), "Content-Length": "1000"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(b"[1,2,")
        assert request.transport is not None
        request.transport.close()  # the body is cut short
        return response

    retry = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
    async with serving(read) as url, ds.Session(retry=retry) as session:
        with pytest.raises((ds.ServerError, ds.NetworkError)):
            await session.stream(url, content_type=JSON).read_all()
    assert requests == 3


async def test_live_budget_counts_failures_in_a_row_without_progress() -> None:
    """Every offset fails twice before it answers: ``live_max_retries=2`` is never
    exhausted, because each answer that moves the offset starts the count again."""
    failed: dict[str, int] = {}

    async def read(request: web.Request) -> web.StreamResponse:
        offset = request.query["offset"]
        failed[offset] = failed.get(offset, 0) + 1
        if failed[offset] <= 2:
            return web.Response(status=503)
        n = 0 if offset == "-1" else int(offset[1:])
        flags = {"closed": "true"} if n == 9 else {}
        body = json.dumps([n]).encode()
        return web.Response(body=body, headers=_headers(offset_of(n + 1), cursor="1", **flags))

    retry = ds.RetryPolicy(live_max_retries=2, initial_delay=0.001, max_delay=0.002)
    async with serving(read) as url, ds.Session(retry=retry) as session:
        got = await session.stream(url, content_type=JSON).read(live="long-poll").read_all()
    assert got == list(range(10))


async def test_bytes_delivered_before_a_cut_are_progress() -> None:
    """A byte body cut short after every 100 new bytes: each attempt delivers bytes that are
    never read again, so even ``max_retries=1`` reads it all (one retry per cut)."""
    data = bytes(range(256)) * 4
    requests = 0

    async def read(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        headers = {"Content-Type": "application/octet-stream", "Stream-Next-Offset": "end"}
        headers.update({"Stream-Up-To-Date": "true", "Content-Length": str(len(data))})
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(data[: requests * 100])
        if requests * 100 < len(data):
            assert request.transport is not None
            request.transport.close()
        return response

    retry = ds.RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002)
    async with serving(read) as url, ds.Session(retry=retry) as session:
        stream = session.stream(url, content_type="application/octet-stream")
        assert await stream.read(live=False).body() == data
    assert requests == 11


# -- limits: an error that leaves the position where it was ---------------------------------


async def test_a_body_past_the_limit_leaves_the_position() -> None:
    big = json.dumps(list(range(3000))).encode()

    async def read(request: web.Request) -> web.StreamResponse:
        if request.query["offset"] == "-1":
            return web.Response(body=b"[0]", headers=_headers("o1"))
        return web.Response(body=big, headers=_headers("o2", up_to_date="true", closed="true"))

    limits = ds.Limits(max_body_bytes=1000)
    async with serving(read) as url, ds.Session(retry=FAST, limits=limits) as session:
        async with session.stream(url, content_type=JSON).read(live=False) as reader:
            assert await anext(reader) == 0
            with pytest.raises(ds.LimitExceededError) as info:
                await anext(reader)
            assert reader.position == "o1"
        assert info.value.offset == "o1"
        assert info.value.limit == "max_body_bytes"
    async with serving(read) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=JSON)
        assert await stream.read(info.value.offset, live=False).read_all() == list(range(3000))


async def test_an_sse_line_past_the_limit_leaves_the_position() -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        if "live" not in request.query:
            return web.Response(body=b"[1]", headers=_headers("o1", up_to_date="true"))
        body = b"event: data\ndata:" + b"[" + b"0," * 5000 + b"0]\n\n"
        return web.Response(body=body, headers={"Content-Type": "text/event-stream"})

    limits = ds.Limits(max_sse_line_bytes=4096)
    async with (
        serving(read) as url,
        ds.Session(retry=FAST, limits=limits) as session,
        session.stream(url, content_type=JSON).read(live="sse") as reader,
    ):
        assert await anext(reader) == 1
        with pytest.raises(ds.LimitExceededError) as info:
            await anext(reader)
        assert reader.position == "o1"
    assert info.value.limit == "max_sse_line_bytes"
    assert info.value.offset == "o1"
    assert info.value.url is not None


async def test_sse_data_waiting_past_the_limit_falls_back_to_long_poll() -> None:
    """Data events without their control event, beyond ``max_body_bytes``: SSE cannot
    deliver them within the limits, long-poll can (its answer is read whole, within them)."""
    lines = b"".join(b'event: data\ndata:[{"n":%d,"pad":"0123456789"}]\n\n' % n for n in range(200))
    connections = 0

    async def read(request: web.Request) -> web.StreamResponse:
        nonlocal connections
        live = request.query.get("live")
        if live is None:
            return web.Response(body=b"[]", headers=_headers("o0", up_to_date="true"))
        if live == "sse":
            connections += 1
            return web.Response(body=lines, headers={"Content-Type": "text/event-stream"})
        body = json.dumps(list(range(50))).encode()
        return web.Response(body=body, headers=_headers("o9", cursor="1", closed="true"))

    limits = ds.Limits(max_body_bytes=1024)
    async with (
        serving(read) as url,
        ds.Session(retry=FAST, limits=limits) as session,
        session.stream(url, content_type=JSON).read(live="sse") as reader,
    ):
        assert await reader.read_all() == list(range(50))
        assert reader.stream_closed
    assert connections == 1  # no waiting for three connections: one could never do
