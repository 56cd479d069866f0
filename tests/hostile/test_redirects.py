"""Redirects (issue 10, item 1): writes never follow one; reads follow only a few
same-origin 307/308s; and a wrong 2xx is a typed error, never a success.

Following a redirect, an HTTP client replays a POST as a GET on 301/302/303, and the GET's
200 looks like success while nothing was stored. Every redirect target here answers
correctly, so a client that follows where it must not reports success and fails the test;
every test also checks on the server that nothing was replayed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import durable_streams as ds
from tests.hostile.servers import BYTES, JSON, OFFSET, HostileServer, redirect, respond

FAST = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
CODES = (300, 301, 302, 303, 305, 307, 308)
FOLLOWED = (307, 308)
MAX_HOPS = 5

Op = Callable[[ds.Stream], Awaitable[Any]]


async def _create(stream: ds.Stream) -> Any:
    return await stream.create(content_type=JSON)


async def _append(stream: ds.Stream) -> Any:
    return await stream.append({"n": 1} if stream.content_type == JSON else b"raw")


async def _close(stream: ds.Stream) -> Any:
    return await stream.close()


async def _close_final(stream: ds.Stream) -> Any:
    return await stream.close(final={"last": True})


async def _delete(stream: ds.Stream) -> Any:
    return await stream.delete()


async def _produce(stream: ds.Stream) -> Any:
    producer = stream.producer("p", linger=0.001)
    try:
        receipt = await producer.append({"n": 1})
        return await receipt
    finally:
        # The batch's failure is raised again on close; the receipt is what is checked.
        with contextlib.suppress(ds.DurableStreamsError):
            await producer.aclose()


async def _head(stream: ds.Stream) -> Any:
    return await stream.head()


async def _exists(stream: ds.Stream) -> Any:
    return await stream.exists()


async def _read_all(stream: ds.Stream) -> Any:
    return await stream.read_all()


# name: (method, the handle's content type, operation)
WRITES: dict[str, tuple[str, str, Op]] = {
    "create": ("PUT", JSON, _create),
    "append-json": ("POST", JSON, _append),
    "append-bytes": ("POST", BYTES, _append),
    "close": ("POST", JSON, _close),
    "close-final": ("POST", JSON, _close_final),
    "delete": ("DELETE", JSON, _delete),
    "producer": ("POST", JSON, _produce),
}
READS: dict[str, tuple[str, str, Op]] = {
    "head": ("HEAD", JSON, _head),
    "exists": ("HEAD", JSON, _exists),
    "read_all": ("GET", JSON, _read_all),
}
# What each read gives when it reaches the stub (servers.stub) behind the redirects.
READ_RESULTS: dict[str, Callable[[Any], bool]] = {
    "head": lambda info: isinstance(info, ds.StreamInfo) and info.offset == OFFSET,
    "exists": lambda found: found is True,
    "read_all": lambda items: items == [{"ok": True}],
}


def _wire(server: HostileServer) -> list[tuple[str, str]]:
    return [(r.method, r.raw_path) for r in server.requests]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("op_name", WRITES)
async def test_a_write_never_follows_a_redirect(
    hostile: HostileServer, op_name: str, code: int
) -> None:
    method, content_type, op = WRITES[op_name]
    location = f"{hostile.url}/target"
    hostile.routes["/s"] = redirect(code, location)
    async with ds.Session(hostile.url, retry=FAST) as session:
        stream = session.stream("/s", content_type=content_type)
        with pytest.raises(ds.RedirectError) as caught:
            await op(stream)
    assert isinstance(caught.value, ds.ResponseError)
    assert caught.value.status == code
    assert caught.value.location == location
    # One request, the write itself: not retried, not replayed as a GET, not followed.
    assert _wire(hostile) == [(method, "/s")]


@pytest.mark.parametrize("code", [c for c in CODES if c not in FOLLOWED])
@pytest.mark.parametrize("op_name", READS)
async def test_a_read_does_not_follow_other_redirects(
    hostile: HostileServer, op_name: str, code: int
) -> None:
    method, content_type, op = READS[op_name]
    location = f"{hostile.url}/target"
    hostile.routes["/s"] = redirect(code, location)
    async with ds.Session(hostile.url, retry=FAST) as session:
        with pytest.raises(ds.RedirectError) as caught:
            await op(session.stream("/s", content_type=content_type))
    assert caught.value.status == code
    assert caught.value.location == location
    assert _wire(hostile) == [(method, "/s")]


@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
@pytest.mark.parametrize("code", FOLLOWED)
@pytest.mark.parametrize("op_name", READS)
async def test_a_read_follows_a_same_origin_307_or_308(
    hostile: HostileServer, op_name: str, code: int, *, relative: bool
) -> None:
    method, content_type, op = READS[op_name]
    hostile.routes["/s"] = redirect(code, "/target" if relative else f"{hostile.url}/target")
    async with ds.Session(hostile.url, headers={"Authorization": "Bearer t"}, retry=FAST) as s:
        result = await op(s.stream("/s", content_type=content_type))
    assert READ_RESULTS[op_name](result), result
    assert _wire(hostile) == [(method, "/s"), (method, "/target")]
    followed = hostile.requests[1]
    # Same origin: the credentials go along, and a read keeps its offset.
    assert followed.headers.get("authorization") == "Bearer t"
    if method == "GET":
        assert ("offset", "-1") in followed.query


def _chain(server: HostileServer, hops: int, code: int) -> None:
    for hop in range(hops):
        server.routes[f"/hop/{hop}"] = redirect(code, f"/hop/{hop + 1}")


@pytest.mark.parametrize("code", FOLLOWED)
@pytest.mark.parametrize("op_name", READS)
async def test_a_read_follows_five_hops(hostile: HostileServer, op_name: str, code: int) -> None:
    method, content_type, op = READS[op_name]
    _chain(hostile, MAX_HOPS, code)
    async with ds.Session(hostile.url, retry=FAST) as session:
        result = await op(session.stream("/hop/0", content_type=content_type))
    assert READ_RESULTS[op_name](result), result
    assert _wire(hostile) == [(method, f"/hop/{hop}") for hop in range(MAX_HOPS + 1)]


@pytest.mark.parametrize("code", FOLLOWED)
@pytest.mark.parametrize("op_name", READS)
async def test_a_sixth_hop_is_refused(hostile: HostileServer, op_name: str, code: int) -> None:
    method, content_type, op = READS[op_name]
    _chain(hostile, MAX_HOPS + 1, code)
    async with ds.Session(hostile.url, retry=FAST) as session:
        with pytest.raises(ds.RedirectError) as caught:
            await op(session.stream("/hop/0", content_type=content_type))
    assert caught.value.status == code
    assert caught.value.location == f"/hop/{MAX_HOPS + 1}"
    # The original request and five followed hops; the sixth target is never asked.
    assert _wire(hostile) == [(method, f"/hop/{hop}") for hop in range(MAX_HOPS + 1)]


@pytest.mark.parametrize("code", FOLLOWED)
@pytest.mark.parametrize("op_name", READS)
@pytest.mark.parametrize("where", ["other-host", "https", "other-port"])
async def test_a_read_never_follows_a_redirect_to_another_origin(
    hostile: HostileServer, capture: HostileServer, op_name: str, code: int, where: str
) -> None:
    method, content_type, op = READS[op_name]
    location = {
        "other-host": f"{capture.url}/target",
        # An http->https redirect at a load balancer: another origin too.
        "https": f"https://127.0.0.1:{hostile.port}/target",
        "other-port": f"http://127.0.0.1:{capture.port}/target",
    }[where]
    hostile.routes["/s"] = redirect(code, location)
    async with ds.Session(hostile.url, headers={"Authorization": "Bearer t"}, retry=FAST) as s:
        with pytest.raises(ds.RedirectError) as caught:
            await op(s.stream("/s", content_type=content_type))
    assert caught.value.status == code
    assert caught.value.location == location
    assert _wire(hostile) == [(method, "/s")]
    assert capture.requests == []


async def test_a_redirect_error_keeps_a_relative_location_as_sent(
    hostile: HostileServer,
) -> None:
    hostile.routes["/s"] = redirect(308, "/moved/here")
    async with ds.Session(hostile.url, retry=FAST) as session:
        with pytest.raises(ds.RedirectError) as caught:
            await session.stream("/s", content_type=JSON).append({"n": 1})
    assert caught.value.location == "/moved/here"
    assert _wire(hostile) == [("POST", "/s")]


async def test_a_redirect_without_location_is_a_redirect_error(hostile: HostileServer) -> None:
    hostile.routes["/s"] = respond(307)
    async with ds.Session(hostile.url, retry=FAST) as session:
        with pytest.raises(ds.RedirectError) as caught:
            await session.stream("/s", content_type=JSON).read_all()
    assert caught.value.status == 307
    assert caught.value.location is None
    assert _wire(hostile) == [("GET", "/s")]


# -- a wrong 2xx is never success ----------------------------------------------------------

_AT_TAIL = {"Stream-Next-Offset": OFFSET}
_NEXT = "stream-next-offset"
_CLOSED = "stream-closed"

# name: (operation, handle's content type, status, answer headers, missing header)
WRONG_ANSWERS: dict[str, tuple[Op, str, int, dict[str, str], str]] = {
    "append-json-200": (_append, JSON, 200, {}, _NEXT),
    "append-json-204": (_append, JSON, 204, {}, _NEXT),
    "append-bytes-200": (_append, BYTES, 200, {}, _NEXT),
    "append-looks-like-a-read": (
        _append,
        JSON,
        200,
        {"Content-Type": JSON, "Stream-Up-To-Date": "true"},
        _NEXT,
    ),
    "close-200": (_close, JSON, 200, _AT_TAIL, _CLOSED),
    "close-204": (_close, JSON, 204, _AT_TAIL, _CLOSED),
    "close-final-200": (_close_final, JSON, 200, _AT_TAIL, _CLOSED),
    "close-final-204": (_close_final, JSON, 204, _AT_TAIL, _CLOSED),
    "create-201": (_create, JSON, 201, {"Content-Type": JSON}, _NEXT),
    "create-200": (_create, JSON, 200, {"Content-Type": JSON}, _NEXT),
    "head-200": (_head, JSON, 200, {"Content-Type": JSON}, _NEXT),
    "read-200": (_read_all, JSON, 200, {"Content-Type": JSON, "Stream-Up-To-Date": "true"}, _NEXT),
    "producer-200": (_produce, JSON, 200, {"Producer-Epoch": "0", "Producer-Seq": "0"}, _NEXT),
}


@pytest.mark.parametrize("case", WRONG_ANSWERS)
async def test_a_success_status_without_its_headers_is_a_missing_header_error(
    hostile: HostileServer, case: str
) -> None:
    op, content_type, status, headers, missing = WRONG_ANSWERS[case]
    body = b"[]" if status == 200 else b""
    hostile.routes["/s"] = respond(status, headers=headers, body=body)
    async with ds.Session(hostile.url, retry=FAST) as session:
        with pytest.raises(ds.MissingHeaderError) as caught:
            await op(session.stream("/s", content_type=content_type))
    assert isinstance(caught.value, ds.ParseError)
    assert caught.value.header == missing
