"""The HTTP seam: the only module that imports aiohttp.

It sends one request (:meth:`Transport.send`), or one request with retries and backoff
(:meth:`Transport.request`), and turns every aiohttp exception into one of ours, keeping
the original as ``__cause__``. It never interprets a status beyond "transient or not":
classification is :mod:`durable_streams._protocol.errors`' job.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn

import aiohttp

from ._config import RetryPolicy, Timeouts
from ._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    NetworkError,
    RequestTimeoutError,
    ResourceClosedError,
    TransportError,
)
from ._protocol.errors import is_retryable_status, retry_after
from ._protocol.headers import lower_keys as _lower

log = logging.getLogger("durable_streams")

Body = bytes | AsyncIterable[bytes] | None
Prepared = tuple[dict[str, str], list[tuple[str, str]]]
Prepare = Callable[[], Awaitable[Prepared]]


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, lower-cased headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class BodyStream:
    """An open response whose body is read piece by piece (an SSE connection).

    ``close()`` is synchronous so that it can run from ``__del__`` and ``finally`` blocks
    without awaiting; it drops the connection rather than returning it to the pool.
    """

    __slots__ = ("_decoder", "_response", "headers", "status", "url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response: aiohttp.ClientResponse | None = response
        self.status = response.status
        self.headers = _lower(response.headers)
        self.url = url
        # These have no body whatever their Content-Encoding says.
        bodyless = response.method == "HEAD" or response.status in (204, 304)
        self._decoder = _Decoder(self.headers.get("content-encoding"), url, bodyless=bodyless)

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at the end."""
        while self._response is not None:
            try:
                raw = await self._response.content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                _raise_transport(exc, self.url)
            if not raw:
                return self._decoder.finish()
            data = self._decoder.feed(raw)
            if data:  # a little compressed input may decode to nothing yet
                return data
        return b""

    async def read_all(self) -> bytes:
        """The rest of the body."""
        if self._response is None:
            return b""
        try:
            raw = await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            _raise_transport(exc, self.url)
        return self._decoder.feed(raw) + self._decoder.finish()

    def close(self) -> None:
        """Drop the connection. Safe to call more than once."""
        response, self._response = self._response, None
        if response is not None:
            response.close()


