"""Backoff arithmetic: capped exponential growth with full jitter."""

from __future__ import annotations

import math
import random


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    multiplier: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Full jitter: a uniform draw below the capped exponential ceiling, so clients that
    failed together do not retry together. ``Retry-After`` is a floor, not a replacement.
    """
    # Compare in log space: the power itself overflows for large attempts or multipliers.
    if attempt * math.log(multiplier) >= math.log(maximum / initial):
        ceiling = maximum
    else:
        ceiling = initial * multiplier**attempt
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
