"""Session: one connection pool, base URL, headers, parameters, timeouts and retries."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

from ._config import Limits, RetryPolicy, Timeouts
from ._errors import InvalidArgumentError, RedirectError, TransportError
from ._live_share import SharedPolls
from ._log import log
from ._protocol import urls
from ._protocol.errors import is_retryable_status, retry_after
from ._protocol.headers import LOCATION, RESERVED_PARAMS
from ._protocol.redact import redact_url
from ._protocol.retry import RetryBudget
from ._transport import Body, BodyStream, Response, Transport

if TYPE_CHECKING:
    import aiohttp

    from ._stream import Stream
    from ._subscriptions import Subscription

__all__ = ["DynamicValue", "Session", "SessionStatistics"]


Prepared = tuple[Mapping[str, str], str]

# Reads follow at most this many same-origin 307/308 redirects; writes follow none.
MAX_REDIRECTS = 5
_FOLLOWED_REDIRECTS = (307, 308)
_READ_METHODS = ("GET", "HEAD")

DynamicValue: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A header or parameter value: a string, or a function (sync or async) called per request."""


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Counters of a :class:`Session`.

    Attributes:
        requests: HTTP requests sent: every attempt counts, retries and followed
            redirects included.
        retries: requests that were retries of a transient failure, including a
            reader's retries after a body broke off (a producer's batch retries are
            counted in its own ``statistics()``).
    """

    requests: int
    retries: int


class Session:
    """A client for one Durable Streams server.

    Construction does no I/O. The underlying ``aiohttp.ClientSession`` is created on first
    use inside the running event loop, unless one is passed in; a borrowed client session
    is never closed by this object, and its defaults (redirects, ``raise_for_status``,
    decompression, middlewares) do not apply to this library's requests. Use
    ``async with Session(...) as session:`` or call :meth:`aclose`; a session that made
    requests and was never closed warns with ``ResourceWarning``.

    Args:
        base_url: the server's stream root; names given to :meth:`stream` are paths
            under it. Its origin (scheme, host, port) is the one the session's headers
            and parameters may be sent to.
        headers: sent with every request. Values may be strings or functions, sync or
            async, returning strings; functions are called for every request, including
            every long-poll, SSE reconnect and retry, so a token can be refreshed. Protocol
            headers win over these when both name the same header.
        params: query parameters, in the same forms. ``offset``, ``live`` and ``cursor``
            belong to the protocol and are refused.
        timeout: connect, request and live-idle timeouts (read-only afterwards).
        retry: the policy for transient failures. It may be replaced later
            (``session.retry = RetryPolicy(...)``); operations started after that use
            the new policy entirely.
        limits: bounds on what a server can make the client hold in memory (read-only
            afterwards).
        allowed_origins: further origins (``"https://host:port"``) to which absolute
            stream URLs may point; the session's headers and parameters go to them
            too. Any other absolute URL is refused before anything is sent. (A session
            with neither a base URL nor allowed origins takes any absolute URL.)
        client_session: an ``aiohttp.ClientSession`` to borrow instead of creating one
            (it must have no ``base_url`` of its own).
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
        limits: Limits | None = None,
        allowed_origins: Iterable[str] = (),
        client_session: aiohttp.ClientSession | None = None,
        max_connections: int = 4096,
    ) -> None:
        if base_url is not None:
            urls.check_stream_url(base_url.rstrip("/") or base_url)
        _check_type("timeout", timeout, Timeouts)
        _check_type("limits", limits, Limits)
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
        self._origins = _trusted_origins(base_url, allowed_origins)
        self.headers: dict[str, DynamicValue] = dict(headers or {})
        self.params: dict[str, DynamicValue] = dict(params or {})
        _check_values("headers", self.headers)
        _check_values("params", self.params)
        self.retry = retry or RetryPolicy()
        self._timeout = timeout or Timeouts()
        self._limits = limits or Limits()
        self._retries = 0
        self._polls = SharedPolls(self._poll_once)
        self._wire = Wire(self)
        self._transport = Transport(
            timeouts=self._timeout,
            limits=self._limits,
            client_session=client_session,
            max_connections=max_connections,
        )

    # -- configuration ----------------------------------------------------------------

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy; assigning a new one applies to operations started after."""
        return self._retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        _check_type("retry", policy, RetryPolicy)
        self._retry = policy

    @property
    def timeout(self) -> Timeouts:
        """The timeouts (read-only: they are built into the connection pool's settings)."""
        return self._timeout

    @property
    def limits(self) -> Limits:
        """The limits on responses (read-only)."""
        return self._limits

    # -- life cycle -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Close the connection pool (unless it was borrowed). Safe to call twice.

        Readers and producers created from this session stop working; close them first.
        """
        self._polls.close()
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
        return SessionStatistics(requests=self._transport.requests, retries=self._retries)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        base = None if self.base_url is None else redact_url(self.base_url)
        return f"<Session base_url={base!r} {state}>"

    # -- handles --------------------------------------------------------------------

    def stream(self, url: str, *, content_type: str | None = None) -> Stream:
        """A handle on the stream named ``url`` under ``base_url`` (or at an absolute URL).

        No I/O. A name is ``/``-separated segments, each percent-encoded, so a name built
        from user input addresses exactly that stream; dot segments, empty segments and
        control characters are refused. An absolute URL must be on the base URL's origin
        or one of ``allowed_origins``. ``content_type`` tells the handle the stream's
        type when it is known, which saves the HEAD request an append otherwise makes
        once to learn it.

        Raises:
            InvalidArgumentError: a name or URL that is refused, before any I/O.
        """
        from ._stream import Stream  # noqa: PLC0415 - _stream imports this module

        return Stream(self, self.url_for(url), content_type=content_type)

    def subscription(self, subscription_id: str) -> Subscription:
        """A handle on the subscription ``subscription_id`` (protocol sections 6 and 7).

        No I/O. ``base_url`` is the stream root: the subscription API is under it
        (``{base_url}/__ds/subscriptions/{id}``) and the stream paths subscriptions name
        (``events/a``) are stream names under it, as :meth:`stream` takes them. For the
        reference server that is ``http://host:port/v1/stream``.

        Raises:
            InvalidArgumentError: an empty id, one with control characters, or a session
                without a ``base_url``.
        """
        from ._subscriptions import Subscription  # noqa: PLC0415 - it imports this module

        return Subscription(self, subscription_id)

    def url_for(self, url: str) -> str:
        """The absolute URL of a stream name (joined to ``base_url``) or absolute URL."""
        if isinstance(url, str) and urlsplit(url).scheme:
            url = urls.check_stream_url(url)
            self._check_origin(url)
            return url
        path = urls.stream_path(url)
        if self.base_url is None:
            raise InvalidArgumentError(
                f"{url!r} is relative and the session has no base_url", argument="url"
            )
        return urls.join(self.base_url, path)

    def _check_origin(self, url: str) -> None:
        if self._origins is not None and urls.origin(url) not in self._origins:
            raise InvalidArgumentError(
                f"{redact_url(url)!r} is not on the session's origin; list it in "
                "Session(allowed_origins=...) to send the session's credentials there",
                argument="url",
            )

    # -- requests (internal) --------------------------------------------------------

    async def _prepare(self, headers: Mapping[str, str], params: Mapping[str, str]) -> Prepared:
        """The headers and the encoded query of one request: the session's, then its own."""
        if self.headers:
            own = {k.lower(): await _resolve(v) for k, v in self.headers.items()}
            headers = {**own, **headers}
        if self.params:
            merged_params: dict[str, str] = {}
            for key, value in self.params.items():
                if key in RESERVED_PARAMS:
                    raise InvalidArgumentError(
                        f"query parameter {key!r} belongs to the protocol", argument="params"
                    )
                merged_params[key] = await _resolve(value)
            merged_params.update(params)
            params = merged_params
        return headers, _query(params)

    def _budget(self, *, live: bool = False) -> RetryBudget:
        """A fresh budget for one operation under the current policy."""
        policy = self._retry
        return policy.budget(policy.live_max_retries if live else policy.max_retries)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        budget: RetryBudget,
        stream: bool = False,
        watched: bool = False,
    ) -> Response | BodyStream:
        """Send, retrying transient failures within ``budget`` and following safe redirects.

        The final answer is returned whatever its status (a 3xx not followed raises
        :class:`RedirectError`); the last transport error raises. A streamed body cannot
        be replayed and is sent once.
        """
        hdrs, prms = headers or {}, params or {}
        replayable = body is None or isinstance(body, bytes)
        target, hops = url, 0
        while True:
            if self.headers or self.params:
                sent_headers, query = await self._prepare(hdrs, prms)
            else:  # nothing of the session's to merge or resolve: no coroutine for it
                sent_headers, query = hdrs, _query(prms)
            if budget.take_retry():
                self._retries += 1
            try:
                result = await self._transport.send(
                    method, target, headers=sent_headers, query=query,
                    body=body, stream=stream, watched=watched,
                )  # fmt: skip
            except TransportError as exc:
                delay = budget.next_delay() if replayable else None
                if delay is None:
                    raise
                log.debug(
                    "%s %s failed (%s); retry in %.3fs", method, redact_url(target), exc, delay
                )
                await asyncio.sleep(delay)
                continue
            if 300 <= result.status < 400 and result.status != 304:
                target = self._redirect(method, target, result, hops)
                hops += 1
                continue
            if not is_retryable_status(result.status) or not replayable:
                return result
            delay = budget.next_delay(retry_after(result.headers))
            if delay is None:
                return result
            log.debug(
                "%s %s answered %d; retry in %.3fs",
                method,
                redact_url(target),
                result.status,
                delay,
            )
            if isinstance(result, BodyStream):
                result.close()
            await asyncio.sleep(delay)

    def _redirect(self, method: str, url: str, result: Response | BodyStream, hops: int) -> str:
        """The URL a read follows a redirect to; any other redirect raises."""
        if isinstance(result, BodyStream):
            result.close()
        location = result.headers.get(LOCATION)
        target = None
        if method in _READ_METHODS and result.status in _FOLLOWED_REDIRECTS and location:
            target = urls.resolve_redirect(url, location)
        if target is None or hops >= MAX_REDIRECTS:
            why = "too many redirects" if target is not None else "redirect not followed"
            raise RedirectError(
                f"{method} answered {result.status}: {why}"
                + (f" (to {redact_url(location)})" if location else ""),
                location=location,
                url=url,
                status=result.status,
                headers=result.headers,
            )
        log.debug(
            "%s %s redirected (%d) to %s",
            method,
            redact_url(url),
            result.status,
            redact_url(target),
        )
        return target

    async def _fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        budget: RetryBudget,
    ) -> Response:
        result = await self._request(
            method, url, headers=headers, params=params, body=body, budget=budget
        )
        assert isinstance(result, Response)
        return result

    async def _shared_poll(
        self, url: str, params: Mapping[str, str], *, budget: RetryBudget
    ) -> Response:
        """A live long-poll, sent once for every reader of this session asking the same.

        The answer is read whole, whatever its status; ``budget`` is the reader's (its
        retries are counted here, the reader decides them). See ``_live_share``.
        """
        if budget.take_retry():
            self._retries += 1
        return await self._polls.poll(url, params)

    async def _poll_once(self, url: str, params: Mapping[str, str]) -> Response:
        # One attempt, watched: every waiting reader bounds its own wait, and retries.
        result = await self._request(
            "GET", url, params=params, budget=self._retry.budget(0), watched=True
        )
        assert isinstance(result, Response)
        return result


