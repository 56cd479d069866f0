"""The HTTP seam: the only module that imports aiohttp.

:meth:`Transport.send` makes exactly one request and returns its answer, whatever the
status; retries, redirects and status meanings are decided above it. Every request is
made with explicit options (no redirects, no raising on status, no decompression, no
client middlewares), so a borrowed ``aiohttp.ClientSession``'s defaults cannot change
the library's behaviour. Every aiohttp exception becomes one of ours, with the original
kept as ``__cause__`` and secrets redacted from the message.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
import yarl

from ._config import Limits, Timeouts
from ._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    LimitExceededError,
    NetworkError,
    RequestTimeoutError,
    ResourceClosedError,
    TransportError,
)
from ._protocol.decoding import ContentDecoder
from ._protocol.headers import lower_keys as _lower

Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, lower-cased headers and the whole (decoded) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class BodyStream:
    """An open response whose body is read piece by piece (a byte read, an SSE connection).

    Every piece is at most ``Limits.max_chunk_bytes`` long, however compressed the body.
    ``close()`` is synchronous so that it can run from ``__del__`` and ``finally`` blocks
    without awaiting; it drops the connection rather than returning it to the pool.
    """

    __slots__ = ("_decoder", "_limits", "_response", "headers", "status", "url")

    def __init__(self, response: aiohttp.ClientResponse, url: str, limits: Limits) -> None:
        self._response: aiohttp.ClientResponse | None = response
        self._limits = limits
        self.status = response.status
        # aiohttp's own case-insensitive mapping, not a copy: an open SSE connection holds
        # this for as long as it lasts, once per live reader.
        self.headers: Mapping[str, str] = response.headers
        self.url = url
        encoding = response.headers.get("content-encoding")
        # These have no body whatever their Content-Encoding says.
        bodyless = response.method == "HEAD" or response.status in (204, 304)
        # None: the body passes through as it arrives (no encoding: the common case).
        self._decoder = (
            None
            if encoding is None or bodyless
            else ContentDecoder(encoding, url=url, bodyless=bodyless)
        )

    async def read_chunk(self) -> bytes:
        """The next decoded bytes of the body as they arrive; ``b""`` at the end."""
        response = self._response
        if self._decoder is None and response is not None:
            # Inline, no frame of its own: a live reader waits here, thousands at a time.
            try:
                return await response.content.read(self._limits.max_chunk_bytes)
            except (TimeoutError, aiohttp.ClientError) as exc:
                _raise_transport(exc, self.url, self._limits)
        return await self._read_bounded(self._limits.max_chunk_bytes)

    async def read_all(self) -> bytes:
        """The rest of the body, refused past ``Limits.max_body_bytes`` once decoded."""
        maximum = self._limits.max_body_bytes
        parts: list[bytes] = []
        total = 0
        response = self._response
        if self._decoder is None and response is not None:
            # No Content-Encoding (the hot path): read in this frame; at_eof() after a
            # piece saves the read that would only say "the end".
            content = response.content
            try:
                while not content.at_eof() and (chunk := await content.read(maximum - total + 1)):
                    total += len(chunk)
                    if total > maximum:
                        raise self._too_large(maximum)
                    parts.append(chunk)
            except (TimeoutError, aiohttp.ClientError) as exc:
                _raise_transport(exc, self.url, self._limits)
            self.release()
            return parts[0] if len(parts) == 1 else b"".join(parts)
        while chunk := await self._read_bounded(maximum - total + 1):
            total += len(chunk)
            if total > maximum:
                raise self._too_large(maximum)
            parts.append(chunk)
        self.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _too_large(self, maximum: int) -> LimitExceededError:
        return LimitExceededError(
            "response body is too large", limit="max_body_bytes", maximum=maximum, url=self.url
        )

    async def _read_bounded(self, size: int) -> bytes:
        decoder = self._decoder
        if decoder is None:
            return b""  # closed (an open identity body is read by the callers)
        while self._response is not None:
            if decoder.pending():
                data = decoder.feed(b"", size)
            else:
                raw = await self._read_raw()
                if not raw:
                    decoder.finish()
                    return b""
                data = decoder.feed(raw, size)
            if data:
                return data
        return b""

    async def _read_raw(self) -> bytes:
        """What arrived of the raw body (waiting for it)."""
        assert self._response is not None
        try:
            return await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            _raise_transport(exc, self.url, self._limits)

    def release(self) -> None:
        """The body was read to its end: the connection goes back to the pool."""
        response, self._response = self._response, None
        if response is not None:
            response.release()

    def close(self) -> None:
        """Drop the connection (unless the body was read to its end). Safe to call twice."""
        response, self._response = self._response, None
        if response is not None:
            response.close()


class Transport:
    """Owns, or borrows, one ``aiohttp.ClientSession``, and makes single requests.

    The client session is created lazily inside the running loop, on first use, so the
    constructor does no I/O and needs no loop.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts,
        limits: Limits,
        client_session: aiohttp.ClientSession | None = None,
        max_connections: int = 4096,
    ) -> None:
        # Set first: __del__ looks at them even when validation below fails.
        self._client = client_session
        self._owns = client_session is None
        self._closed = False
        if client_session is not None and getattr(client_session, "_base_url", None):
            raise InvalidArgumentError(
                "a borrowed aiohttp.ClientSession must not have a base_url; "
                "give the base URL to Session instead",
                argument="client_session",
            )
        self.limits = limits
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeouts.request, sock_connect=timeouts.connect)
        # A streamed body may rightly take longer than any total limit (a large catch-up
        # read): bound the silence between bytes instead.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.request
        )
        # A watched read (a live read: it waits on the server by design) has no total
        # limit, and its caller bounds the silence with one lazy timer (the reader's, by
        # Timeouts.live_idle): aiohttp's sock_read would cancel and schedule a timer on
        # every arrival of bytes, five times per SSE event on some servers, for every
        # open connection.
        self._watched_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        self._options = _request_options(limits, writes=False)
        self._write_options = _request_options(limits, writes=True)
        # An owned session gets the options as its own defaults: each request then states
        # only what has no default (fewer keyword arguments per request, the hot path).
        self._client_defaults: dict[str, Any] = {}
        defaults = dict(self._write_options)
        per_request = {"allow_redirects": defaults.pop("allow_redirects")}
        if self._owns and defaults.keys() <= _SESSION_PARAMETERS:
            self._client_defaults = defaults
            self._options = self._write_options = per_request
        self.requests = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ResourceClosedError("the session is closed")
        if self._client is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._client = aiohttp.ClientSession(connector=connector, **self._client_defaults)
            # aiohttp silently resends an idempotent request once when a kept-alive
            # connection turns out closed; the retry budget must see every request.
            if hasattr(self._client, "_retry_connection"):
                self._client._retry_connection = False
        elif self._client.closed:
            raise ResourceClosedError("the borrowed aiohttp.ClientSession is closed")
        return self._client

    def _timeout_for(self, *, stream: bool, watched: bool) -> aiohttp.ClientTimeout:
        if watched:
            return self._watched_timeout
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
        query: str = "",
        body: Body = None,
        stream: bool = False,
        watched: bool = False,
    ) -> Response | BodyStream:
        """Send one request. Any status is returned; only a missing response raises.

        With ``stream``, a 200 answer comes back open, as a :class:`BodyStream`; every
        other answer is read whole (within ``Limits.max_body_bytes``). A ``watched``
        request tolerates any silence: its caller bounds the wait for the answer and for
        every piece of its body (otherwise ``Timeouts.request`` does).
        """
        session = self._session()
        self.requests += 1
        try:
            response = await session.request(
                method,
                # Built and percent-encoded by the session, query included: sent as it is.
                yarl.URL(f"{url}?{query}" if query else url, encoded=True),
                headers={"accept-encoding": _ACCEPT_ENCODING, **headers},
                data=_payload(body),
                timeout=self._timeout_for(stream=stream, watched=watched),
                **(self._write_options if method in _WRITE_METHODS else self._options),
            )
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            _raise_transport(exc, url, self.limits)
        try:
            body_stream = BodyStream(response, url, self.limits)
        except BaseException:
            response.close()
            raise
        if stream and response.status == 200:
            return body_stream
        try:
            data = await body_stream.read_all()
        except BaseException:
            response.close()  # unread or refused: the connection cannot be reused
            raise
        return Response(response.status, _lower(response.headers), data)


