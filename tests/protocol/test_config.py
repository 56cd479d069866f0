"""RetryPolicy and Timeouts validation: bad options are refused when they are made."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import durable_streams as ds

# -- RetryPolicy --------------------------------------------------------------------------------


def test_retry_policy_defaults_are_finite() -> None:
    policy = ds.RetryPolicy()
    assert policy.max_retries >= 1
    assert 0 < policy.initial_delay <= policy.max_delay
    assert policy.multiplier >= 1


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": 0},
        {"live_max_retries": 0},
        {"live_max_retries": None},
        {"multiplier": 1},
        {"multiplier": 1.0},
        {"initial_delay": 1, "max_delay": 1},
        {"initial_delay": 0.001, "max_delay": 3600.0},
        {"retry_appends": False},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_retry_policy_accepts_edge_values(options: dict[str, Any]) -> None:
    policy = ds.RetryPolicy(**options)
    for name, value in options.items():
        assert getattr(policy, name) == value


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": "3"},
        {"max_retries": True},
        {"max_retries": None},
        {"live_max_retries": -1},
        {"live_max_retries": False},
        {"initial_delay": 0},
        {"initial_delay": 0.0},
        {"initial_delay": -0.1},
        {"initial_delay": math.nan},
        {"initial_delay": math.inf},
        {"initial_delay": True},
        {"initial_delay": "0.1"},
        {"max_delay": 0},
        {"max_delay": math.nan},
        {"max_delay": False},
        {"initial_delay": 1.0, "max_delay": 0.5},
        {"multiplier": 0.99},
        {"multiplier": 0},
        {"multiplier": -2.0},
        {"multiplier": math.nan},
        {"multiplier": math.inf},
        {"multiplier": True},
        {"multiplier": "2"},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_retry_policy_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ds.InvalidArgumentError) as info:
        ds.RetryPolicy(**options)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ds.UsageError)


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None])
def test_retry_policy_rejects_non_bool_retry_appends(value: Any) -> None:
    # RetryPolicy(retry_appends="false") would otherwise mean "retry appends", the risky
    # at-least-once behaviour, which is the opposite of what the caller wrote.
    with pytest.raises(ds.InvalidArgumentError):
        ds.RetryPolicy(retry_appends=value)


def test_retry_policy_is_frozen() -> None:
    policy = ds.RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = -1  # type: ignore[misc]


# -- Timeouts -----------------------------------------------------------------------------------


def test_timeouts_accept_positive_numbers_and_none() -> None:
    assert ds.Timeouts(connect=1, request=2.5, live_idle=90) == ds.Timeouts(1, 2.5, 90)
    unlimited = ds.Timeouts(connect=None, request=None, live_idle=None)
    assert (unlimited.connect, unlimited.request, unlimited.live_idle) == (None, None, None)


def test_timeouts_default_live_idle_is_above_the_reference_long_poll_wait() -> None:
    # Otherwise every ordinary 30 s long-poll would end as a client timeout.
    live_idle = ds.Timeouts().live_idle
    assert live_idle is None or live_idle > 30


@pytest.mark.parametrize("field", ["connect", "request", "live_idle"])
@pytest.mark.parametrize(
    "value", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "10", [10]], ids=repr
)
def test_timeouts_reject_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ds.InvalidArgumentError) as info:
        ds.Timeouts(**{field: value})
    assert isinstance(info.value, ValueError)


def test_timeouts_are_frozen() -> None:
    timeouts = ds.Timeouts()
    with pytest.raises(dataclasses.FrozenInstanceError):
        timeouts.connect = 0  # type: ignore[misc]
