"""Configuration records: timeouts, the retry policy and the limits on responses."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ._errors import InvalidArgumentError
from ._protocol.backoff import backoff_delay
from ._protocol.retry import RetryBudget

__all__ = ["Limits", "RetryPolicy", "Timeouts"]

_MiB = 1024 * 1024


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(
            f"{name} must be a positive number of seconds, got {value!r}", argument=name
        )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait, in seconds. ``None`` means no limit.

    Attributes:
        connect: opening a new TCP connection. (Waiting for a free connection in a full
            pool is bounded by ``request`` for ordinary requests, and by ``live_idle`` for
            live reads, which then back off and ask again: size
            ``Session(max_connections=...)`` for your readers.)
        request: a whole non-live request and its response body.
        live_idle: the longest silence tolerated on a live read (long-poll or SSE) before
            the connection is treated as dead and the read reconnects: the wait for the
            answer, for each piece of a long-poll's body, and between bytes of an SSE
            connection. Keep it above the server's long-poll wait (30 s on the reference
            server). The reader enforces it with one timer of its own, not one per
            arrival of bytes.
        sse_probe: the silence on an open SSE connection after which a live reader asks
            the server (with a ``HEAD`` request, keeping the connection) whether the
            stream still exists. A deleted stream's SSE connection may stay open and
            silent; the probe's 404 or 410 ends the read with ``StreamNotFoundError`` or
            ``GoneError`` within about this long. ``None``: never probe.
    """

    connect: float | None = 10.0
    request: float | None = 30.0
    live_idle: float | None = 60.0
    sse_probe: float | None = 10.0

    def __post_init__(self) -> None:
        _positive("connect", self.connect)
        _positive("request", self.request)
        _positive("live_idle", self.live_idle)
        _positive("sse_probe", self.sse_probe)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often transient failures are retried.

    Transient failures are network errors, timeouts, 429 and 5xx (except 501). Other
    statuses are never retried. The delay before retry ``n`` is drawn uniformly from
    ``[0, min(max_delay, initial_delay * multiplier**n)]`` and is at least the server's
    ``Retry-After``.

    Attributes:
        max_retries: retries of one request (create, head, append, close, delete, and a
            catch-up read) before its last error is raised.
        live_max_retries: consecutive failed attempts a live reader (long-poll or SSE)
            tolerates before raising; ``None`` (the default) retries for as long as the
            reader is open, so a tail survives a server restart.
        initial_delay: ceiling of the first delay.
        max_delay: largest ceiling.
        multiplier: growth of the ceiling per retry.
        retry_appends: whether a plain ``Stream.append`` (one without a producer) is
            retried. A retry after a failure the server had in fact stored stores the data
            twice, so retried plain appends are at-least-once; with ``False`` they are
            at-most-once. For exactly-once use :meth:`Stream.producer`, whose retries the
            server deduplicates.
    """

    max_retries: int = 10
    live_max_retries: int | None = None
    initial_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    retry_appends: bool = True

    def __post_init__(self) -> None:
        for name in ("max_retries", "live_max_retries"):
            value = getattr(self, name)
            if value is None and name == "live_max_retries":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(
                    f"{name} must be an integer >= 0, got {value!r}", argument=name
                )
        if not isinstance(self.retry_appends, bool):
            raise InvalidArgumentError(
                f"retry_appends must be a bool, got {self.retry_appends!r}",
                argument="retry_appends",
            )
        _positive("initial_delay", self.initial_delay, allow_none=False)
        _positive("max_delay", self.max_delay, allow_none=False)
        if self.max_delay < self.initial_delay:
            raise InvalidArgumentError(
                f"max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})",
                argument="max_delay",
            )
        if (
            isinstance(self.multiplier, bool)
            or not isinstance(self.multiplier, int | float)
            or not math.isfinite(self.multiplier)
            or self.multiplier < 1
        ):
            raise InvalidArgumentError(
                f"multiplier must be >= 1, got {self.multiplier!r}", argument="multiplier"
            )

    def budget(self, limit: int | None, *, rng: random.Random | None = None) -> RetryBudget:
        """A fresh :class:`RetryBudget` of ``limit`` retries under this policy's delays.

        ``limit`` is usually :attr:`max_retries` (one request) or :attr:`live_max_retries`
        (a live reader's consecutive failures); 0 means a single attempt.
        """
        return RetryBudget(
            limit=limit,
            initial=self.initial_delay,
            multiplier=self.multiplier,
            maximum=self.max_delay,
            rng=rng,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (counting from 0)."""
        return backoff_delay(
            attempt,
            initial=self.initial_delay,
            multiplier=self.multiplier,
            maximum=self.max_delay,
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a server may make the client hold in memory, in bytes.

    The defaults are generous for real streams and stop an untrusted or broken server
    (a decompression bomb, an endless body, an SSE line that never ends) from exhausting
    memory. Exceeding one raises :class:`LimitExceededError`, never ``MemoryError``, and
    a reader's offset stays where it was. See the security page of the docs.

    Attributes:
        max_body_bytes: the largest decoded body read whole: a JSON read response, SSE
            data events waiting for their control event (past it the reader falls back
            to long-poll), and
            any answer to a write, a HEAD or an error. (The reference server answers a
            catch-up read with everything up to the tail: raise this to read a JSON
            stream whose backlog is larger in one response.)
        max_chunk_bytes: the largest piece a byte-stream read delivers at once; bodies
            of byte streams are streamed, so they have no total bound.
        max_sse_line_bytes: the longest line of a Server-Sent Events body.
        max_sse_event_bytes: the largest SSE event (its data lines together).
        max_header_bytes: the longest response status line or header field.
    """

    max_body_bytes: int = 64 * _MiB
    max_chunk_bytes: int = 1 * _MiB
    max_sse_line_bytes: int = 64 * _MiB
    max_sse_event_bytes: int = 64 * _MiB
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(
                    f"{name} must be a positive integer of bytes, got {value!r}", argument=name
                )
