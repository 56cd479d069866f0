"""Small hostile HTTP servers: they record every request and misbehave on purpose.

A :class:`HostileServer` is a bare ``aiohttp.web`` server (no router, so no path is
normalised before the handler sees it) on an ephemeral port. Every request is recorded
*before* its handler runs, so once the client has an answer (or an error) the record is
already there: tests read ``server.requests`` without waiting. Handlers come from the
factories below, one per misbehaviour, and are chosen per raw path with ``routes`` or for
everything with ``handler``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = [
    "BYTES",
    "JSON",
    "OFFSET",
    "Handler",
    "HostileServer",
    "Seen",
    "bomb",
    "by_live",
    "drop",
    "drop_mid_body",
    "endless",
    "gzip_bomb",
    "gzip_members",
    "redirect",
    "respond",
    "sse_endless_event",
    "sse_endless_line",
    "stub",
]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

JSON = "application/json"
BYTES = "application/octet-stream"
# The tail offset every well-behaved answer of these servers reports.
OFFSET = "0000000000000001_0000000000000007"

_MiB = 1024 * 1024
# Request lines and headers of any length reach the handler: a long stream name must be
# recorded, not refused by the server's own parser.
_SERVER_LIMIT = 4 * _MiB


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the server received it.

    Attributes:
        method: the request method.
        target: the request target exactly as sent (raw path and raw query).
        raw_path: the target up to ``?``: still percent-encoded.
        query: the decoded query pairs, in order.
        headers: the request headers, names lower case (the first of a repeat).
        body: the whole request body.
    """

    method: str
    target: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes


class HostileServer:
    """An HTTP server on ``host`` (an ephemeral port) that records every request.

    Use as ``async with HostileServer(handler) as server:``. ``routes`` maps a raw path
    (as in :attr:`Seen.raw_path`) to its handler; every other path gets ``handler``.
    Handlers that would wait forever wait on :attr:`stopping`, which is set when the
    server stops.
    """

    def __init__(self, handler: Handler | None = None, *, host: str = "127.0.0.1") -> None:
        self.handler: Handler = handler or stub()
        self.routes: dict[str, Handler] = {}
        self.host = host
        self.requests: list[Seen] = []
        self.stopping = asyncio.Event()
        self._port: int | None = None
        self._runner: web.ServerRunner | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (once started)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's origin, ``http://host:port`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def seen(self, *, method: str | None = None, raw_path: str | None = None) -> list[Seen]:
        """The requests received, optionally only those of one method or raw path."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (raw_path is None or r.raw_path == raw_path)
        ]

    def clear(self) -> None:
        """Forget the requests received so far."""
        self.requests.clear()

    async def start(self) -> None:
        """Listen on an ephemeral port of :attr:`host`."""
        server = web.Server(
            self._dispatch, max_line_size=_SERVER_LIMIT, max_field_size=_SERVER_LIMIT
        )
        # Clients close their connections before the server stops, and endless handlers
        # end when a write fails; the timeout only bounds a handler stuck in a full send
        # buffer, which stop() then cancels.
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        assert isinstance(port, int)
        self._port = port

    async def stop(self) -> None:
        """Wake the waiting handlers, close every connection and stop listening."""
        self.stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HostileServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        target = request.raw_path
        raw_path, _, raw_query = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), value)
        self.requests.append(
            Seen(
                method=request.method,
                target=target,
                raw_path=raw_path,
                query=tuple(parse_qsl(raw_query, keep_blank_values=True)),
                headers=headers,
                body=body,
            )
        )
        _current.set(self)  # this request's task only: its handler finds its server
        handler = self.routes.get(raw_path, self.handler)
        return await handler(request)


_current: contextvars.ContextVar[HostileServer] = contextvars.ContextVar("hostile_server")


def _stopping() -> asyncio.Event:
    return _current.get().stopping


# -- well-behaved answers ----------------------------------------------------------------


def respond(
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    reason: str | None = None,
) -> Handler:
    """Always the same answer."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=status, headers=dict(headers or {}), body=body, reason=reason)

    return handle


def stub(content_type: str = JSON, *, messages: bytes | None = None) -> Handler:
    """A correct, minimal Durable Streams server for one stream at every path.

    Every answer carries the headers its kind must carry. A read returns ``messages``
    (by default ``[{"ok":true}]`` on JSON streams, ``b"ok"`` on others) and is up to
    date; a live read (``live=`` in the query) is refused with 400, so a request that
    should never have gone live fails at once instead of hanging.
    """
    body = (
        messages if messages is not None else (b'[{"ok":true}]' if content_type == JSON else b"ok")
    )
    at_tail = {"Stream-Next-Offset": OFFSET}

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        if method == "PUT":
            return web.Response(status=201, headers={"Content-Type": content_type, **at_tail})
        if method == "POST":
            return _answer_post(request, at_tail)
        if method == "HEAD":
            return web.Response(headers={"Content-Type": content_type, **at_tail})
        if method == "DELETE":
            return web.Response(status=204)
        if method == "GET" and "live" not in request.query:
            hdrs = {"Content-Type": content_type, "Stream-Up-To-Date": "true", **at_tail}
            return web.Response(headers=hdrs, body=body)
        return web.Response(status=400, text="this server never answers live reads")

    return handle


