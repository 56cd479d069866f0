"""Backoff arithmetic: capped exponential ceilings, full jitter, Retry-After as a floor."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol.backoff import backoff_delay


def ceiling(attempt: int, initial: float, multiplier: float, maximum: float) -> float:
    return min(maximum, initial * multiplier**attempt) if attempt < 64 else maximum


@pytest.mark.parametrize(
    ("initial", "multiplier", "maximum"),
    [(0.1, 2.0, 10.0), (0.1, 1.3, 60.0), (1.0, 1.0, 1.0), (0.05, 3.0, 0.5)],
)
def test_delay_stays_between_zero_and_the_capped_ceiling(
    initial: float, multiplier: float, maximum: float
) -> None:
    rng = random.Random(1234)
    for attempt in range(40):
        for _ in range(50):
            delay = backoff_delay(
                attempt, initial=initial, multiplier=multiplier, maximum=maximum, rng=rng
            )
            assert 0.0 <= delay <= ceiling(attempt, initial, multiplier, maximum), attempt


def test_ceiling_grows_then_stops_at_the_maximum() -> None:
    rng = random.Random(7)

    def largest(attempt: int) -> float:
        return max(
            backoff_delay(attempt, initial=0.1, multiplier=2.0, maximum=10.0, rng=rng)
            for _ in range(2000)
        )

    assert largest(0) <= 0.1
    assert 0.1 < largest(3) <= 0.8
    assert 5.0 < largest(20) <= 10.0


def test_full_jitter_spreads_delays_across_the_whole_range() -> None:
    # Clients that failed together must not retry together: delays are drawn uniformly
    # below the ceiling, not bunched at it.
    rng = random.Random(42)
    delays = [
        backoff_delay(5, initial=0.1, multiplier=2.0, maximum=10.0, rng=rng) for _ in range(2000)
    ]
    top = 0.1 * 2**5
    assert all(0.0 <= d < top for d in delays)
    assert min(delays) < 0.1 * top
    assert max(delays) > 0.9 * top
    assert 0.4 * top < sum(delays) / len(delays) < 0.6 * top
    assert len(set(delays)) > 1900


def test_same_seed_gives_the_same_delays() -> None:
    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [
            backoff_delay(a, initial=0.1, multiplier=2.0, maximum=5.0, rng=rng) for a in range(10)
        ]

    assert run(99) == run(99)
    assert run(99) != run(100)


@pytest.mark.parametrize("retry_after", [0.0, 0.05, 5.0, 3600.0])
def test_retry_after_is_a_floor(retry_after: float) -> None:
    rng = random.Random(3)
    for attempt in range(10):
        delay = backoff_delay(
            attempt, initial=0.1, multiplier=2.0, maximum=1.0, retry_after=retry_after, rng=rng
        )
        assert delay >= retry_after
        assert delay <= max(retry_after, 1.0)


def test_retry_after_above_the_maximum_is_honoured() -> None:
    # The server said how long to wait; the client's own cap must not shorten that.
    delay = backoff_delay(0, initial=0.1, multiplier=2.0, maximum=1.0, retry_after=30.0)
    assert delay == 30.0


@pytest.mark.parametrize("attempt", [63, 64, 65, 100, 1023, 1024, 1025, 10_000, 10**9])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    delay = backoff_delay(
        attempt, initial=0.1, multiplier=2.0, maximum=10.0, rng=random.Random(attempt)
    )
    assert math.isfinite(delay)
    assert 0.0 <= delay <= 10.0


@pytest.mark.parametrize(("attempt", "multiplier"), [(60, 1e6), (64, 1e5), (40, 1e10)])
def test_large_multiplier_does_not_overflow(attempt: int, multiplier: float) -> None:
    # RetryPolicy accepts any finite multiplier >= 1, and live readers retry without end.
    ds.RetryPolicy(multiplier=multiplier)
    delay = backoff_delay(
        attempt, initial=0.1, multiplier=multiplier, maximum=10.0, rng=random.Random(0)
    )
    assert 0.0 <= delay <= 10.0


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(0, 100) | st.integers(0, 10**6),
    initial=st.floats(1e-3, 10.0),
    multiplier=st.floats(1.0, 1e6),
    extra=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**32),
)
def test_any_policy_the_config_accepts_gives_a_bounded_delay(
    attempt: int, initial: float, multiplier: float, extra: float, seed: int
) -> None:
    # Every (initial, multiplier, maximum) that RetryPolicy accepts, at any attempt a
    # never-ending live reader may reach.
    maximum = initial + extra
    ds.RetryPolicy(initial_delay=initial, multiplier=multiplier, max_delay=maximum)
    delay = backoff_delay(
        attempt, initial=initial, multiplier=multiplier, maximum=maximum, rng=random.Random(seed)
    )
    assert 0.0 <= delay <= maximum


def test_retry_policy_delay_uses_its_settings() -> None:
    policy = ds.RetryPolicy(initial_delay=0.5, max_delay=2.0, multiplier=3.0)
    for attempt in range(12):
        for _ in range(50):
            assert 0.0 <= policy.delay(attempt) <= min(2.0, 0.5 * 3.0**attempt)
    assert policy.delay(0, retry_after=7.0) >= 7.0
    assert 0.0 <= policy.delay(10_000) <= 2.0
