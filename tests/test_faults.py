"""Injected server faults: retries with Retry-After, dropped connections, truncated and
corrupt bodies, retry exhaustion, and the statuses that are never retried."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_live import Proxy
from tests.test_session import Follower

JSON = "application/json"
FAST = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)


class Counted:
    """A session whose requests are counted through a dynamic header."""

    def __init__(self) -> None:
        self.requests = 0

    def header(self) -> str:
        self.requests += 1
        return str(self.requests)

    def session(self, url: str, retry: ds.RetryPolicy = FAST) -> ds.Session:
        return ds.Session(url, headers={"X-Request-Count": self.header}, retry=retry)


@pytest.fixture
def counted() -> Counted:
    return Counted()


@pytest.fixture(autouse=True)
def _no_leftover_faults(server: ReferenceServer) -> Iterator[None]:
    yield
    server.clear_errors()


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ReferenceServer]:
    """A server that never compresses, so a damaged body reaches the JSON parser as is."""
    with ReferenceServer(long_poll_timeout_ms=2000, compression=False) as srv:
        yield srv


Op = Callable[[ds.Stream], Awaitable[Any]]


async def _create(stream: ds.Stream) -> Any:
    return await stream.create(content_type=JSON)


async def _append(stream: ds.Stream) -> Any:
    return await stream.append({"appended": True})


async def _read(stream: ds.Stream) -> Any:
    return await stream.read_all()


async def _head(stream: ds.Stream) -> Any:
    return await stream.head()


OPS: dict[str, tuple[str, Op]] = {
    "create": ("PUT", _create),
    "append": ("POST", _append),
    "read": ("GET", _read),
    "head": ("HEAD", _head),
}


# -- transient statuses are retried, honouring Retry-After ---------------------------


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("op", list(OPS))
async def test_retry_after_is_honoured(
    server: ReferenceServer, counted: Counted, path: str, op: str, status: int
) -> None:
    method, call = OPS[op]
    async with counted.session(server.url) as session:
        stream = session.stream(path, content_type=JSON)
        if op != "create":
            await stream.create(content_type=JSON)
            await stream.append("seed")
        before = counted.requests
        server.inject_error(path, status=status, retry_after=1, method=method)
        started = time.monotonic()
        result = await call(stream)
        waited = time.monotonic() - started
        assert counted.requests - before == 2
        # Retry-After is a floor on the delay, even with a policy whose delays are tiny.
        assert waited >= 1.0
        if op == "read":
            assert result == ["seed"]
        if op == "append":
            assert await stream.read_all() == ["seed", {"appended": True}]
        if op == "create":
            assert result.created is True


async def test_several_transient_failures_in_a_row(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        for status in (500, 502, 503, 504, 429):
            server.inject_error(path, status=status, count=2, method="POST")
            before = counted.requests
            await stream.append(status)
            assert counted.requests - before == 3
        assert await stream.read_all() == [500, 502, 503, 504, 429]


async def test_rate_limited_error_after_exhaustion_carries_retry_after(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    policy = ds.RetryPolicy(max_retries=0, initial_delay=0.01, max_delay=0.05)
    async with counted.session(server.url, policy) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, status=429, retry_after=7, method="HEAD")
        with pytest.raises(ds.RateLimitedError) as info:
            await stream.head()
    assert info.value.retry_after == 7
    assert info.value.status == 429


# -- dropped connections ------------------------------------------------------------


async def test_dropped_connections_on_catch_up_are_recovered(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        await stream.append([1, 2])
        server.inject_error(path, drop_connection=True, count=3, method="GET")
        assert await stream.read_all() == [[1, 2]]


async def test_dropped_connections_on_other_operations_are_recovered(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path)
        server.inject_error(path, drop_connection=True, count=2, method="PUT")
        await stream.create(content_type=JSON)
        server.inject_error(path, drop_connection=True, count=2, method="HEAD")
        assert (await stream.head()).content_type == JSON
        server.inject_error(path, drop_connection=True, count=2, method="DELETE")
        await stream.delete()
        assert await stream.exists() is False


async def test_dropped_connections_on_long_poll_are_recovered(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    async with ds.Session(server.url, retry=FAST) as session:
        reader = session.stream(json_stream.url).read(live="long-poll")
        async with asyncio.timeout(20), Follower(reader) as follower:
            assert (await follower.next_batch()).up_to_date
            server.inject_error(json_stream.url, drop_connection=True, count=3, method="GET")
            await json_stream.append("through")
            assert (await follower.next_batch()).items == ["through"]
            server.inject_error(json_stream.url, status=503, count=3, method="GET")
            await json_stream.append("again")
            await json_stream.close()
            assert await follower.rest() == ["again"]


async def test_delayed_response_is_waited_for(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, delay_ms=300, method="POST")
        await stream.append("slow")
        assert await stream.read_all() == ["slow"]


# -- damaged bodies -----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
async def test_damaged_catch_up_body_is_parse_error_with_offset(
    plain_server: ReferenceServer, counted: Counted, damage: str
) -> None:
    path = f"/t/damaged-catch-up-{damage}"
    async with counted.session(plain_server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        await stream.append({"first": 1})
        resume = (await stream.head()).offset
        # Big enough that the server would compress it if it could.
        big = [{"n": n, "pad": "p" * 50} for n in range(100)]
        # One append of 100 messages: the raw wire form (append() takes one message).
        await stream.append_stream(_once(b"[" + b",".join(_encode(v) for v in big) + b"]"))

        if damage == "truncate":
            plain_server.inject_error(path, truncate_body_bytes=40, method="GET")
        else:
            plain_server.inject_error(path, corrupt_body=True, method="GET")
        before = counted.requests
        with pytest.raises(ds.ParseError) as info:
            await stream.read_all(resume)
        # A damaged body is not retried, and the error says where to read again from.
        assert counted.requests - before == 1
        assert info.value.offset == resume
        assert info.value.url == stream.url

        # The next read works, from the error's offset and from the start.
        assert await stream.read_all(info.value.offset) == big
        assert await stream.read_all() == [{"first": 1}, *big]


async def test_damaged_catch_up_from_start_reports_start_offset(
    plain_server: ReferenceServer,
) -> None:
    path = "/t/damaged-from-start"
    async with ds.Session(plain_server.url, retry=FAST) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        await stream.append({"a": 1})
        plain_server.inject_error(path, truncate_body_bytes=3, method="GET")
        with pytest.raises(ds.ParseError) as info:
            await stream.read_all()
        assert info.value.offset == "-1"
        assert await stream.read_all(info.value.offset) == [{"a": 1}]


async def test_damaged_body_on_shared_server_small_response(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    # Under 1 KiB the server does not compress either, so the shared server serves.
    await json_stream.append({"a": 1})
    server.inject_error(json_stream.url, corrupt_body=True, method="GET")
    with pytest.raises(ds.ParseError) as info:
        await json_stream.read_all()
    assert info.value.offset == "-1"
    assert await json_stream.read_all() == [{"a": 1}]


async def test_damaged_long_poll_body_is_parse_error_and_reader_resumes(
    plain_server: ReferenceServer,
) -> None:
    path = "/t/damaged-long-poll"
    async with ds.Session(plain_server.url, retry=FAST) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        await stream.append("before")
        reader = stream.read(live="long-poll")
        async with asyncio.timeout(20), reader:
            batches = reader.batches()
            caught_up = await anext(batches)
            assert caught_up.items == ["before"]
            plain_server.inject_error(path, truncate_body_bytes=4, method="GET")
            await stream.append({"live": [1, 2, 3]})
            with pytest.raises(ds.ParseError) as info:
                await anext(batches)
            assert info.value.offset == caught_up.offset
            # Iterating the same reader again repeats the read from the same offset.
            assert (await anext(batches)).items == [{"live": [1, 2, 3]}]
        assert await stream.read_all(info.value.offset) == [{"live": [1, 2, 3]}]


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- limits and statuses that are final ---------------------------------------------


@pytest.mark.parametrize("op", list(OPS))
async def test_retry_exhaustion_raises_server_error(
    server: ReferenceServer, counted: Counted, path: str, op: str
) -> None:
    method, call = OPS[op]
    policy = ds.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.01)
    async with counted.session(server.url, policy) as session:
        stream = session.stream(path, content_type=JSON)
        if op != "create":
            await stream.create(content_type=JSON)
        server.inject_error(path, status=503, count=50, method=method)
        before = counted.requests
        with pytest.raises(ds.ServerError) as info:
            await call(stream)
        assert info.value.status == 503
        assert counted.requests - before == 1 + policy.max_retries


async def test_retry_exhaustion_on_network_errors_raises_network_error(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    policy = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    async with counted.session(server.url, policy) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, drop_connection=True, count=50, method="POST")
        with pytest.raises(ds.NetworkError) as info:
            await stream.append("lost")
        assert info.value.__cause__ is not None


async def test_appends_are_not_retried_when_policy_says_so(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    policy = ds.RetryPolicy(retry_appends=False, initial_delay=0.001, max_delay=0.01)
    async with counted.session(server.url, policy) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, status=503, count=5, method="POST")
        before = counted.requests
        with pytest.raises(ds.ServerError):
            await stream.append("once")
        assert counted.requests - before == 1
        # Other operations still retry.
        server.inject_error(path, status=503, count=1, method="HEAD")
        await stream.head()


async def test_live_max_retries_bounds_a_live_reader(
    server: ReferenceServer, counted: Counted, json_stream: ds.Stream
) -> None:
    policy = ds.RetryPolicy(live_max_retries=2, initial_delay=0.001, max_delay=0.01)
    async with counted.session(server.url, policy) as session:
        reader = session.stream(json_stream.url).read(live="long-poll")
        async with asyncio.timeout(20), reader:
            batches = reader.batches()
            assert (await anext(batches)).up_to_date
            server.inject_error(json_stream.url, status=503, count=50, method="GET")
            before = counted.requests
            with pytest.raises(ds.ServerError):
                await anext(batches)
            assert counted.requests - before == 3


async def test_not_found_is_not_retried(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path, content_type=JSON)
        checks: list[tuple[str, Op]] = [
            ("head", _head),
            ("read", _read),
            ("append", _append),
            ("delete", lambda s: s.delete()),
            ("close", lambda s: s.close()),
            ("sse", lambda s: s.read(live="sse").read_all()),
            ("long-poll", lambda s: s.read(live="long-poll").read_all()),
        ]
        for name, call in checks:
            before = counted.requests
            with pytest.raises(ds.StreamNotFoundError):
                await call(stream)
            assert counted.requests - before == 1, name


async def test_gone_is_not_retried(server: ReferenceServer, counted: Counted, path: str) -> None:
    async with counted.session(server.url) as session:
        source = session.stream(path)
        await source.create(content_type=JSON)
        await source.append(1)
        await session.stream(path + "-fork").fork(source, content_type=JSON)
        await source.delete()  # soft-deleted: the fork still holds its data
        checks: list[tuple[str, Op]] = [
            ("head", _head),
            ("read", _read),
            ("append", _append),
            ("delete", lambda s: s.delete()),
            ("long-poll", lambda s: s.read(live="long-poll").read_all()),
        ]
        for name, call in checks:
            before = counted.requests
            with pytest.raises(ds.GoneError):
                await call(source)
            assert counted.requests - before == 1, name


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ds.BadRequestError),
        (401, ds.UnauthorizedError),
        (403, ds.ForbiddenError),
        (404, ds.StreamNotFoundError),
        (405, ds.NotSupportedError),
        (409, ds.ConflictError),
        (410, ds.GoneError),
        (413, ds.PayloadTooLargeError),
        (501, ds.NotSupportedError),
    ],
)
async def test_final_statuses_are_not_retried(
    server: ReferenceServer,
    counted: Counted,
    path: str,
    status: int,
    error: type[ds.ResponseError],
) -> None:
    async with counted.session(server.url) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, status=status, count=5, method="POST")
        before = counted.requests
        with pytest.raises(error) as info:
            await stream.append("x")
        assert counted.requests - before == 1
        assert info.value.status == status
        assert info.value.url == stream.url


@pytest.mark.parametrize("status", [400, 404, 410, 501])
async def test_final_statuses_end_a_live_reader(
    server: ReferenceServer, counted: Counted, json_stream: ds.Stream, status: int
) -> None:
    async with counted.session(server.url) as session:
        modes: tuple[ds.LiveMode, ...] = ("long-poll", "sse")
        for live in modes:
            reader = session.stream(json_stream.url).read(live=live)
            async with asyncio.timeout(10), reader:
                batches = reader.batches()
                assert (await anext(batches)).up_to_date
                server.inject_error(json_stream.url, status=status, count=5, method="GET")
                before = counted.requests
                with pytest.raises(ds.ResponseError) as info:
                    await anext(batches)
                assert info.value.status == status
                assert counted.requests - before == 1
            server.clear_errors()


async def test_error_is_classified_by_status_not_body(server: ReferenceServer, path: str) -> None:
    # The injected error has a text body and no Stream-* headers: status alone decides.
    async with ds.Session(server.url, retry=ds.RetryPolicy(max_retries=0)) as session:
        stream = session.stream(path)
        await stream.create(content_type=JSON)
        server.inject_error(path, status=500, method="GET")
        with pytest.raises(ds.ServerError) as info:
            await stream.read_all()
    assert info.value.status == 500


# -- bodies cut short mid-way ---------------------------------------------------------


async def test_byte_body_cut_mid_way_is_resumed_exactly(
    server: ReferenceServer, session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type="application/octet-stream")
    data = random.Random(path).randbytes(300 * 1024)
    await stream.append(data)
    link = Proxy(server.url, trickle=16 * 1024, cut_after=100_000, cuts=2)
    async with link as url, ds.Session(url, retry=FAST) as via_link:
        body = await via_link.stream(path).read(live=False).body()
    size = len(body)
    assert size == len(data)  # more would mean bytes delivered twice
    assert body == data
    assert link.get_requests == 3


async def test_byte_body_cut_mid_way_while_iterating(
    server: ReferenceServer, session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type="application/octet-stream")
    data = random.Random(path).randbytes(200 * 1024)
    await stream.append(data)
    link = Proxy(server.url, trickle=8 * 1024, cut_after=50_000)
    async with link as url, ds.Session(url, retry=FAST) as via_link:
        pieces = [piece async for piece in via_link.stream(path).read(live=False)]
    assert len(pieces) > 1  # delivered as it arrived, before and after the cut
    body = b"".join(pieces)
    size = len(body)
    assert size == len(data)
    assert body == data


async def test_json_body_cut_mid_way_is_read_again(
    server: ReferenceServer, session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    values = [{"n": n, "pad": "x" * 200} for n in range(500)]
    await stream.append_stream(_once(json.dumps(values).encode()))  # 500 messages
    link = Proxy(server.url, trickle=16 * 1024, cut_after=40_000)
    async with link as url, ds.Session(url, retry=FAST) as via_link:
        assert await via_link.stream(path).read_all() == values
    assert link.get_requests == 2


async def test_long_poll_byte_body_cut_mid_way(
    server: ReferenceServer, session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type="application/octet-stream")
    data = random.Random(path).randbytes(100 * 1024)
    link = Proxy(server.url, trickle=8 * 1024, cut_after=30_000)
    async with link as url, ds.Session(url, retry=FAST) as via_link:
        reader = via_link.stream(path).read(live="long-poll")
        async with asyncio.timeout(20), Follower(reader) as follower:
            assert (await follower.next_batch()).up_to_date
            # The catch-up body was empty and not cut; the long-poll answer will be.
            await stream.append(data)
            await stream.close()
            body = b"".join(await follower.rest())
    size = len(body)
    assert size == len(data)
    assert body == data


async def test_large_append_is_replayed_after_a_transient_failure(
    server: ReferenceServer, counted: Counted, path: str
) -> None:
    data = random.Random(path).randbytes(3 * 1024 * 1024)
    async with counted.session(server.url) as session:
        stream = session.stream(path, content_type="application/octet-stream")
        await stream.create(content_type="application/octet-stream")
        server.inject_error(path, status=503, method="POST")
        before = counted.requests
        await stream.append(data)
        assert counted.requests - before == 2
        async with stream.read(live=False) as reader:
            assert await reader.body() == data
