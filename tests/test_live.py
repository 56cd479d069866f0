"""Live reads against the real reference server: long-poll and SSE delivery, EOF,
cursor echo, SSE reconnects, the fallback to long-poll, and bad SSE events."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_session import Follower, Recorder, Sent

JSON = "application/json"
BYTES = "application/octet-stream"
FAST = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)

Recorded = tuple[Recorder, ds.Session]


@pytest.fixture
async def traced(server: ReferenceServer) -> AsyncIterator[Recorded]:
    """A session on the shared server whose every request is recorded."""
    rec = Recorder()
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(server.url, client_session=client, retry=FAST) as session,
    ):
        yield rec, session


@pytest.fixture
async def traced_idle(server: ReferenceServer) -> AsyncIterator[Recorded]:
    """Like ``traced``, but an SSE connection silent for 0.5 s is dropped and reconnected
    (the server only sends a keep-alive every 2 s)."""
    rec = Recorder()
    async with (
        aiohttp.ClientSession(trace_configs=[rec.config]) as client,
        ds.Session(
            server.url, client_session=client, retry=FAST, timeout=ds.Timeouts(live_idle=0.5)
        ) as session,
    ):
        yield rec, session


def _closed(sent: Sent) -> bool:
    return sent.response_headers.get("stream-closed") == "true"


# -- long-poll ----------------------------------------------------------------------


@pytest.mark.parametrize("live", [True, "long-poll"])
async def test_long_poll_delivers_appends_and_stops_at_close(
    traced: Recorded, json_stream: ds.Stream, live: ds.LiveMode
) -> None:
    rec, session = traced
    reader = session.stream(json_stream.url).read(live=live)
    async with asyncio.timeout(20), Follower(reader) as follower:
        first = await follower.next_batch()
        assert first.up_to_date
        assert first.items == []
        for n in range(3):
            await json_stream.append({"n": n})
            batch = await follower.next_batch()
            assert batch.items == [{"n": n}]
            assert reader.mode == "long-poll"
        await json_stream.close()
        assert await follower.rest() == []
    assert reader.stream_closed
    assert reader.mode == "done"
    gets = [s for s in rec.sent if s.method == "GET"]
    assert gets[0].live is None  # catch-up first
    assert all(s.live == "long-poll" for s in gets[1:])
    # The response that said "closed" was the last request the reader made.
    assert _closed(gets[-1])
    assert sum(1 for s in gets if _closed(s)) == 1
    assert len(rec.sent) == len(gets)


async def test_long_poll_ends_with_append_and_close(
    traced: Recorded, json_stream: ds.Stream
) -> None:
    rec, session = traced
    reader = session.stream(json_stream.url).read(live="long-poll")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append("last", close=True)
        assert await follower.rest() == ["last"]
    assert reader.stream_closed
    assert _closed(rec.sent[-1])
    assert rec.sent[-1].status == 200
    assert sum(1 for s in rec.sent if _closed(s)) == 1


async def test_long_poll_of_closed_stream_makes_one_request(
    traced: Recorded, json_stream: ds.Stream
) -> None:
    rec, session = traced
    await json_stream.append(1)
    await json_stream.close()
    async with session.stream(json_stream.url).read(live="long-poll") as reader:
        assert await reader.read_all() == [1]
    assert len(rec.sent) == 1


async def test_long_poll_cursor_is_echoed(traced: Recorded, json_stream: ds.Stream) -> None:
    rec, session = traced
    reader = session.stream(json_stream.url).read(live="long-poll")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        for n in range(3):
            await json_stream.append(n)
            batch = await follower.next_batch()
            assert batch.cursor is not None
            assert reader.cursor == batch.cursor
        await json_stream.close()
        await follower.rest()
    gets = [s for s in rec.sent if s.method == "GET"]
    assert len(gets) >= 4
    for previous, current in itertools.pairwise(gets):
        # Each request echoes the cursor of the response before it (none on catch-up).
        assert current.url.query.get("cursor") == previous.response_headers.get("stream-cursor")
    assert gets[1].response_headers.get("stream-cursor")


async def test_read_resumes_with_given_cursor(traced: Recorded, json_stream: ds.Stream) -> None:
    rec, session = traced
    head = await json_stream.head()
    reader = session.stream(json_stream.url).read(head.offset, live="long-poll", cursor="12345")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append("x")
        assert (await follower.next_batch()).items == ["x"]
        await json_stream.close()
        await follower.rest()
    assert rec.sent[0].url.query.get("cursor") == "12345"


# -- SSE delivery -------------------------------------------------------------------


async def _follow_sse(
    session: ds.Session, writer: ds.Stream, messages: list[Any]
) -> tuple[ds.StreamReader, list[list[Any]]]:
    """Append ``messages`` one by one to a live SSE reader, then close; return its batches."""
    reader = session.stream(writer.url).read(live="sse")
    batches: list[list[Any]] = []
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        assert reader.mode == "sse"
        for message in messages:
            await writer.append(message)
            batches.append((await follower.next_batch()).items)
        await writer.close()
        assert await follower.rest() == []
    return reader, batches


async def test_sse_delivers_json(traced: Recorded, json_stream: ds.Stream) -> None:
    _, session = traced
    values: list[Any] = [
        {"a": 1},
        [1, 2],
        "multi\nline\nstring",
        "unicode line breaks \u0085 \u2028 \u2029 stay",
        None,
        0,
        {"deep": [[{"x": [None]}]]},
    ]
    reader, batches = await _follow_sse(session, json_stream, values)
    assert batches == [[v] for v in values]
    assert reader.stream_closed


async def test_sse_delivers_text(traced: Recorded, session: ds.Session, path: str) -> None:
    _, reading = traced
    stream = session.stream(path)
    await stream.create(content_type="text/plain")
    # (Not a leading space: the reference server writes "data:" without the optional space,
    # so a reader, as SSE requires, takes the payload's first space for it.)
    texts = ["line one\nline two", "ü ✓ \u2028 \u0085 end", "tab\there", "trailing  "]
    _, batches = await _follow_sse(reading, stream, texts)
    assert batches == [[t.encode()] for t in texts]


async def test_sse_delivers_every_byte_value(
    traced: Recorded, session: ds.Session, path: str
) -> None:
    _, reading = traced
    stream = session.stream(path)
    await stream.create(content_type=BYTES)
    history = [bytes(range(256)), bytes(reversed(range(256)))]
    for chunk in history:
        await stream.append(chunk)
    live = [b"\r\n\r\n", b"\x00", bytes(range(256)) * 3, b"data: x\n\nevent: control\n"]
    reader = reading.stream(path).read(offset=(await stream.head()).offset, live="sse")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        for chunk in live:
            await stream.append(chunk)
            assert (await follower.next_batch()).items == [chunk]
        await stream.close()
        await follower.rest()
    # From the start of the closed stream, catch-up serves it all and the reader ends.
    async with reading.stream(path).read(live="sse") as whole:
        assert await whole.body() == b"".join(history + live)


async def test_sse_history_arrives_byte_exact(
    traced: Recorded, session: ds.Session, path: str
) -> None:
    _, reading = traced
    stream = session.stream(path)
    await stream.create(content_type=BYTES)
    # Start the SSE reader at the beginning, before anything is there, so everything comes
    # over SSE (base64) rather than catch-up.
    reader = reading.stream(path).read(live="sse")
    chunks = [bytes([b]) * 3 + bytes(range(b, 256)) for b in range(0, 256, 17)]
    big = bytes(range(256)) * 2048  # 512 KiB in one event
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        for chunk in [*chunks, big]:
            await stream.append(chunk)
        await stream.close()
        got = await follower.rest()
    assert got == [*chunks, big]


async def test_sse_stops_at_eof_without_reconnecting(
    traced: Recorded, json_stream: ds.Stream
) -> None:
    rec, session = traced
    reader, batches = await _follow_sse(session, json_stream, ["a", "b"])
    assert batches == [["a"], ["b"]]
    assert reader.stream_closed
    assert reader.mode == "done"
    assert rec.count("sse") == 1
    assert rec.sent[-1].live == "sse"


async def test_sse_of_closed_stream_at_tail_ends_at_once(
    traced: Recorded, json_stream: ds.Stream
) -> None:
    _, session = traced
    await json_stream.append(1)
    final = await json_stream.close()
    async with asyncio.timeout(5), session.stream(json_stream.url).read(final, live="sse") as r:
        assert await r.read_all() == []
        assert r.stream_closed
    async with asyncio.timeout(5), session.stream(json_stream.url).read("now", live="sse") as r:
        assert await r.read_all() == []
        assert r.offset == final
        assert r.stream_closed


async def test_sse_from_now_skips_history(traced: Recorded, json_stream: ds.Stream) -> None:
    _, session = traced
    await json_stream.append("old")
    reader = session.stream(json_stream.url).read("now", live="sse")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append("new")
        await json_stream.close()
        assert await follower.rest() == ["new"]


# -- SSE reconnects -----------------------------------------------------------------


async def test_sse_reconnects_without_loss_or_duplication(
    server: ReferenceServer, traced_idle: Recorded, json_stream: ds.Stream
) -> None:
    rec, session = traced_idle
    reader = session.stream(json_stream.url).read(live="sse")
    got: list[Any] = []
    async with asyncio.timeout(30), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append("a")
        got.extend((await follower.next_batch()).items)
        # Connection attempts are now cut by the server before any response (two: aiohttp
        # retries a GET on a reused connection once by itself) ...
        server.inject_error(json_stream.url, drop_connection=True, count=2, method="GET")
        connections = rec.count("sse")
        # ... while the idle connection is dropped and re-established.
        await rec.wait_for(lambda: sum(1 for s in rec.sent if s.live == "sse" and s.failed) >= 1)
        await rec.wait_for(lambda: rec.count("sse") >= connections + 2)
        await json_stream.append("b")
        await json_stream.append("c")
        got.extend((await follower.next_batch()).items)
        if got != ["a", "b", "c"]:
            got.extend((await follower.next_batch()).items)
        connections = rec.count("sse")
        await rec.wait_for(lambda: rec.count("sse") >= connections + 1)
        await json_stream.append("d")
        await json_stream.close()
        got.extend(await follower.rest())
    assert got == ["a", "b", "c", "d"]
    sse = [s for s in rec.sent if s.live == "sse"]
    # Every SSE request started where the last control event left off.
    offsets = [s.url.query["offset"] for s in sse]
    assert offsets == sorted(offsets)


async def test_sse_reconnect_echoes_cursor(traced_idle: Recorded, json_stream: ds.Stream) -> None:
    rec, session = traced_idle
    reader = session.stream(json_stream.url).read(live="sse")
    held: list[tuple[Sent, str | None]] = []
    rec.on_start.append(lambda sent: held.append((sent, reader.cursor)))
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append(1)
        assert (await follower.next_batch()).items == [1]
        await rec.wait_for(lambda: rec.count("sse") >= 3)
        await json_stream.close()
        assert await follower.rest() == []
    sse = [(sent, cursor) for sent, cursor in held if sent.live == "sse"]
    assert len(sse) >= 3
    for sent, cursor in sse[1:]:
        # A reconnect sends the last cursor the reader had received.
        assert cursor is not None
        assert sent.url.query.get("cursor") == cursor


# -- SSE fallback to long-poll ------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "503"])
async def test_sse_requests_that_fail_are_retried_without_leaving_sse(
    server: ReferenceServer, traced: Recorded, json_stream: ds.Stream, fault: str
) -> None:
    # A refused or dropped SSE request says nothing about SSE itself (the server may be
    # restarting): it is retried with backoff, and the reader stays on SSE. Only SSE
    # responses that keep ending at once (a buffering proxy) cause the fallback; see
    # test_sse_falls_back_to_long_poll_after_short_connections.
    rec, session = traced
    # From "now" the reader goes straight to SSE (after one HEAD for the content type),
    # so every GET the faults hit is an SSE request.
    if fault == "drop":
        server.inject_error(json_stream.url, drop_connection=True, count=4, method="GET")
    else:
        server.inject_error(json_stream.url, status=503, count=4, method="GET")
    reader = session.stream(json_stream.url).read("now", live="sse")
    async with asyncio.timeout(30), Follower(reader) as follower:
        assert (await follower.next_batch()).up_to_date
        await json_stream.append("live")
        assert (await follower.next_batch()).items == ["live"]
        assert reader.mode == "sse"
        await json_stream.close()
        assert await follower.rest() == []
    assert rec.count("long-poll") == 0
    # (aiohttp itself silently retries a GET on a dropped keep-alive connection once.)
    assert rec.count("sse") >= 3


class Proxy:
    """A reverse proxy in front of the reference server, to misbehave as networks do.

    ``short_sse``: answer every SSE request with an empty event stream at once, as a
    buffering proxy does. ``trickle``: send the body of every other GET in pieces of this
    many bytes, ``trickle_delay`` seconds apart, as a slow link does. ``cut_after``: with
    ``trickle``, cut the connection of the next ``cuts`` such bodies after this many bytes,
    as a failing link does. Everything else is forwarded as it is.
    """

    _SKIP_REQUEST = frozenset({"host", "content-length", "transfer-encoding", "connection"})
    _SKIP_RESPONSE = frozenset(
        {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
    )

    def __init__(
        self,
        upstream: str,
        *,
        short_sse: bool = False,
        trickle: int | None = None,
        trickle_delay: float = 0.002,
        cut_after: int | None = None,
        cuts: int = 1,
    ) -> None:
        self.upstream = upstream
        self.short_sse = short_sse
        self.trickle = trickle
        self.trickle_delay = trickle_delay
        self.cut_after = cut_after
        self.cuts = cuts
        self.sse_requests = 0
        self.get_requests = 0
        self._client: aiohttp.ClientSession | None = None
        self._server = TestServer(self._app(), host="127.0.0.1")

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def __aenter__(self) -> str:
        self._client = aiohttp.ClientSession()
        await self._server.start_server()
        return str(self._server.make_url("")).rstrip("/")

    async def __aexit__(self, *exc_info: object) -> None:
        await self._server.close()
        if self._client is not None:
            await self._client.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        live = request.query.get("live")
        if live == "sse":
            self.sse_requests += 1
        elif request.method == "GET":
            self.get_requests += 1
        if live == "sse" and self.short_sse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write_eof()
            return response
        assert self._client is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self._SKIP_REQUEST}
        async with self._client.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body or None,
        ) as upstream:
            data = await upstream.read()
            out = {
                k: v for k, v in upstream.headers.items() if k.lower() not in self._SKIP_RESPONSE
            }
            if self.trickle is None or request.method != "GET" or upstream.status != 200:
                return web.Response(status=upstream.status, body=data, headers=out)
            response = web.StreamResponse(status=upstream.status, headers=out)
            await response.prepare(request)
            cut = self.cut_after if self.cuts > 0 else None
            for start in range(0, len(data), self.trickle):
                piece = data[start : start + self.trickle]
                if cut is not None and start + len(piece) > cut:
                    await response.write(piece[: cut - start])
                    self.cuts -= 1
                    assert request.transport is not None
                    request.transport.close()  # a body cut short: the client sees it
                    return response
                await response.write(piece)
                await asyncio.sleep(self.trickle_delay)
            await response.write_eof()
            return response


async def test_sse_falls_back_to_long_poll_after_short_connections(
    server: ReferenceServer,
    json_stream: ds.Stream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await json_stream.append("history")
    async with (
        Proxy(server.url, short_sse=True) as proxy_url,
        ds.Session(proxy_url, retry=FAST) as via_proxy,
    ):
        # The reads go through the proxy; the writes go straight to the server.
        reader = via_proxy.stream(URL(json_stream.url).path).read(live="sse")
        with caplog.at_level(logging.WARNING, logger="durable_streams"):
            async with asyncio.timeout(30), Follower(reader) as follower:
                assert (await follower.next_batch()).items == ["history"]
                await json_stream.append("live")
                assert (await follower.next_batch()).items == ["live"]
                assert reader.mode == "long-poll"
                await json_stream.append("more")
                await json_stream.close()
                assert await follower.rest() == ["more"]
    assert reader.stream_closed
    assert any("long-poll" in r.getMessage() for r in caplog.records)


async def test_short_sse_proxy_counts_three_attempts(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    shorts = Proxy(server.url, short_sse=True)
    async with shorts as proxy_url, ds.Session(proxy_url, retry=FAST) as via_proxy:
        reader = via_proxy.stream(URL(json_stream.url).path).read(live="sse")
        async with asyncio.timeout(30), Follower(reader) as follower:
            assert (await follower.next_batch()).up_to_date
            await json_stream.append("x")
            assert (await follower.next_batch()).items == ["x"]
            await json_stream.close()
            await follower.rest()
    assert shorts.sse_requests == 3


# -- injected SSE events ------------------------------------------------------------


async def test_unknown_sse_event_types_are_skipped(
    server: ReferenceServer, traced: Recorded, json_stream: ds.Stream
) -> None:
    _, session = traced
    await json_stream.append("before")
    reader = session.stream(json_stream.url).read(live="sse")
    async with asyncio.timeout(20), Follower(reader) as follower:
        assert (await follower.next_batch()).items == ["before"]
        server.inject_error(
            json_stream.url,
            inject_sse_event={"event_type": "surprise", "data": '{"streamNextOffset":"x"}'},
            method="GET",
        )
        await json_stream.append("after")
        assert (await follower.next_batch()).items == ["after"]
        await json_stream.close()
        assert await follower.rest() == []


@pytest.mark.parametrize(
    ("content_type", "event_type", "data"),
    [
        (JSON, "control", "{not json"),
        (JSON, "control", ""),
        (JSON, "control", "[1, 2]"),
        (JSON, "control", '{"streamCursor": "5", "upToDate": true}'),
        (JSON, "data", "{not json"),
        (BYTES, "data", "not*base64!"),
        (BYTES, "data", "abc"),
    ],
    # Plain ids: the test's name becomes its stream path, where "{" or " " would be
    # percent-encoded and no longer match the fault's path.
    ids=[
        "control-not-json",
        "control-empty",
        "control-not-object",
        "control-no-offset",
        "json-data-not-json",
        "base64-bad-alphabet",
        "base64-bad-length",
    ],
)
async def test_malformed_sse_event_is_parse_error_with_offset(
    server: ReferenceServer,
    traced: Recorded,
    session: ds.Session,
    path: str,
    content_type: str,
    event_type: str,
    data: str,
) -> None:
    _, reading = traced
    stream = session.stream(path)
    await stream.create(content_type=content_type)
    await stream.append(1 if content_type == JSON else b"one")
    reader = reading.stream(path).read(live="sse")
    async with asyncio.timeout(20), reader:
        batches = reader.batches()
        caught_up = await anext(batches)
        assert caught_up.up_to_date
        server.inject_error(
            path, inject_sse_event={"event_type": event_type, "data": data}, method="GET"
        )
        # Data appended behind the bad event must not be delivered past the error.
        await stream.append(2 if content_type == JSON else b"two")
        with pytest.raises(ds.ParseError) as info:
            await anext(batches)
        assert info.value.offset == caught_up.offset
        assert info.value.url == stream.url

        # The same reader, iterated again, reconnects and goes on from the same offset.
        again = await anext(batches)
        assert again.items == ([2] if content_type == JSON else [b"two"])

    # A new reader from the error's offset reads exactly what came after it.
    await stream.close()
    async with (
        asyncio.timeout(20),
        reading.stream(path).read(info.value.offset, live="sse") as fresh,
    ):
        assert await fresh.read_all() == ([2] if content_type == JSON else [b"two"])
