"""A borrowed ``aiohttp.ClientSession`` cannot change the library's behaviour (issue 10,
item 7), and every exception that reaches the user is in the tree.

The borrowed client's defaults (``raise_for_status``, ``auto_decompress``, middlewares,
``base_url``) would each turn a status into the wrong error, decode twice, multiply
requests, or address another URL.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

import durable_streams as ds
from tests.hostile.servers import BYTES, JSON, OFFSET, HostileServer, respond

FAST = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
READ_HEADERS = {"Content-Type": JSON, "Stream-Next-Offset": OFFSET, "Stream-Up-To-Date": "true"}
HAS_MIDDLEWARES = tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) >= (3, 12)


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.fixture
async def strict_client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that raises on every status >= 400 (and decompresses, its default)."""
    async with aiohttp.ClientSession(raise_for_status=True) as client:
        yield client


async def test_a_404_on_head_is_stream_not_found_at_once(
    hostile: HostileServer, strict_client: aiohttp.ClientSession
) -> None:
    hostile.routes["/s"] = respond(404)
    async with ds.Session(hostile.url, client_session=strict_client, retry=FAST) as session:
        with pytest.raises(ds.StreamNotFoundError):
            await session.stream("/s").head()
        assert await session.stream("/s").exists() is False
    # Not taken for a network error and retried: one request each.
    assert [(r.method, r.raw_path) for r in hostile.requests] == [("HEAD", "/s")] * 2


async def test_a_409_stays_a_conflict(
    hostile: HostileServer, strict_client: aiohttp.ClientSession
) -> None:
    hostile.routes["/s"] = respond(409)
    async with ds.Session(hostile.url, client_session=strict_client, retry=FAST) as session:
        with pytest.raises(ds.ConflictError):
            await session.stream("/s", content_type=JSON).append({"n": 1})
        with pytest.raises(ds.StreamExistsError):
            await session.stream("/s").create(content_type=JSON)
    # Not retried: one request each (and the HEAD a refused create makes to say why).
    assert [r.method for r in hostile.requests] == ["POST", "PUT", "HEAD"]


async def test_a_503_is_a_server_error_after_the_policy_s_retries(
    hostile: HostileServer, strict_client: aiohttp.ClientSession
) -> None:
    hostile.routes["/s"] = respond(503)
    async with ds.Session(hostile.url, client_session=strict_client, retry=FAST) as session:
        with pytest.raises(ds.ServerError):
            await session.stream("/s").head()
    assert len(hostile.requests) == 3


async def test_a_decompressing_client_decodes_gzip_exactly_once(
    hostile: HostileServer, strict_client: aiohttp.ClientSession
) -> None:
    # The byte stream's content is itself gzip: decoding twice would unwrap it.
    inner = _gzip(b"payload")
    byte_headers = {**READ_HEADERS, "Content-Type": BYTES, "Content-Encoding": "gzip"}
    hostile.routes["/bytes"] = respond(200, headers=byte_headers, body=_gzip(inner))
    json_headers = {**READ_HEADERS, "Content-Encoding": "gzip"}
    hostile.routes["/json"] = respond(200, headers=json_headers, body=_gzip(b'[{"z":1}]'))
    async with ds.Session(hostile.url, client_session=strict_client, retry=FAST) as session:
        assert await session.stream("/bytes").read(live=False).body() == inner
        assert await session.stream("/json").read_all() == [{"z": 1}]


@pytest.mark.skipif(not HAS_MIDDLEWARES, reason="aiohttp < 3.12 has no client middlewares")
async def test_a_retrying_middleware_does_not_change_request_counts(
    hostile: HostileServer,
) -> None:
    async def retry_everything(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        response = await handler(request)
        for _ in range(3):
            if response.status < 400:
                break
            response.release()
            response = await handler(request)
        return response

    hostile.routes["/busy"] = respond(503)
    hostile.routes["/gone"] = respond(404)
    async with (
        aiohttp.ClientSession(middlewares=(retry_everything,)) as client,
        ds.Session(hostile.url, client_session=client, retry=FAST) as session,
    ):
        with pytest.raises(ds.ServerError):
            await session.stream("/busy").head()
        assert len(hostile.seen(raw_path="/busy")) == 3
        with pytest.raises(ds.StreamNotFoundError):
            await session.stream("/gone").head()
        assert len(hostile.seen(raw_path="/gone")) == 1
        assert session.statistics().requests == 4


async def test_a_closed_borrowed_session_is_resource_closed(hostile: HostileServer) -> None:
    client = aiohttp.ClientSession()
    await client.close()
    with pytest.raises(ds.ResourceClosedError):
        # Refused at construction or at first use: either way, in the tree.
        async with ds.Session(hostile.url, client_session=client, retry=FAST) as session:
            await session.stream("/s").head()
    assert hostile.requests == []


async def test_a_borrowed_session_with_a_base_url_is_refused(hostile: HostileServer) -> None:
    async with aiohttp.ClientSession(base_url=hostile.url) as client:
        with pytest.raises(ds.InvalidArgumentError):
            ds.Session(hostile.url, client_session=client)
    assert hostile.requests == []


@pytest.mark.parametrize(
    "data",
    [chr(0xD800), f"ok{chr(0xDFFF)}ok", chr(0xDC80)],
    ids=["high-surrogate", "low-surrogate-inside", "low-surrogate"],
)
@pytest.mark.parametrize("known", [True, False], ids=["typed-handle", "untyped-handle"])
async def test_a_lone_surrogate_on_a_byte_stream_is_an_invalid_argument(
    hostile: HostileServer, data: str, *, known: bool
) -> None:
    hostile.handler = respond(
        200, headers={"Content-Type": BYTES, "Stream-Next-Offset": OFFSET}, body=b""
    )
    async with ds.Session(hostile.url, retry=FAST) as session:
        stream = session.stream("/s", content_type=BYTES if known else None)
        with pytest.raises(ds.InvalidArgumentError):
            await stream.append(data)
    # At most the HEAD that learns the content type; never the append.
    methods = [r.method for r in hostile.requests]
    assert methods == [] if known else methods in ([], ["HEAD"])