# aiohttp warns (ResourceWarning) about bytes bodies above 1 MiB, although they go out
# in one buffered write; a one-chunk async iterable sends the same bytes, chunked.
_LARGE_BODY = 2**20
# Accept-Encoding is always sent explicitly, so aiohttp never adds its own.
_SKIP_AUTO_HEADERS = ("Content-Type",)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Only what ContentDecoder undoes (aiohttp would also offer br when brotli is installed).
_ACCEPT_ENCODING = "gzip, deflate"
_REQUEST_PARAMETERS = frozenset(inspect.signature(aiohttp.ClientSession._request).parameters)
_SESSION_PARAMETERS = frozenset(inspect.signature(aiohttp.ClientSession.__init__).parameters)


def _request_options(limits: Limits, *, writes: bool) -> dict[str, Any]:
    """The options every request states, whatever the client session's defaults are.

    ``writes``: for the methods that may carry a body (the others need no Content-Type
    left out, and aiohttp's handling of ``skip_auto_headers`` costs a set per request).
    """
    options: dict[str, Any] = {
        # Redirects are decided by the session (writes never follow one).
        "allow_redirects": False,
        # Statuses are interpreted by the protocol layer, never raised by aiohttp.
        "raise_for_status": False,
        # Decompressed here, within the limits, not by aiohttp, which also takes a gzip
        # body cut short for a complete one.
        "auto_decompress": False,
        # aiohttp would label every body-less PUT and POST as octet-stream; the
        # protocol decides (a fork without Content-Type inherits the source's).
        "skip_auto_headers": _SKIP_AUTO_HEADERS if writes else None,
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
    }
    if "middlewares" in _REQUEST_PARAMETERS:  # aiohttp >= 3.12: none of the session's
        options["middlewares"] = ()
    return {key: value for key, value in options.items() if key in _REQUEST_PARAMETERS}


def _payload(body: Body) -> Body:
    if isinstance(body, bytes) and len(body) > _LARGE_BODY:
        return _one_chunk(body)
    return body


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _header_too_long(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "LineTooLong" or "Got more than" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raise_transport(exc: BaseException, url: str, limits: Limits) -> NoReturn:
    error: DurableStreamsError
    if isinstance(exc, aiohttp.InvalidURL):
        error = InvalidArgumentError(f"invalid URL: {exc}", url=url)
    elif isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        error = RequestTimeoutError("request timed out", url=url)
    elif isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        error = InvalidArgumentError(f"request could not be built: {exc}", url=url)
    elif _header_too_long(exc):
        error = LimitExceededError(
            "a response header line is too long",
            limit="max_header_bytes",
            maximum=limits.max_header_bytes,
            url=url,
        )
    else:
        error = NetworkError(f"{type(exc).__name__}: {exc}".rstrip(": "), url=url)
    raise error from exc


__all__ = ["Body", "BodyStream", "Response", "Transport", "TransportError"]