class Transport:
    """Owns, or borrows, one ``aiohttp.ClientSession``.

    The client session is created lazily inside the running loop, on first use, so the
    constructor does no I/O and needs no loop.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        client_session: aiohttp.ClientSession | None = None,
        max_connections: int = 4096,
    ) -> None:
        self.timeouts = timeouts
        self.retry = retry
        self._client = client_session
        self._owns = client_session is None
        self._max_connections = max_connections
        self._closed = False
        self._timeout = aiohttp.ClientTimeout(total=timeouts.request, sock_connect=timeouts.connect)
        # A streamed body may rightly take longer than any total limit (a large catch-up
        # read): bound the silence between bytes instead.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.request
        )
        # Live reads wait on the server by design: no total limit, only a limit on silence.
        self._live_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.live_idle
        )
        self.retries = 0
        self.requests = 0

    @property
    def started(self) -> bool:
        """Whether a client session exists (created or borrowed)."""
        return self._client is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ResourceClosedError("the session is closed")
        if self._client is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._client = aiohttp.ClientSession(connector=connector)
        return self._client

    def _timeout_for(self, *, live: bool, stream: bool) -> aiohttp.ClientTimeout:
        if live:
            return self._live_timeout
        return self._stream_timeout if stream else self._timeout

    async def aclose(self) -> None:
        """Close the client session if this transport created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns:
            await client.close()

    def __del__(self) -> None:
        if self._owns and self._client is not None and not self._closed:
            warnings.warn(
                "durable_streams.Session was never closed; use 'async with' or aclose()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: list[tuple[str, str]],
        body: Body = None,
        live: bool = False,
        stream: bool = False,
    ) -> Response | BodyStream:
        """Send one request. Any status is returned; only a missing response raises."""
        session = self._session()
        self.requests += 1
        try:
            response = await session.request(
                method,
                url,
                headers={"accept-encoding": _ACCEPT_ENCODING, **headers},
                params=params,
                data=_payload(body),
                # aiohttp would label every body-less PUT and POST as octet-stream; the
                # protocol decides (a fork without Content-Type inherits the source's).
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                # Decompressed here, not by aiohttp, which takes a gzip body cut short for
                # a complete one and loses its end without an error.
                auto_decompress=False,
                timeout=self._timeout_for(live=live, stream=stream),
                allow_redirects=True,
            )
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            _raise_transport(exc, url)
        try:
            body_stream = BodyStream(response, url)
        except BaseException:
            response.close()
            raise
        if stream and response.status == 200:
            return body_stream
        try:
            data = await body_stream.read_all()
        finally:
            response.release()
        return Response(response.status, body_stream.headers, data)

    async def request(
        self,
        method: str,
        url: str,
        *,
        prepare: Prepare,
        body: Body = None,
        retries: int | None,
        live: bool = False,
        stream: bool = False,
    ) -> Response | BodyStream:
        """Send with retries: transient failures are retried ``retries`` times (None: forever).

        ``prepare`` is awaited before every attempt, so dynamic headers and parameters are
        evaluated afresh each time. A streaming body cannot be replayed and is never retried.
        The final response is returned whatever its status; the last transport error raises.
        """
        if body is not None and not isinstance(body, bytes):
            retries = 0
        attempt = 0
        while True:
            headers, params = await prepare()
            try:
                result = await self.send(
                    method, url, headers=headers, params=params, body=body, live=live, stream=stream
                )
            except TransportError as exc:
                if retries is not None and attempt >= retries:
                    raise
                delay = self.retry.delay(attempt)
                log.debug(
                    "%s %s failed (%s); retry %d in %.3fs", method, url, exc, attempt + 1, delay
                )
            else:
                if not is_retryable_status(result.status) or (
                    retries is not None and attempt >= retries
                ):
                    return result
                delay = self.retry.delay(attempt, retry_after(result.headers))
                log.debug(
                    "%s %s answered %d; retry %d in %.3fs",
                    method,
                    url,
                    result.status,
                    attempt + 1,
                    delay,
                )
            attempt += 1
            self.retries += 1
            await asyncio.sleep(delay)

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# aiohttp warns (ResourceWarning) about bytes bodies above 1 MiB, although they go out
# in one buffered write; a one-chunk async iterable sends the same bytes, chunked.
_LARGE_BODY = 2**20
_SKIP_AUTO_HEADERS = ("Content-Type", "Accept-Encoding")
# Only what _Decoder undoes (aiohttp would also offer br when brotli is installed).
_ACCEPT_ENCODING = "gzip, deflate"


def _payload(body: Body) -> Body:
    if isinstance(body, bytes) and len(body) > _LARGE_BODY:
        return _one_chunk(body)
    return body


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


class _Decoder:
    """Undoes a response's Content-Encoding, and notices a compressed body cut short."""

    __slots__ = ("_url", "_zlib")

    def __init__(self, encoding: str | None, url: str, *, bodyless: bool = False) -> None:
        self._url = url
        encoding = "identity" if bodyless else (encoding or "identity").strip().lower()
        if encoding == "gzip":
            self._zlib: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding == "identity":
            self._zlib = None
        else:
            raise NetworkError(f"unsupported Content-Encoding {encoding!r}", url=url)

    def feed(self, data: bytes) -> bytes:
        if self._zlib is None:
            return data
        try:
            return self._zlib.decompress(data)
        except zlib.error as exc:
            raise NetworkError(f"corrupt compressed body: {exc}", url=self._url) from exc

    def finish(self) -> bytes:
        if self._zlib is None:
            return b""
        try:
            rest = self._zlib.flush()
        except zlib.error as exc:
            raise NetworkError(f"corrupt compressed body: {exc}", url=self._url) from exc
        if not self._zlib.eof:
            raise NetworkError("compressed body ended before its end", url=self._url)
        return rest


def _raise_transport(exc: BaseException, url: str) -> NoReturn:
    error: DurableStreamsError
    if isinstance(exc, aiohttp.InvalidURL):
        error = InvalidArgumentError(f"invalid URL: {exc}", url=url)
    elif isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        error = RequestTimeoutError("request timed out", url=url)
    elif isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        error = InvalidArgumentError(f"request could not be built: {exc}", url=url)
    else:
        error = NetworkError(f"{type(exc).__name__}: {exc}".rstrip(": "), url=url)
    raise error from exc