class Wire:
    """A session's requests, as the library's handles use them (package-internal).

    Streams, readers, producers and subscriptions send every request through the
    :func:`session_wire` of their session, never through its private members: one retry
    budget per operation, redirects decided, credentials only to trusted origins.
    ``request`` and ``fetch`` are the session's own request methods (see
    ``Session._request``): one definition, no copy of their signatures; ``poll`` is a
    live long-poll shared by the readers that ask the same (``Session._shared_poll``).
    """

    __slots__ = ("_session", "fetch", "poll", "request")

    def __init__(self, session: Session) -> None:
        self._session = session
        self.request = session._request
        self.fetch = session._fetch
        self.poll = session._shared_poll

    @property
    def retry(self) -> RetryPolicy:
        """The session's current retry policy."""
        return self._session.retry

    @property
    def limits(self) -> Limits:
        """The session's limits on responses."""
        return self._session.limits

    def budget(self, *, live: bool = False) -> RetryBudget:
        """A fresh budget for one operation (``live``: a live reader's) under the policy."""
        return self._session._budget(live=live)

    def once(self) -> RetryBudget:
        """A budget of no retries: exactly one attempt."""
        return self._session.retry.budget(0)


def session_wire(session: Session) -> Wire:
    """The package-internal request interface of ``session``."""
    return session._wire


