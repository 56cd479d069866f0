"""Configuration records: timeouts and the retry policy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._errors import InvalidArgumentError
from ._protocol.backoff import backoff_delay

__all__ = ["RetryPolicy", "Timeouts"]


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
            pool is bounded by ``request`` for ordinary requests, and not at all for live
            reads: size ``Session(max_connections=...)`` for your readers.)
        request: a whole non-live request and its response body.
        live_idle: the longest silence tolerated on a live read (long-poll or SSE) before
            the connection is treated as dead and the read reconnects. Keep it above the
            server's long-poll wait (30 s on the reference server).
    """

    connect: float | None = 10.0
    request: float | None = 30.0
    live_idle: float | None = 60.0

    def __post_init__(self) -> None:
        _positive("connect", self.connect)
        _positive("request", self.request)
        _positive("live_idle", self.live_idle)


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

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (counting from 0)."""
        return backoff_delay(
            attempt,
            initial=self.initial_delay,
            multiplier=self.multiplier,
            maximum=self.max_delay,
            retry_after=retry_after,
        )
