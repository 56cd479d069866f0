"""Session: one connection pool, base URL, headers, parameters, timeouts and retries."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

from ._config import RetryPolicy, Timeouts
from ._errors import InvalidArgumentError
from ._protocol.headers import RESERVED_PARAMS
from ._transport import Body, BodyStream, Prepared, Response, Transport

if TYPE_CHECKING:
    import aiohttp

    from ._stream import Stream

__all__ = ["DynamicValue", "Session", "SessionStatistics"]

DynamicValue: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A header or parameter value: a string, or a function (sync or async) called per request."""


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Counters of a :class:`Session`.

    Attributes:
        requests: HTTP requests sent (every attempt counts, retries included).
        retries: attempts that were retries of a transient failure (a producer's batch
            retries are counted in its own ``statistics()``).
    """

    requests: int
    retries: int


class Session:
    """A client for one Durable Streams server (or several, with absolute URLs).

    Construction does no I/O. The underlying ``aiohttp.ClientSession`` is created on first
    use inside the running event loop, unless one is passed in; a borrowed client session
    is never closed by this object. Use ``async with Session(...) as session:`` or call
    :meth:`aclose`; a session that made requests and was never closed warns with
    ``ResourceWarning``.

    Args:
        base_url: joined with the paths given to :meth:`stream`; absolute URLs bypass it.
        headers: sent with every request. Values may be strings or functions, sync or
            async, returning strings; functions are called for every request, including
            every long-poll, SSE reconnect and retry, so a token can be refreshed. Protocol
            headers win over these when both name the same header.
        params: query parameters, in the same forms. ``offset``, ``live`` and ``cursor``
            belong to the protocol and are refused.
        timeout: connect, request and live-idle timeouts.
        retry: the policy for transient failures.
        client_session: an ``aiohttp.ClientSession`` to borrow instead of creating one.
        max_connections: the pool size. Every live reader holds one connection (aiohttp
            speaks HTTP/1.1), so size it for your concurrent readers plus writers.

    ``headers`` and ``params`` remain mutable mappings after construction; changes apply
    to the next request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        headers: Mapping[str, DynamicValue] | None = None,
        params: Mapping[str, DynamicValue] | None = None,
        timeout: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        client_session: aiohttp.ClientSession | None = None,
        max_connections: int = 4096,
    ) -> None:
        if base_url is not None:
            _check_absolute(base_url)
        if timeout is not None and not isinstance(timeout, Timeouts):
            raise InvalidArgumentError(
                f"timeout must be a Timeouts, got {type(timeout).__name__}", argument="timeout"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError(
                f"retry must be a RetryPolicy, got {type(retry).__name__}", argument="retry"
            )
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise InvalidArgumentError(
                f"max_connections must be a positive integer, got {max_connections!r}",
                argument="max_connections",
            )
        self.base_url = base_url
        self.headers: dict[str, DynamicValue] = dict(headers or {})
        self.params: dict[str, DynamicValue] = dict(params or {})
        _check_values("headers", self.headers)
        _check_values("params", self.params)
        self.timeout = timeout or Timeouts()
        self.retry = retry or RetryPolicy()
        self._transport = Transport(
            timeouts=self.timeout,
            retry=self.retry,
            client_session=client_session,
            max_connections=max_connections,
        )

    # -- life cycle -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Close the connection pool (unless it was borrowed). Safe to call twice.

        Readers and producers created from this session stop working; close them first.
        """
        await self._transport.aclose()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> SessionStatistics:
        """A snapshot of this session's counters: HTTP requests sent and retries made."""
        return SessionStatistics(requests=self._transport.requests, retries=self._transport.retries)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Session base_url={self.base_url!r} {state}>"

    # -- handles --------------------------------------------------------------------

    def stream(self, url: str, *, content_type: str | None = None) -> Stream:
        """A handle on the stream at ``url`` (a path joined to ``base_url``, or absolute).

        No I/O. ``content_type`` tells the handle the stream's type when it is known, which
        saves the HEAD request an append otherwise makes once to learn it.
        """
        from ._stream import Stream  # noqa: PLC0415 - _stream imports this module

        return Stream(self, self.url_for(url), content_type=content_type)

    def url_for(self, url: str) -> str:
        """The absolute URL for ``url``: itself if absolute, else joined to ``base_url``."""
        if not isinstance(url, str) or not url:
            raise InvalidArgumentError(f"stream URL must be a non-empty string, got {url!r}")
        if urlsplit(url).scheme:
            _check_absolute(url)
            return url
        if self.base_url is None:
            raise InvalidArgumentError(f"{url!r} is relative and the session has no base_url")
        return self.base_url.rstrip("/") + "/" + url.lstrip("/")

    # -- requests (internal) --------------------------------------------------------

    async def _prepare(self, headers: Mapping[str, str], params: Mapping[str, str]) -> Prepared:
        merged_headers = {k.lower(): await _resolve(v) for k, v in self.headers.items()}
        merged_headers.update(headers)
        merged_params: dict[str, str] = {}
        for key, value in self.params.items():
            if key in RESERVED_PARAMS:
                raise InvalidArgumentError(f"query parameter {key!r} belongs to the protocol")
            merged_params[key] = await _resolve(value)
        merged_params.update(params)
        # Sorted keys give identical requests identical URLs, so CDN caches can share them.
        return merged_headers, sorted(merged_params.items())

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        retries: int | None,
        live: bool = False,
        stream: bool = False,
    ) -> Response | BodyStream:
        hdrs = headers or {}
        prms = params or {}

        async def prepare() -> Prepared:
            return await self._prepare(hdrs, prms)

        return await self._transport.request(
            method, url, prepare=prepare, body=body, retries=retries, live=live, stream=stream
        )

    async def _fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        retries: int | None,
        live: bool = False,
    ) -> Response:
        result = await self._request(
            method, url, headers=headers, params=params, body=body, retries=retries, live=live
        )
        assert isinstance(result, Response)
        return result


async def _resolve(value: DynamicValue) -> str:
    if isinstance(value, str):
        return value
    result = value()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, str):
        raise InvalidArgumentError(
            f"a dynamic header or parameter returned {type(result).__name__}, not str"
        )
    return result


def _check_values(what: str, values: Mapping[str, DynamicValue]) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"{what} names must be non-empty strings, got {key!r}")
        if not (isinstance(value, str) or callable(value)):
            raise InvalidArgumentError(
                f"{what}[{key!r}] must be a str or a function returning one, "
                f"got {type(value).__name__}"
            )
        if what == "params" and key in RESERVED_PARAMS:
            raise InvalidArgumentError(f"query parameter {key!r} belongs to the protocol")


def _check_absolute(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(f"expected an absolute http(s) URL, got {url!r}")
