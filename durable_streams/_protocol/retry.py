"""One operation's retry budget: the only place that counts retries and draws delays."""

from __future__ import annotations

import random

from .backoff import backoff_delay


class RetryBudget:
    """How many retries an operation has left, and how long to wait before the next.

    Every request loop of the library asks one budget, and only one: ``N`` retries mean
    at most ``N + 1`` requests on the wire. A live reader calls :meth:`reset` when it makes
    progress (its offset advanced), so its limit counts consecutive failures, and backoff
    grows only while nothing is delivered.

    Args:
        limit: retries allowed; ``None`` for no limit.
        initial: ceiling of the first delay, in seconds.
        multiplier: growth of the ceiling per retry.
        maximum: the largest ceiling.
        rng: the random source of the jitter (injectable for tests).
    """

    __slots__ = (
        "_failures",
        "_initial",
        "_limit",
        "_maximum",
        "_multiplier",
        "_rng",
        "_unsent",
        "used",
    )

    def __init__(
        self,
        *,
        limit: int | None,
        initial: float,
        multiplier: float,
        maximum: float,
        rng: random.Random | None = None,
    ) -> None:
        self._limit = limit
        self._initial = initial
        self._multiplier = multiplier
        self._maximum = maximum
        self._rng = rng
        self._failures = 0
        self._unsent = 0
        self.used = 0
        """Retries granted so far (never reset)."""

    @property
    def failures(self) -> int:
        """Failures since the start, or since the last :meth:`reset`."""
        return self._failures

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Spend one retry: the seconds to wait before it, or ``None`` if none is left.

        ``retry_after`` (the server's ``Retry-After``) is a floor under the drawn delay.
        """
        if self._limit is not None and self._failures >= self._limit:
            return None
        delay = backoff_delay(
            self._failures,
            initial=self._initial,
            multiplier=self._multiplier,
            maximum=self._maximum,
            retry_after=retry_after,
            rng=self._rng,
        )
        self._failures += 1
        self._unsent += 1
        self.used += 1
        return delay

    def take_retry(self) -> bool:
        """Whether the request about to be sent is a retry this budget granted.

        The sender calls it once per request, so every granted retry is counted once,
        wherever the failure that caused it was seen (an answer, or a body cut short).
        """
        if self._unsent:
            self._unsent -= 1
            return True
        return False

    def reset(self) -> None:
        """Progress was made: the next failure counts as the first again."""
        self._failures = 0