def _answer_post(request: web.BaseRequest, at_tail: Mapping[str, str]) -> web.Response:
    hdrs = dict(at_tail)
    if request.headers.get("Stream-Closed", "").lower() == "true":
        hdrs["Stream-Closed"] = "true"
    producer = request.headers.get("Producer-Id")
    if producer is None:
        return web.Response(status=204, headers=hdrs)
    hdrs["Producer-Epoch"] = request.headers.get("Producer-Epoch", "0")
    hdrs["Producer-Seq"] = request.headers.get("Producer-Seq", "0")
    return web.Response(status=200, headers=hdrs)


def by_live(catch_up: Handler, live: Handler) -> Handler:
    """``live`` for requests with a ``live=`` query parameter, ``catch_up`` for the rest."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return await (live if "live" in request.query else catch_up)(request)

    return handle


# -- redirects ---------------------------------------------------------------------------


def redirect(status: int, location: str) -> Handler:
    """A redirect of ``status`` to ``location`` (as given: relative or absolute)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return handle


# -- broken connections ------------------------------------------------------------------


def drop() -> Handler:
    """Read the request, then drop the connection without a byte of answer."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        transport.abort()
        return web.Response()

    return handle


def drop_mid_body(
    headers: Mapping[str, str], *, declared: int = 4096, sent: bytes = b'[{"cut":'
) -> Handler:
    """Send the status and headers, ``sent`` of a ``declared``-byte body, then hang up."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**headers, "Content-Length": str(declared)},
        )
        await response.prepare(request)
        await response.write(sent)
        transport = request.transport
        assert transport is not None
        transport.close()  # close, not abort: the partial body goes out first
        return response

    return handle


# -- endless and oversized bodies --------------------------------------------------------


def endless(
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    prefix: bytes = b"",
    piece: bytes = b" " * (64 * 1024),
) -> Handler:
    """A chunked body that never ends: ``prefix``, then ``piece`` until the client leaves."""
    return _pour(status, headers, prefix, piece)


def sse_endless_line(headers: Mapping[str, str] | None = None) -> Handler:
    """An event stream whose first line never ends: ``data: xxxx...`` without a newline."""
    return _pour(200, {**_SSE, **(headers or {})}, b"data: ", b"x" * (64 * 1024))


def sse_endless_event(headers: Mapping[str, str] | None = None, *, line: int = 1024) -> Handler:
    """An event stream of one event that never ends: short ``data:`` lines, no blank line."""
    data_line = b"data: " + b"y" * (line - len(b"data: \n")) + b"\n"
    return _pour(200, {**_SSE, **(headers or {})}, b"event: data\n", data_line * 64)


_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _pour(status: int, headers: Mapping[str, str] | None, prefix: bytes, piece: bytes) -> Handler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=dict(headers or {}))
        response.enable_chunked_encoding()
        stopping = _stopping()
        try:
            await response.prepare(request)
            if prefix:
                await response.write(prefix)
            while not stopping.is_set():
                await response.write(piece)
        except ConnectionError:
            pass  # the client gave up: what it had to do
        return response

    return handle


def gzip_bomb(
    inflated: int,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Handler:
    """A small gzip body (``Content-Encoding: gzip``) that inflates to ``inflated`` zeros."""
    body = bomb(inflated)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        hdrs = {**(headers or {}), "Content-Encoding": "gzip"}
        return web.Response(status=status, headers=hdrs, body=body)

    return handle


def gzip_members(
    *parts: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> Handler:
    """One body of several gzip members, ``gzip(parts[0]) + gzip(parts[1]) + ...``."""
    body = b"".join(_gzip(part) for part in parts)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        hdrs = {**(headers or {}), "Content-Encoding": "gzip"}
        return web.Response(status=status, headers=hdrs, body=body)

    return handle


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@functools.cache
def bomb(inflated: int) -> bytes:
    """One valid gzip member of ``inflated`` zero bytes (a multiple of 1 MiB), built fast.

    Compressing a GiB of zeros takes seconds; after a full flush the compressor's state
    is the same again, so one compressed MiB is repeated and the trailer computed.
    """
    if inflated <= 0 or inflated % _MiB:
        raise ValueError(f"inflated must be a positive multiple of 1 MiB, got {inflated}")
    zeros = bytes(_MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "a full flush must leave the compressor as it started"
    end = compressor.flush()
    crc = 0
    for _ in range(inflated // _MiB):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return _GZIP_HEADER + block * (inflated // _MiB) + end + trailer
