"""The subscription handle: create or re-confirm, get, delete, and explicit stream links."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._errors import InvalidArgumentError
from .._protocol import headers as h
from .._session import session_wire
from .._transport import Response
from . import wire
from .records import SubscriptionConfig, SubscriptionInfo, check_relative_path

if TYPE_CHECKING:
    from .._protocol.retry import RetryBudget
    from .._session import Session
    from .._stream import Stream
    from .pull import Claim, PullWorker

__all__ = ["Subscription"]

JSON_HEADERS: Mapping[str, str] = {h.CONTENT_TYPE: "application/json"}


class Subscription:
    """A handle on one subscription of the server: a durable cursor over a set of streams.

    Construction does no I/O; get one from :meth:`Session.subscription`. The session's
    ``base_url`` is the *stream root*: the subscription API lives under it
    (``{base_url}/__ds/subscriptions/{id}``), and the stream paths in subscription
    bodies (``events/a``) are names under it, as :meth:`Session.stream` takes them.
    The id is sent as one percent-encoded path segment, whatever it contains.

    Raises:
        InvalidArgumentError: an empty id, one with control characters, or a session
            without a ``base_url``.
    """

    def __init__(self, session: Session, subscription_id: str) -> None:
        self.id = wire.check_subscription_id(subscription_id)
        if session.base_url is None:
            raise InvalidArgumentError(
                "subscriptions need a Session with a base_url (the stream root)",
                argument="base_url",
            )
        self.session = session
        self._root = session.base_url
        self.url = wire.control_url(self._root, self.id)
        """The subscription's control URL."""

    def __repr__(self) -> str:
        return f"<Subscription {self.id!r}>"

    def stream(self, path: str) -> Stream:
        """A handle on the stream at a stream-root-relative ``path`` (no I/O)."""
        return self.session.stream(check_relative_path(path, argument="path"))

    # -- management -----------------------------------------------------------------

    async def create(self, config: SubscriptionConfig) -> SubscriptionInfo:
        """Create the subscription, or re-confirm it if an identical one exists.

        Retried on transient failures (PUT is idempotent). A ``pattern`` links matching
        streams at their current tail: creation does not replay history.

        Returns the record; its ``created`` is True only if this call created it.

        Raises:
            SubscriptionExistsError: a subscription with this id and a different
                configuration exists.
            BadRequestError: the server refused the configuration (for a webhook, a URL
                its SSRF rules reject, or webhooks not enabled).
        """
        if not isinstance(config, SubscriptionConfig):
            raise InvalidArgumentError("config must be a SubscriptionConfig", argument="config")
        response = await self._call(
            "PUT", (), op=wire.CallOp.CREATE, body=wire.encode_config(config)
        )
        return wire.parse_info(response.body, url=self.url, created=response.status == 201)

    async def get(self) -> SubscriptionInfo:
        """The subscription as the server holds it: each stream's link and acked offset.

        Raises:
            SubscriptionNotFoundError: there is no such subscription.
        """
        response = await self._call("GET", (), op=wire.CallOp.GET)
        return wire.parse_info(response.body, url=self.url)

    async def delete(self) -> None:
        """Delete the subscription (its cursors too). Deleting a missing one succeeds.

        Claims and callbacks of a deleted subscription fail from then on.
        """
        await self._call("DELETE", (), op=wire.CallOp.DELETE)

    async def add_streams(self, paths: Iterable[str]) -> None:
        """Link streams explicitly (at their current tail). Linking one again is a no-op.

        Raises:
            SubscriptionNotFoundError: there is no such subscription.
        """
        body = wire.encode_streams(paths)
        await self._call("POST", ("streams",), op=wire.CallOp.STREAMS, body=body)

    async def remove_stream(self, path: str) -> None:
        """Remove a stream's explicit link; a link by ``pattern`` stays. Idempotent.

        Raises:
            SubscriptionNotFoundError: there is no such subscription.
        """
        await self._call("DELETE", wire.stream_action(path), op=wire.CallOp.STREAMS)

    # -- pull-wake --------------------------------------------------------------------

    async def claim(self, worker: str) -> Claim | None:
        """Try once to claim the subscription's pending work for ``worker``.

        Returns a held :class:`Claim` (its heartbeat running), or None when another
        worker holds the lease or there is nothing to do: both are normal. Use the
        claim in ``async with`` (or end it with ``done()``, ``release()`` or
        ``aclose()``).

        Raises:
            SubscriptionNotFoundError: there is no such subscription.
            BadRequestError: it is not a pull-wake subscription.
        """
        from .pull import claim_once  # noqa: PLC0415 - pull imports this module

        return await claim_once(self, worker)

    def worker(self, name: str) -> PullWorker:
        """A worker named ``name`` that follows the wake stream and yields won claims.

        No I/O until it is used: ``async with subscription.worker("w1") as worker:``
        then ``async for claim in worker:``.
        """
        from .pull import PullWorker  # noqa: PLC0415 - pull imports this module

        return PullWorker(self, name)

    # -- requests (internal) ----------------------------------------------------------

    async def _call(
        self,
        method: str,
        action: tuple[str, ...],
        *,
        op: wire.CallOp,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        budget: RetryBudget | None = None,
        generation: int | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Response:
        """Send one control call; a status outside ``ok`` raises its typed error."""
        url = wire.control_url(self._root, self.id, *action)
        sent = dict(JSON_HEADERS) if body is not None else {}
        sent.update(headers or {})
        response = await session_wire(self.session).fetch(
            method,
            url,
            headers=sent,
            body=body,
            budget=budget if budget is not None else session_wire(self.session).budget(),
        )
        if response.status not in ok:
            raise wire.error_for_answer(
                response.status,
                response.headers,
                response.body,
                op=op,
                url=url,
                generation=generation,
            )
        return response