def _query(params: Mapping[str, str]) -> str:
    # Sorted keys give identical requests identical URLs, so CDN caches can share them.
    return urls.query(sorted(params.items())) if params else ""


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


def _check_type(name: str, value: object, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        raise InvalidArgumentError(
            f"{name} must be a {kind.__name__}, got {type(value).__name__}", argument=name
        )


def _check_values(what: str, values: Mapping[str, DynamicValue]) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(
                f"{what} names must be non-empty strings, got {key!r}", argument=what
            )
        if not (isinstance(value, str) or callable(value)):
            raise InvalidArgumentError(
                f"{what}[{key!r}] must be a str or a function returning one, "
                f"got {type(value).__name__}",
                argument=what,
            )
        if what == "params" and key in RESERVED_PARAMS:
            raise InvalidArgumentError(
                f"query parameter {key!r} belongs to the protocol", argument=what
            )


def _trusted_origins(
    base_url: str | None, allowed: Iterable[str]
) -> frozenset[tuple[str, str, int]] | None:
    """The origins absolute URLs may name; ``None``: any (no base URL, nothing listed)."""
    if isinstance(allowed, str):
        allowed = [allowed]
    origins = {urls.origin(urls.check_absolute(o, argument="allowed_origins")) for o in allowed}
    if base_url is not None:
        origins.add(urls.origin(base_url))
    return frozenset(origins) if origins else None
