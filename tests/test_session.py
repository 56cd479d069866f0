"""Session behaviour against the real reference server: per-request headers and
parameters, borrowed client sessions, closing, warnings, URL joining and the pool."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from yarl import URL

import durable_streams as ds
from durable_streams.testing import ReferenceServer

JSON = "application/json"


# -- a request recorder (aiohttp tracing on a borrowed client session) ---------------


@dataclass
class Sent:
    """One request as aiohttp sent it, and how it ended."""

    method: str
    url: URL
    headers: dict[str, str]
    headers_sent: bool = False
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    failed: bool = False

    @property
    def live(self) -> str | None:
        return self.url.query.get("live")


class Recorder:
    """Records every request of a client session; lets a test await a condition on them."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        # Called with each request as it starts, to snapshot client state at that moment.
        self.on_start: list[Callable[[Sent], None]] = []
        self._changed = asyncio.Condition()
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._on_start)
        self.config.on_request_headers_sent.append(self._on_headers_sent)
        self.config.on_request_end.append(self._on_end)
        self.config.on_request_exception.append(self._on_exception)

    async def _on_start(
        self,
        _: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        sent = Sent(params.method, params.url, {k.lower(): v for k, v in params.headers.items()})
        ctx.sent = sent
        self.sent.append(sent)
        for hook in self.on_start:
            hook(sent)
        await self._notify()

    async def _on_headers_sent(
        self,
        _: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        sent: Sent = ctx.sent
        sent.headers_sent = True
        await self._notify()

    async def _on_end(
        self, _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        sent: Sent = ctx.sent
        sent.status = params.response.status
        sent.response_headers = {k.lower(): v for k, v in params.response.headers.items()}
        await self._notify()

    async def _on_exception(
        self,
        _: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        sent: Sent = ctx.sent
        sent.failed = True
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def count(self, live: str | None = None, *, method: str = "GET") -> int:
        return sum(1 for s in self.sent if s.method == method and s.live == live)


class Follower:
    """Reads a reader's batches in a task of its own, so the test can act meanwhile."""

    def __init__(self, reader: ds.StreamReader) -> None:
        self.reader = reader
        self._queue: asyncio.Queue[ds.Batch[Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Follower:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.reader.aclose()

    async def _run(self) -> None:
        async for batch in self.reader.batches():
            await self._queue.put(batch)
        await self._queue.put(None)

    async def next_batch(self) -> ds.Batch[Any]:
        batch = await self._queue.get()
        assert batch is not None, "the reader ended"
        return batch

    async def rest(self) -> list[Any]:
        """The items of every batch until the reader ends (the end must come)."""
        items: list[Any] = []
        while (batch := await self._queue.get()) is not None:
            items.extend(batch.items)
        assert self._task is not None
        await self._task
        return items


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, aiohttp.ClientSession]]:
    rec = Recorder()
    async with aiohttp.ClientSession(trace_configs=[rec.config]) as client:
        yield rec, client


class Dynamic:
    """Header and parameter values of every form, each function counting its calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"h_sync": 0, "h_async": 0, "p_sync": 0, "p_async": 0}

    def _next(self, name: str) -> str:
        self.calls[name] += 1
        return f"{name}-{self.calls[name]}"

    def header_sync(self) -> str:
        return self._next("h_sync")

    async def header_async(self) -> str:
        await asyncio.sleep(0)
        return self._next("h_async")

    def param_sync(self) -> str:
        return self._next("p_sync")

    async def param_async(self) -> str:
        await asyncio.sleep(0)
        return self._next("p_async")

    def session(
        self,
        server: ReferenceServer,
        client: aiohttp.ClientSession,
        *,
        timeout: ds.Timeouts | None = None,
    ) -> ds.Session:
        return ds.Session(
            server.url,
            headers={
                "X-Static": "fixed",
                "X-Sync": self.header_sync,
                "X-Async": self.header_async,
            },
            params={"static": "s", "psync": self.param_sync, "pasync": self.param_async},
            client_session=client,
            retry=ds.RetryPolicy(initial_delay=0.01, max_delay=0.05),
            timeout=timeout,
        )

    def assert_fresh_per_request(self, sent: list[Sent]) -> None:
        """Every request carried values from its own, new evaluation of every function."""
        n = len(sent)
        assert n > 0
        assert self.calls == {"h_sync": n, "h_async": n, "p_sync": n, "p_async": n}
        for i, s in enumerate(sent, start=1):
            assert s.headers["x-static"] == "fixed"
            assert s.headers["x-sync"] == f"h_sync-{i}", (i, s)
            assert s.headers["x-async"] == f"h_async-{i}", (i, s)
            assert s.url.query["static"] == "s"
            assert s.url.query["psync"] == f"p_sync-{i}", (i, s)
            assert s.url.query["pasync"] == f"p_async-{i}", (i, s)


# -- dynamic headers and parameters --------------------------------------------------


async def test_dynamic_values_on_every_request_and_retry(
    server: ReferenceServer,
    recorder: tuple[Recorder, aiohttp.ClientSession],
    path: str,
) -> None:
    rec, client = recorder
    dyn = Dynamic()
    async with dyn.session(server, client) as session:
        stream = session.stream(path)
        server.inject_error(path, status=503, method="PUT")
        await stream.create(content_type=JSON)  # 503, then retried
        server.inject_error(path, drop_connection=True, method="POST")
        await stream.append({"n": 1})  # dropped, then retried
        server.inject_error(path, status=429, method="HEAD")
        await stream.head()  # 429, then retried
        server.inject_error(path, status=500, count=2, method="GET")
        assert await stream.read_all() == [{"n": 1}]  # two 500s, then the read
        await stream.delete()
    assert [s.method for s in rec.sent] == [
        "PUT", "PUT", "POST", "POST", "HEAD", "HEAD", "GET", "GET", "GET", "DELETE",
    ]  # fmt: skip
    assert [s.failed for s in rec.sent].count(True) == 1
    dyn.assert_fresh_per_request(rec.sent)


async def test_dynamic_values_on_every_long_poll(
    server: ReferenceServer,
    recorder: tuple[Recorder, aiohttp.ClientSession],
    session: ds.Session,
    json_stream: ds.Stream,
) -> None:
    rec, client = recorder
    dyn = Dynamic()
    writer = json_stream
    got: list[Any] = []
    async with dyn.session(server, client) as reading:
        reader = reading.stream(json_stream.url, content_type=JSON).read(live="long-poll")
        async with asyncio.timeout(20), reader:
            batches = reader.batches()
            first = await anext(batches)
            assert first.up_to_date
            for n in range(3):
                if n == 1:
                    # The next long-poll fails once and is retried.
                    server.inject_error(json_stream.url, status=503, method="GET")
                await writer.append(n)
                got.extend((await anext(batches)).items)
            await writer.close()
            async for batch in batches:
                got.extend(batch.items)
    assert got == [0, 1, 2]
    assert rec.count("long-poll") >= 4
    dyn.assert_fresh_per_request(rec.sent)


async def test_dynamic_values_on_every_sse_reconnect(
    server: ReferenceServer,
    recorder: tuple[Recorder, aiohttp.ClientSession],
    json_stream: ds.Stream,
) -> None:
    rec, client = recorder
    dyn = Dynamic()
    # A live-idle limit below the server's 2 s keep-alive makes the client drop and
    # reconnect an idle SSE connection every half second.
    timeout = ds.Timeouts(live_idle=0.5)
    async with dyn.session(server, client, timeout=timeout) as reading:
        reader = reading.stream(json_stream.url, content_type=JSON).read(live="sse")
        async with asyncio.timeout(20), Follower(reader) as follower:
            assert (await follower.next_batch()).up_to_date
            await json_stream.append("first")
            assert (await follower.next_batch()).items == ["first"]
            # The next SSE connection attempts are dropped by the server, then retried. (Two:
            # aiohttp itself silently retries a GET once when a reused connection drops.)
            server.inject_error(json_stream.url, drop_connection=True, count=2, method="GET")
            await rec.wait_for(lambda: rec.count("sse") >= 4)
            await json_stream.append("second")
            await json_stream.close()
            got = await follower.rest()
    assert got == ["second"]
    sse = [s for s in rec.sent if s.live == "sse"]
    assert any(s.failed for s in sse)
    assert sum(1 for s in sse if s.status == 200) >= 3
    dyn.assert_fresh_per_request(rec.sent)


async def test_header_and_param_maps_can_change_between_requests(
    server: ReferenceServer,
    recorder: tuple[Recorder, aiohttp.ClientSession],
    path: str,
) -> None:
    rec, client = recorder
    async with ds.Session(server.url, client_session=client) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        session.headers["Authorization"] = "Bearer one"
        session.params["tenant"] = "a"
        await stream.head()
        session.headers["Authorization"] = "Bearer two"
        del session.params["tenant"]
        await stream.head()
    assert "authorization" not in rec.sent[0].headers
    assert rec.sent[1].headers["authorization"] == "Bearer one"
    assert rec.sent[1].url.query.get("tenant") == "a"
    assert rec.sent[2].headers["authorization"] == "Bearer two"
    assert "tenant" not in rec.sent[2].url.query


async def test_protocol_headers_win_over_session_headers(
    server: ReferenceServer, path: str
) -> None:
    async with ds.Session(server.url, headers={"Content-Type": "text/plain"}) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        await stream.append({"a": 1})
        info = await stream.head()
    assert info.content_type == JSON


# -- borrowed client sessions, closing, warnings -------------------------------------


async def test_borrowed_client_session_is_not_closed(server: ReferenceServer, path: str) -> None:
    async with aiohttp.ClientSession() as client:
        session = ds.Session(server.url, client_session=client)
        await session.stream(path).create(content_type=JSON)
        await session.aclose()
        assert session.closed
        assert not client.closed
        # The borrowed client still works for its owner.
        async with client.head(server.stream_url(path)) as response:
            assert response.status == 200


async def test_owned_client_session_is_closed(server: ReferenceServer, path: str) -> None:
    session = ds.Session(server.url)
    await session.stream(path).create(content_type=JSON)
    client = session._transport._client
    assert client is not None
    await session.aclose()
    assert client.closed


async def test_aclose_is_idempotent(server: ReferenceServer, path: str) -> None:
    async with ds.Session(server.url) as session:
        await session.stream(path).create(content_type=JSON)
        await session.aclose()
        await session.aclose()
        assert session.closed
    await session.aclose()
    assert session.closed
    unused = ds.Session(server.url)
    await unused.aclose()
    await unused.aclose()
    assert unused.closed


async def test_use_after_close_is_resource_closed(server: ReferenceServer, path: str) -> None:
    session = ds.Session(server.url)
    stream = session.stream(path, content_type=JSON)
    await stream.create(content_type=JSON)
    reader = stream.read(live=False)
    await session.aclose()
    with pytest.raises(ds.ResourceClosedError):
        await stream.create(content_type=JSON)
    with pytest.raises(ds.ResourceClosedError):
        await stream.append({"a": 1})
    with pytest.raises(ds.ResourceClosedError):
        await stream.head()
    with pytest.raises(ds.ResourceClosedError):
        await stream.close()
    with pytest.raises(ds.ResourceClosedError):
        await stream.delete()
    with pytest.raises(ds.ResourceClosedError):
        await stream.read_all()
    with pytest.raises(ds.ResourceClosedError):
        await anext(reader)
    with pytest.raises(ds.ResourceClosedError):
        await session.stream(path).read(live="sse").read_all()


async def test_use_after_close_of_borrowing_session(server: ReferenceServer, path: str) -> None:
    async with aiohttp.ClientSession() as client:
        session = ds.Session(server.url, client_session=client)
        await session.aclose()
        with pytest.raises(ds.ResourceClosedError):
            await session.stream(path).create(content_type=JSON)


async def test_unclosed_session_that_made_requests_warns(
    server: ReferenceServer, path: str
) -> None:
    session = ds.Session(server.url)
    await session.stream(path).create(content_type=JSON)
    client = session._transport._client
    assert client is not None
    holder = [session]
    del session
    try:
        with pytest.warns(ResourceWarning, match="never closed"):
            _drop(holder)
    finally:
        # The aiohttp client is still referenced here, so only our warning fires; close
        # it so nothing else warns later.
        await client.close()


def _drop(holder: list[ds.Session]) -> None:
    holder.clear()
    gc.collect()


async def test_unused_unclosed_session_does_not_warn(server: ReferenceServer) -> None:
    # Construction does no I/O and opens nothing, so there is nothing to warn about.
    session = ds.Session(server.url)
    session.stream("/t/never-used")
    del session
    gc.collect()


async def test_unclosed_borrowing_session_does_not_warn(server: ReferenceServer, path: str) -> None:
    async with aiohttp.ClientSession() as client:
        session = ds.Session(server.url, client_session=client)
        await session.stream(path).create(content_type=JSON)
        del session
        gc.collect()


# -- URLs ----------------------------------------------------------------------------

_counter = itertools.count()


@pytest.mark.parametrize(
    ("base_suffix", "stream_path", "expected_suffix"),
    [
        ("", "/t/join/{n}", "/t/join/{n}"),
        ("/", "/t/join/{n}", "/t/join/{n}"),
        ("", "t/join/{n}", "/t/join/{n}"),
        ("/", "t/join/{n}", "/t/join/{n}"),
        ("/t/join", "{n}", "/t/join/{n}"),
        ("/t/join/", "{n}", "/t/join/{n}"),
        ("/t/join", "/{n}", "/t/join/{n}"),
        ("/t/join/", "/{n}", "/t/join/{n}"),
    ],
)
async def test_base_url_joining(
    server: ReferenceServer, base_suffix: str, stream_path: str, expected_suffix: str
) -> None:
    n = f"{next(_counter)}-{base_suffix.count('/')}{stream_path.count('/')}"
    async with ds.Session(server.url + base_suffix) as session:
        stream = session.stream(stream_path.format(n=n))
        assert stream.url == server.url + expected_suffix.format(n=n)
        await stream.create(content_type=JSON)
        await stream.append("joined")
    # The stream really is at the expected URL.
    async with ds.Session() as plain:
        assert await plain.stream(server.url + expected_suffix.format(n=n)).read_all() == ["joined"]


async def test_absolute_url_on_another_origin_needs_allowed_origins(
    server: ReferenceServer, path: str
) -> None:
    async with ds.Session("http://127.0.0.1:9/elsewhere/") as session:
        with pytest.raises(ds.InvalidArgumentError) as refused:
            session.stream(server.stream_url(path))
        assert refused.value.argument == "url"
    async with ds.Session("http://127.0.0.1:9/elsewhere/", allowed_origins=[server.url]) as session:
        stream = session.stream(server.stream_url(path))
        assert stream.url == server.stream_url(path)
        await stream.create(content_type=JSON)
        assert await stream.exists()
    async with ds.Session() as no_base:
        stream = no_base.stream(server.stream_url(path))
        assert await stream.exists()


async def test_question_mark_in_a_name_is_part_of_the_name(
    server: ReferenceServer, path: str
) -> None:
    # A "?" in a name is encoded: the name addresses one stream, never a query.
    async with ds.Session(server.url, params={"b": "2"}) as session:
        stream = session.stream(path + "?a=1")
        assert stream.url.endswith("%3Fa=1")
        await stream.create(content_type=JSON)
        await stream.append("q")
        assert await stream.read_all() == ["q"]
        async with stream.read(live="long-poll") as reader:
            await stream.close()
            assert await reader.read_all() == ["q"]


# -- the pool ------------------------------------------------------------------------


async def test_pool_serves_200_concurrent_long_poll_readers(
    session: ds.Session, byte_stream: ds.Stream
) -> None:
    # A byte stream: long-polls of a JSON stream's readers at one position are shared
    # (tests/test_live_share.py), those of a byte stream hold a connection each.
    readers = 200
    caught_up = 0
    all_caught_up = asyncio.Event()

    async def follow() -> list[Any]:
        nonlocal caught_up
        items: list[Any] = []
        async with byte_stream.read(live="long-poll") as reader:
            async for batch in reader.batches():
                items.extend(batch.items)
                if batch.up_to_date and not batch.items and not batch.closed:
                    caught_up += 1
                    if caught_up == readers:
                        all_caught_up.set()
        return items

    tasks = [asyncio.create_task(follow()) for _ in range(readers)]
    try:
        async with asyncio.timeout(30):
            await all_caught_up.wait()
            client = session._transport._client
            assert client is not None
            connector = client.connector
            assert connector is not None
            # No event says "this many requests are waiting on the server", so watch the
            # pool's acquired connections: all 200 long-polls must be in flight together.
            while len(connector._acquired) < readers:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.005)
            await byte_stream.append(b"hello, everyone")
            await byte_stream.close()
            results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [b"".join(items) for items in results] == [b"hello, everyone"] * readers
