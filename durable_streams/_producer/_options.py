"""The producer's options: one keyword set, one record of defaults, validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from .._errors import InvalidArgumentError

__all__ = ["MAX_SAFE_INTEGER", "ProducerConfig", "ProducerOptions", "check_integer", "invalid"]

# Epochs and sequence numbers are JSON numbers on some servers: stay exact as doubles.
MAX_SAFE_INTEGER = 2**53 - 1


class ProducerOptions(TypedDict, total=False):
    """The keyword options :meth:`Stream.producer` forwards to :class:`IdempotentProducer`.

    Their defaults and documentation are on :class:`IdempotentProducer` only.
    """

    epoch: int
    auto_claim: bool
    max_batch_bytes: int
    max_batch_items: int | None
    linger: float
    max_in_flight: int
    max_buffer_bytes: int


def invalid(argument: str, value: object, expected: str) -> InvalidArgumentError:
    """The error for an option that is not what it must be; it always names the option."""
    return InvalidArgumentError(f"{argument} must be {expected}, got {value!r}", argument=argument)


def check_integer(argument: str, value: object, *, low: int, high: int = MAX_SAFE_INTEGER) -> int:
    """``value`` if it is an integer (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(argument, value, f"an integer in [{low}, {high}]")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerConfig:
    """A producer's identity and options, validated once, when the record is made.

    No defaults here: :class:`IdempotentProducer` has them, in its documented signature.
    """

    producer_id: str
    epoch: int
    auto_claim: bool
    max_batch_bytes: int
    max_batch_items: int | None
    linger: float
    max_in_flight: int
    max_buffer_bytes: int

    def __post_init__(self) -> None:
        producer_id = self.producer_id
        if not isinstance(producer_id, str) or not producer_id or not producer_id.isprintable():
            raise invalid("producer_id", producer_id, "a non-empty printable str")
        check_integer("epoch", self.epoch, low=0)
        if not isinstance(self.auto_claim, bool):
            raise invalid("auto_claim", self.auto_claim, "a bool")
        check_integer("max_batch_bytes", self.max_batch_bytes, low=1)
        if self.max_batch_items is not None:
            check_integer("max_batch_items", self.max_batch_items, low=1)
        linger = self.linger
        if (
            isinstance(linger, bool)
            or not isinstance(linger, int | float)
            or not math.isfinite(linger)
            or linger < 0
        ):
            raise invalid("linger", linger, "a number of seconds >= 0")
        object.__setattr__(self, "linger", float(linger))
        check_integer("max_in_flight", self.max_in_flight, low=1, high=1024)
        check_integer("max_buffer_bytes", self.max_buffer_bytes, low=1)
