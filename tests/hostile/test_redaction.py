"""Secrets in URLs never reach the library's error messages or log lines (issue 10, item 8).

A session ``params`` token (SECRET1) and a userinfo password in the base URL (SECRET2) go
to the server, as they must, but not into the text of any exception the library raises
nor into any record of the ``durable_streams`` logger, at DEBUG too.

What is asserted: every ``DurableStreamsError`` in the exception's chain (``__cause__``
and ``__context__``, followed to the end) has neither secret in ``str()``, ``repr()``,
``args`` or ``url``; every ``durable_streams`` log record has neither in its message.
Exceptions of aiohttp's own in the chain (the ``__cause__`` of a transport error) are not
the library's text and are not checked: aiohttp may quote the URL it was given. A
``RedirectError.location`` is the server's ``Location`` header kept whole on purpose (it
may echo the query); only its message is checked.
"""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

import durable_streams as ds
from tests.hostile.servers import (
    JSON,
    OFFSET,
    Handler,
    HostileServer,
    drop,
    drop_mid_body,
    respond,
)

SECRET1 = "SECRET1tokenvalue"
SECRET2 = "SECRET2password"
SECRETS = (SECRET1, SECRET2, base64.b64encode(f"user:{SECRET2}".encode()).decode())
PARAMS = {"token": SECRET1}
READ_HEADERS = {"Content-Type": JSON, "Stream-Next-Offset": OFFSET, "Stream-Up-To-Date": "true"}

Op = Callable[[ds.Stream], Awaitable[Any]]


async def _head(stream: ds.Stream) -> Any:
    return await stream.head()


async def _create(stream: ds.Stream) -> Any:
    return await stream.create(content_type=JSON)


async def _append(stream: ds.Stream) -> Any:
    return await stream.append({"n": 1})


async def _delete(stream: ds.Stream) -> Any:
    return await stream.delete()


async def _read_all(stream: ds.Stream) -> Any:
    return await stream.read_all()


OPS: dict[str, Op] = {
    "head": _head,
    "create": _create,
    "append": _append,
    "delete": _delete,
    "read_all": _read_all,
}


def _echo_redirect(code: int) -> Handler:
    """A redirect to https on the same path and query, as a load balancer sends."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        location = f"https://{request.host}{request.raw_path}"
        return web.Response(status=code, headers={"Location": location})

    return handle


def _corrupt_gzip() -> Handler:
    return respond(
        200, headers={**READ_HEADERS, "Content-Encoding": "gzip"}, body=b"\x1f\x8b\x08junk"
    )


def _too_long_header() -> Handler:
    return respond(200, headers={**READ_HEADERS, "X-Padding": "p" * 70_000}, body=b"[]")


# name: (handler, the error expected)
FAULTS: dict[str, tuple[Callable[[], Handler], type[ds.DurableStreamsError]]] = {
    "500": (lambda: respond(500, body=b"oops"), ds.ServerError),
    "drop": (drop, ds.NetworkError),
    "bad-json": (lambda: respond(200, headers=READ_HEADERS, body=b"{not json"), ds.ParseError),
    "corrupt-gzip": (_corrupt_gzip, ds.DurableStreamsError),
    "cut-body": (lambda: drop_mid_body(READ_HEADERS), ds.NetworkError),
    "redirect": (lambda: _echo_redirect(301), ds.RedirectError),
    "header-too-long": (_too_long_header, ds.DurableStreamsError),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _assert_clean_exception(exc: BaseException) -> None:
    ours = [e for e in _chain(exc) if isinstance(e, ds.DurableStreamsError)]
    assert ours, f"not an error of the tree: {exc!r}"
    for error in ours:
        texts = [str(error), repr(error), *map(str, error.args), str(error.url)]
        for secret in SECRETS:
            for text in texts:
                assert secret not in text, f"{type(error).__name__} leaks a secret: {text}"


def _assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        if record.name != "durable_streams" and not record.name.startswith("durable_streams."):
            continue
        message = record.getMessage()
        for secret in SECRETS:
            assert secret not in message, f"log record leaks a secret: {message}"
        if record.exc_info is not None and record.exc_info[1] is not None:
            _assert_clean_exception(record.exc_info[1])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="durable_streams")
    return caplog


def _session(port: int, budget: ds.RetryPolicy) -> ds.Session:
    return ds.Session(f"http://user:{SECRET2}@127.0.0.1:{port}", params=PARAMS, retry=budget)


# A fault provokes an error only where the answer matters: a HEAD has no body, and a
# write's answer body is not JSON.
CASES = [
    *((op, fault) for op in OPS for fault in ("500", "drop", "redirect", "header-too-long")),
    *((op, "cut-body") for op in OPS if op != "head"),
    ("read_all", "bad-json"),
    ("read_all", "corrupt-gzip"),
]


@pytest.mark.parametrize(("op_name", "fault"), CASES)
async def test_server_faults_leak_no_secret(
    hostile: HostileServer,
    budget: ds.RetryPolicy,
    debug_logs: pytest.LogCaptureFixture,
    op_name: str,
    fault: str,
) -> None:
    make, expected = FAULTS[fault]
    hostile.handler = make()
    async with _session(hostile.port, budget) as session:
        with pytest.raises(expected) as caught:
            await OPS[op_name](session.stream("/s", content_type=JSON))
    _assert_clean_exception(caught.value)
    _assert_clean_logs(debug_logs)
    # The secrets did go where they belong, so the test means something.
    first = hostile.requests[0]
    assert ("token", SECRET1) in first.query
    assert first.headers.get("authorization") == f"Basic {SECRETS[2]}"


async def test_retries_are_logged_without_secrets(
    hostile: HostileServer, budget: ds.RetryPolicy, debug_logs: pytest.LogCaptureFixture
) -> None:
    hostile.handler = respond(503)
    async with _session(hostile.port, budget) as session:
        with pytest.raises(ds.ServerError) as caught:
            await session.stream("/s").head()
    _assert_clean_exception(caught.value)
    ours = [r for r in debug_logs.records if r.name.startswith("durable_streams")]
    assert ours, "a retried request logs at DEBUG"
    _assert_clean_logs(debug_logs)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so no one else takes it),
    never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("op_name", OPS)
async def test_connection_refused_leaks_no_secret(
    refused_port: int,
    budget: ds.RetryPolicy,
    debug_logs: pytest.LogCaptureFixture,
    op_name: str,
) -> None:
    async with _session(refused_port, budget) as session:
        with pytest.raises(ds.NetworkError) as caught:
            await OPS[op_name](session.stream("/s", content_type=JSON))
    _assert_clean_exception(caught.value)
    _assert_clean_logs(debug_logs)
    assert session.statistics().requests == 3
