"""Frozen records of the subscription API: configuration, what the server reports, claims.

Stream paths in these records are stream-root-relative (``events/a``), as the protocol
puts them in its bodies; :meth:`Subscription.stream` turns one into a :class:`Stream`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from .._errors import InvalidArgumentError
from .._protocol import urls

__all__ = [
    "ClaimInfo",
    "ClaimState",
    "LinkType",
    "RunnerStatistics",
    "StreamCursor",
    "SubscriptionConfig",
    "SubscriptionInfo",
    "SubscriptionStream",
    "SubscriptionType",
    "WakeEvent",
    "WebhookSigning",
    "WorkerStatistics",
    "check_relative_path",
]

SubscriptionType: TypeAlias = Literal["pull-wake", "webhook"]
"""How a subscription delivers wakes: to a wake stream (``pull-wake``) or by POST."""

LinkType: TypeAlias = Literal["glob", "explicit"]
"""Why a stream belongs to a subscription: its ``pattern`` matched, or it was listed."""

# The reference server's bounds on lease_ttl_ms (PROTOCOL.md section 6.2).
MIN_LEASE_TTL = 1.0
MAX_LEASE_TTL = 600.0
DEFAULT_LEASE_TTL = 30.0


def check_relative_path(path: object, *, argument: str) -> str:
    """A stream-root-relative path as the protocol writes it (no leading ``/``).

    The same rules as stream names (:meth:`Session.stream`): no dot segments, no empty
    segments, no control characters.
    """
    if not isinstance(path, str):
        raise InvalidArgumentError(
            f"{argument} must be a str, got {type(path).__name__}", argument=argument
        )
    try:
        urls.stream_path(path)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(exc.message, argument=argument) from None
    return path.removeprefix("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionConfig:
    """What a subscription is: the streams it covers and how it wakes its workers.

    Build one with :meth:`pull_wake` or :meth:`webhook`; validated on construction, so a
    bad configuration fails before anything is sent. The server compares the whole
    configuration when it is sent again: re-creating a subscription with an identical one
    confirms it, a different one is refused (:class:`SubscriptionExistsError`).

    Attributes:
        type: ``"pull-wake"`` or ``"webhook"``.
        pattern: a glob over stream-root-relative paths (``*`` one segment, ``**`` any
            number); matching streams join the subscription at their tail when it is
            created, and new ones from their beginning when first appended to.
        streams: explicit stream-root-relative paths, in addition to ``pattern``.
        wake_stream: for pull-wake, the stream (created by you, ``application/json``)
            the server writes wake events to.
        webhook_url: for webhooks, where the server POSTs signed wakes.
        lease_ttl: seconds a claim (or a webhook wake) is held without an ack before the
            server gives the work to someone else; 1 to 600, whole milliseconds.
        description: free text, part of the configuration the server compares.
    """

    type: SubscriptionType
    pattern: str | None = None
    streams: tuple[str, ...] = ()
    wake_stream: str | None = None
    webhook_url: str | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    description: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ("pull-wake", "webhook"):
            raise InvalidArgumentError(
                f"type must be 'pull-wake' or 'webhook', got {self.type!r}", argument="type"
            )
        if self.pattern is not None:
            object.__setattr__(
                self, "pattern", check_relative_path(self.pattern, argument="pattern")
            )
        given: object = self.streams  # typed as a tuple; a caller may pass anything
        if not isinstance(given, tuple | list):
            raise InvalidArgumentError(
                "streams must be a tuple of stream paths", argument="streams"
            )
        paths = tuple(check_relative_path(p, argument="streams") for p in given)
        object.__setattr__(self, "streams", paths)
        if self.pattern is None and not paths:
            raise InvalidArgumentError(
                "a subscription needs a pattern, streams, or both", argument="pattern"
            )
        self._check_delivery()
        self._check_lease_ttl()
        if self.description is not None and not isinstance(self.description, str):
            raise InvalidArgumentError("description must be a str", argument="description")

    def _check_delivery(self) -> None:
        if self.type == "pull-wake":
            if self.wake_stream is None or self.webhook_url is not None:
                raise InvalidArgumentError(
                    "a pull-wake subscription takes a wake_stream and no webhook_url",
                    argument="wake_stream",
                )
            object.__setattr__(
                self, "wake_stream", check_relative_path(self.wake_stream, argument="wake_stream")
            )
            return
        if self.webhook_url is None or self.wake_stream is not None:
            raise InvalidArgumentError(
                "a webhook subscription takes a webhook_url and no wake_stream",
                argument="webhook_url",
            )
        urls.check_absolute(self.webhook_url, argument="webhook_url")

    def _check_lease_ttl(self) -> None:
        ttl = self.lease_ttl
        ok = isinstance(ttl, int | float) and not isinstance(ttl, bool) and math.isfinite(ttl)
        if not ok or not MIN_LEASE_TTL <= ttl <= MAX_LEASE_TTL or ttl * 1000 % 1:
            raise InvalidArgumentError(
                f"lease_ttl must be 1 to 600 seconds in whole milliseconds, got {ttl!r}",
                argument="lease_ttl",
            )

    @property
    def lease_ttl_ms(self) -> int:
        """The lease TTL as the protocol sends it, in milliseconds."""
        return round(self.lease_ttl * 1000)

    @classmethod
    def pull_wake(
        cls,
        wake_stream: str,
        *,
        pattern: str | None = None,
        streams: tuple[str, ...] | list[str] = (),
        lease_ttl: float = DEFAULT_LEASE_TTL,
        description: str | None = None,
    ) -> SubscriptionConfig:
        """A pull-wake subscription: wakes go to ``wake_stream``; workers claim the work."""
        return cls(
            type="pull-wake",
            pattern=pattern,
            streams=tuple(streams),
            wake_stream=wake_stream,
            lease_ttl=lease_ttl,
            description=description,
        )

    @classmethod
    def webhook(
        cls,
        url: str,
        *,
        pattern: str | None = None,
        streams: tuple[str, ...] | list[str] = (),
        lease_ttl: float = DEFAULT_LEASE_TTL,
        description: str | None = None,
    ) -> SubscriptionConfig:
        """A webhook subscription: the server POSTs signed wakes to ``url``."""
        return cls(
            type="webhook",
            pattern=pattern,
            streams=tuple(streams),
            webhook_url=url,
            lease_ttl=lease_ttl,
            description=description,
        )


@dataclass(frozen=True, slots=True)
class SubscriptionStream:
    """One stream of a subscription, as :meth:`Subscription.get` reports it.

    Attributes:
        path: the stream-root-relative path.
        link_type: ``"explicit"`` if it was listed (this wins when both apply), else
            ``"glob"``.
        acked_offset: the subscription's cursor in this stream: reading from it gives
            what is not yet acknowledged (``"-1"``: the beginning).
    """

    path: str
    link_type: LinkType
    acked_offset: str


@dataclass(frozen=True, slots=True)
class StreamCursor:
    """One stream of a claim or a wake: the acknowledged offset and the tail.

    Attributes:
        path: the stream-root-relative path.
        link_type: ``"explicit"`` or ``"glob"``.
        acked_offset: read from here: everything before it is acknowledged.
        tail_offset: the stream's tail when the server answered.
        has_pending: ``tail_offset`` is past ``acked_offset``: there is work.
    """

    path: str
    link_type: LinkType
    acked_offset: str
    tail_offset: str
    has_pending: bool


@dataclass(frozen=True, slots=True)
class WebhookSigning:
    """How the server signs webhook wakes (from a webhook subscription's record).

    Attributes:
        alg: the signature algorithm (``"ed25519"``).
        kid: the server's active key id when it answered.
        jwks_url: where the server publishes its public keys (a JWK Set).
    """

    alg: str
    kid: str
    jwks_url: str


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A subscription as the server holds it.

    Attributes:
        id: the subscription's id.
        type: ``"pull-wake"`` or ``"webhook"``.
        streams: every linked stream with its link type and acknowledged offset.
        lease_ttl: the lease TTL in seconds.
        status: ``"active"``, or ``"failed"`` while a webhook delivery is being retried.
        pattern: the glob, if any.
        wake_stream: the wake stream of a pull-wake subscription.
        webhook_url: the receiver of a webhook subscription.
        signing: a webhook subscription's signing metadata, if the server sent it.
        description: the description, if any.
        created_at: when the server created it (RFC 3339), if it said.
        created: True only in the answer to :meth:`Subscription.create` that created it
            (201); False when an identical subscription existed, and from ``get()``.
    """

    id: str
    type: SubscriptionType
    streams: tuple[SubscriptionStream, ...]
    lease_ttl: float
    status: str
    pattern: str | None = None
    wake_stream: str | None = None
    webhook_url: str | None = None
    signing: WebhookSigning | None = None
    description: str | None = None
    created_at: str | None = None
    created: bool = False

    def acked_offset(self, path: str) -> str | None:
        """The acknowledged offset of the stream at ``path``, or None if it is not linked."""
        path = path.removeprefix("/")
        return next((s.acked_offset for s in self.streams if s.path == path), None)


@dataclass(frozen=True, slots=True)
class WakeEvent:
    """One event of a pull-wake subscription's wake stream.

    Attributes:
        subscription_id: the subscription that has work.
        stream: the stream whose append caused the wake (stream-root-relative).
        generation: the wake's generation (the fencing counter).
        ts: the server's time of the wake, in milliseconds since the epoch, if it said.
    """

    subscription_id: str
    stream: str
    generation: int
    ts: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimInfo:
    """What the server granted a worker that won a claim.

    Attributes:
        subscription_id: the subscription.
        worker: the worker name that claimed.
        wake_id: the wake being worked on; acks must name it.
        generation: the wake's generation; a newer one fences this claim.
        streams: every stream of the subscription, with acknowledged and tail offsets;
            those with ``has_pending`` are the work.
        lease_ttl: seconds the lease lasts without an ack.
        token: the bearer token of this claim (a secret: not in ``repr``).
    """

    subscription_id: str
    worker: str
    wake_id: str
    generation: int
    streams: tuple[StreamCursor, ...]
    lease_ttl: float
    token: str = field(repr=False)

    @property
    def pending(self) -> tuple[StreamCursor, ...]:
        """The streams with work: tail past the acknowledged offset."""
        return tuple(s for s in self.streams if s.has_pending)


class ClaimState(enum.Enum):
    """Where a :class:`Claim` is in its life.

    ``HELD`` until one of: ``DONE`` (finished with ``done()``), ``RELEASED`` (given back,
    also by cancellation or ``aclose()``), ``FENCED`` (the server gave the work to a newer
    generation: the lease expired), or ``FAILED`` (the heartbeat or an ack failed for
    another reason, for example an expired token).
    """

    HELD = "held"
    DONE = "done"
    RELEASED = "released"
    FENCED = "fenced"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """Counters of a :class:`PullWorker` (see :meth:`PullWorker.statistics`).

    Attributes:
        wakes: wake events for this subscription read from the wake stream.
        claim_attempts: claim requests sent.
        claims: claims won.
        already_claimed: attempts another worker had won.
        no_pending_work: attempts that found nothing to do.
    """

    wakes: int
    claim_attempts: int
    claims: int
    already_claimed: int
    no_pending_work: int


@dataclass(frozen=True, slots=True)
class RunnerStatistics:
    """Counters of a :class:`SubscriptionRunner` (see :meth:`SubscriptionRunner.statistics`).

    Attributes:
        claims: claims won.
        batches: batches handled (the handler returned).
        messages: messages in those batches.
        acks: ack requests that succeeded.
        done: claims finished with ``done``.
        released: claims given back (stop, handler failure, cancellation).
        fenced: claims lost to a newer generation.
        active_streams: streams being handled right now.
    """

    claims: int
    batches: int
    messages: int
    acks: int
    done: int
    released: int
    fenced: int
    active_streams: int
