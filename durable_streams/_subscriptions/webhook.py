"""Webhook receivers: answering a wake, calling back later with acks, and integrations.

A verified wake (:class:`~.webhook_verify.WebhookVerifier`) is finished in one of two
ways. Synchronously, by answering the webhook request with ``{"done": true}``
(:func:`webhook_answer`): the server acks every stream of the wake up to its snapshot
tail. Or asynchronously: answer with any other 2xx, then send acks, and finally ``done``,
to the wake's callback URL (:class:`WebhookCallback`), within the lease.

The FastAPI and aiohttp integrations live in modules of their own, imported on first use,
so that neither framework is needed to import ``durable_streams``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._errors import (
    InvalidArgumentError,
    ParseError,
    ResponseError,
    TransportError,
    WebhookSignatureError,
)
from .._log import log
from .._protocol.redact import redact_url
from .._session import session_wire
from .webhook_wire import WebhookWake, parse_wake
from .wire import CallOp, encode_acks, error_for_answer, parse_object

if TYPE_CHECKING:
    from aiohttp import web
    from starlette.requests import Request

    from .._session import Session
    from .webhook_verify import WebhookVerifier

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "WakeHandler",
    "WebhookCallback",
    "webhook_answer",
    "webhook_dependency",
    "webhook_handler",
]

# A real wake is well under a kilobyte per stream; a megabyte is thousands of streams.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
_JSON: Final = "application/json"

WakeHandler = Callable[[WebhookWake], Awaitable[bool]]
"""Handles a verified wake; returns True to answer ``done`` (ack the snapshot), False to
call back later."""


def webhook_answer(*, done: bool) -> dict[str, bool]:
    """The JSON body that answers a webhook request.

    ``{"done": true}`` tells the server that the wake is finished: it acks every stream
    of the wake up to the ``tail_offset`` of its snapshot, releases the lease, and wakes
    again if events arrived meanwhile. ``{"done": false}`` only acknowledges receipt: the
    wake stays leased until a :class:`WebhookCallback` finishes it (or the lease expires
    and the server wakes again with a newer generation).
    """
    if not isinstance(done, bool):
        raise InvalidArgumentError(f"done must be a bool, got {done!r}", argument="done")
    return {"done": done}


class WebhookCallback:
    """Acks for one webhook wake, sent to the wake's callback URL: the asynchronous path.

    Construction does no I/O. The callback URL must be on the session's origin (or
    ``allowed_origins``), as stream URLs must: the wake is signed, but the session's own
    headers go with the request. Each call carries the wake's bearer token; when the
    server answers with a new ``token`` (a server that rotates tokens nearing expiry),
    later calls use it. Calls on one callback run one at a time, in order.

    Every valid call extends the wake's lease: call :meth:`ack` or :meth:`heartbeat`
    more often than the subscription's ``lease_ttl``, or the server gives the work to
    a newer wake and this one is fenced.

    A request is retried on transient failures (within the session's retry policy); a
    ``done`` whose first attempt reached the server but whose answer was lost is then
    answered :class:`SubscriptionFencedError`, as the wake is already finished.

    Raises:
        InvalidArgumentError: the callback URL is not on the session's origins.
    """

    def __init__(self, session: Session, wake: WebhookWake) -> None:
        if not isinstance(wake, WebhookWake):
            raise InvalidArgumentError(
                f"wake must be a WebhookWake, got {type(wake).__name__}", argument="wake"
            )
        self._url = session.url_for(wake.callback_url)
        self._session = session
        self._wake = wake
        self._token = wake.callback_token
        self._lock = asyncio.Lock()

    @property
    def wake(self) -> WebhookWake:
        """The wake this callback answers."""
        return self._wake

    def __repr__(self) -> str:
        wake = self._wake
        return (
            f"<WebhookCallback subscription={wake.subscription_id!r} "
            f"generation={wake.generation} url={redact_url(self._url)!r}>"
        )

    async def ack(self, acks: Mapping[str, str]) -> None:
        """Record progress: for each stream path, the offset up to which work is done.

        An offset is one the server returned (a batch's ``offset``); the next wake reads
        from it. Extends the lease. May wait; a cancelled ack may or may not have been
        applied (an ack applied twice is the same ack).

        Raises:
            SubscriptionFencedError: the wake is no longer current; stop.
            InvalidAckError: an unknown stream, or an offset behind the cursor or past
                the tail.
            UnauthorizedError: the token was refused (expired after an hour, say).
            InvalidArgumentError: no acks, or a malformed path or offset, before
                anything is sent.
        """
        if not isinstance(acks, Mapping) or not acks:
            raise InvalidArgumentError("acks must be a non-empty mapping", argument="acks")
        await self._call(acks, done=False)

    async def heartbeat(self) -> None:
        """Extend the lease without acking anything. May wait.

        Raises:
            SubscriptionFencedError: the wake is no longer current; stop.
            UnauthorizedError: the token was refused.
        """
        await self._call(None, done=False)

    async def done(self, acks: Mapping[str, str] | None = None) -> bool:
        """Finish the wake: apply ``acks`` (if any) and release the lease, in one request.

        Unlike the ``{"done": true}`` answer, this acks only what it is given (and what
        was acked before): pass ``wake.tails()`` to ack every pending stream up to the
        wake's snapshot. Work left unacked makes the server wake again at once.

        Returns:
            True if the server issued a new wake at once (events arrived after the
            snapshot, or some were left unacked).

        Raises:
            SubscriptionFencedError: the wake is no longer current; nothing was applied.
            InvalidAckError, UnauthorizedError, InvalidArgumentError: as for :meth:`ack`.
        """
        if acks is not None and not isinstance(acks, Mapping):
            raise InvalidArgumentError("acks must be a mapping", argument="acks")
        return await self._call(acks, done=True)

    async def _call(self, acks: Mapping[str, str] | None, *, done: bool) -> bool:
        wake = self._wake
        body = encode_acks(wake.wake_id, wake.generation, acks, done=done)
        async with self._lock:
            session = self._session
            response = await session_wire(session).fetch(
                "POST",
                self._url,
                headers={"authorization": f"Bearer {self._token}", "content-type": _JSON},
                body=body,
                budget=session_wire(session).budget(),
            )
            if response.status != 200:
                raise error_for_answer(
                    response.status,
                    response.headers,
                    response.body,
                    op=CallOp.CALLBACK,
                    url=self._url,
                    generation=wake.generation,
                )
            answer = parse_object(response.body, url=self._url, what="the callback answer")
            token = answer.get("token")
            if isinstance(token, str) and token:
                self._token = token
        next_wake = answer.get("next_wake")
        return next_wake is True


# -- integrations (imported on first use) ---------------------------------------------


class Refusal(Exception):  # noqa: N818 - not an error of the library: an HTTP answer
    """How an integration answers a webhook request it will not pass on."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_max_body_bytes(value: object) -> int:
    """``max_body_bytes`` of an integration: a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(
            f"max_body_bytes must be a positive integer, got {value!r}",
            argument="max_body_bytes",
        )
    return value


def body_too_large(max_body_bytes: int) -> Refusal:
    """The refusal of a body over the limit."""
    return Refusal(413, f"the webhook body is larger than {max_body_bytes} bytes")


async def receive(verifier: WebhookVerifier, body: bytes, signature: str | None) -> WebhookWake:
    """Verify one request for an integration; what it must not pass on raises Refusal."""
    try:
        checked = await verifier._check(body, signature)
    except WebhookSignatureError as exc:
        log.info("webhook refused (%s): %s", exc.reason, exc.message)
        raise Refusal(401, f"webhook signature refused: {exc.reason}") from exc
    except (TransportError, ResponseError, ParseError) as exc:
        # The server's key set could not be had (unreachable, refused, or malformed): the
        # server retries a delivery answered 503.
        log.warning("webhook not verified: no usable key set: %s", exc)
        raise Refusal(503, "the server's key set could not be fetched") from exc
    try:
        return parse_wake(body, checked)
    except ParseError as exc:
        log.warning("webhook body refused: %s", exc)
        raise Refusal(400, "the webhook body is not a wake") from exc


def webhook_handler(
    verifier: WebhookVerifier,
    handle: WakeHandler,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp request handler that verifies webhook wakes and passes them to ``handle``.

    ``handle(wake)`` returns True to answer ``{"done": true}`` (the server acks the
    wake's snapshot), False to answer ``{"done": false}`` and call back later with a
    :class:`WebhookCallback`. A refused signature is answered 401 and a body that is not
    a wake 400, without calling ``handle``; a body over ``max_body_bytes`` 413; a key
    set that cannot be fetched 503 (the server retries the delivery). An exception from
    ``handle`` propagates to aiohttp (a 500: the server retries the delivery).

    Usage: ``app.router.add_post("/hooks", webhook_handler(verifier, handle))``.
    """
    from .webhook_aiohttp import make_handler  # noqa: PLC0415 - aiohttp.web on first use

    return make_handler(verifier, handle, max_body_bytes=max_body_bytes)


def webhook_dependency(
    verifier: WebhookVerifier | Callable[[Request], WebhookVerifier],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Callable[[Request], Coroutine[Any, Any, WebhookWake]]:
    """A FastAPI dependency that verifies a webhook request and gives its wake.

    ``verifier`` is a :class:`WebhookVerifier`, or a function of the request that returns
    one (``lambda request: request.app.state.verifier``, for a verifier made in the
    app's lifespan). A refused signature raises ``HTTPException(401)``, a body that is
    not a wake 400, a body over ``max_body_bytes`` 413, a key set that cannot be fetched
    503. Needs FastAPI (``pip install fastapi``).

    Usage::

        verified_wake = webhook_dependency(lambda request: request.app.state.verifier)

        @app.post("/hooks")
        async def hook(wake: Annotated[WebhookWake, Depends(verified_wake)]) -> dict[str, bool]:
            ...
            return webhook_answer(done=True)
    """
    from .webhook_fastapi import make_dependency  # noqa: PLC0415 - FastAPI on first use

    return make_dependency(verifier, max_body_bytes=max_body_bytes)
