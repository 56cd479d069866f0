"""A scripted HTTP/1.1 server for malformed-input tests: it answers each request with
whatever :class:`Reply` a function returns, byte for byte, including broken framing.

The reference server only ever sends well-formed responses; the property tests need odd
headers, bodies cut short, garbage, and SSE bodies split at chosen bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = ["Framing", "Reply", "Request", "ScriptedServer"]

Framing = Literal["chunked", "length", "close", "truncated-chunked", "short-length"]
_MAX_HEAD: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """What the client asked for (the query parameters are decoded)."""

    method: str
    path: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, written exactly as given.

    Attributes:
        status: the status code.
        headers: header lines, in order; values are sent as UTF-8.
        chunks: the body, written piece by piece (each piece flushed on its own).
        framing: ``chunked``, ``length`` (Content-Length) or ``close`` (the end of the
            connection ends the body) are valid; ``truncated-chunked`` (no last chunk) and
            ``short-length`` (a Content-Length above the body) cut the body short.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    chunks: tuple[bytes, ...] = ()
    framing: Framing = "chunked"

    @property
    def body(self) -> bytes:
        """The whole body."""
        return b"".join(self.chunks)


class ScriptedServer:
    """Serves ``script(request)`` for every request, on a free port of 127.0.0.1."""

    def __init__(self, script: Callable[[Request], Reply]) -> None:
        self.script = script
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                request = _parse_request(head)
                self.requests.append(request)
                keep_alive = await self._write(writer, self.script(request), request)
                if not keep_alive:
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                writer.transport.close()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _write(self, writer: asyncio.StreamWriter, reply: Reply, request: Request) -> bool:
        """Write one reply; return whether the connection stays open."""
        lines = [f"HTTP/1.1 {reply.status} Scripted".encode()]
        lines += [f"{name}: {value}".encode() for name, value in reply.headers]
        bodiless = request.method == "HEAD" or reply.status in (204, 304)
        framing = reply.framing
        if bodiless:
            framing = "length"
        elif framing in ("chunked", "truncated-chunked"):
            lines.append(b"Transfer-Encoding: chunked")
        elif framing == "length":
            lines.append(f"Content-Length: {len(reply.body)}".encode())
        elif framing == "short-length":
            lines.append(f"Content-Length: {len(reply.body) + 10}".encode())
        else:
            lines.append(b"Connection: close")
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        await writer.drain()
        if bodiless:
            return True
        for chunk in reply.chunks:
            if not chunk:
                continue
            if framing in ("chunked", "truncated-chunked"):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)  # one piece at a time, as far as the OS allows
        if framing == "chunked":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        return framing == "length"


def _parse_request(head: bytes) -> Request:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = line.partition(" ")
    target = rest.rsplit(" ", 1)[0]
    parts = urlsplit(target)
    params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return Request(method, parts.path, params)
