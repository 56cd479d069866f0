"""The reader's queue and positions on their own: no server, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._reader_queue import (
    NOTHING,
    PendingQueue,
    Position,
    parse_position,
    skip_units,
)


def offset_of(units: int) -> str:
    return f"o{units:06d}"


@pytest.mark.parametrize(
    "text", ["now,skip=1", "o1,skip=", "o1,skip=x", "o1,skip=-1", "o1,skip=²", ",skip=1"]
)
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        parse_position(text)


def test_position_text_round_trips() -> None:
    for position in (Position("o1"), Position("-1", 3), Position("0000_0010", 12)):
        assert parse_position(str(position)) == position
    assert str(Position("o1", 0)) == "o1"


def test_skip_units_counts_messages_or_bytes() -> None:
    assert skip_units([1, 2, 3], 2, in_bytes=False) == ([3], 0)
    assert skip_units([1], 3, in_bytes=False) == ([], 2)
    assert skip_units([b"abc", b"de"], 4, in_bytes=True) == ([b"e"], 0)
    assert skip_units([b"abc"], 5, in_bytes=True) == ([], 2)
    assert skip_units([b"abc"], 0, in_bytes=True) == ([b"abc"], 0)


# -- the queue alone ----------------------------------------------------------------------------


@given(
    sizes=st.lists(st.integers(0, 4), max_size=8),
    ops=st.lists(st.sampled_from(["item", "batch", "all"]), max_size=20),
)
def test_queue_positions_follow_what_was_taken(sizes: list[int], ops: list[str]) -> None:
    """Deliveries of ``sizes`` messages, taken in any order of ways: the messages come once,
    in order, and the position is always the model's (boundary offset, messages after it)."""
    queue = PendingQueue()
    total, bounds = 0, [0]
    for size in sizes:
        start = Position(offset_of(total))
        end: ds.Batch[int] = ds.Batch([], offset_of(total + size))
        queue.push(start, list(range(total, total + size)), end=end, report=True, in_bytes=False)
        total += size
        bounds.append(total)
    fetched = Position(offset_of(total))
    taken: list[int] = []
    for op in ops:
        if op == "item":
            item = queue.take_item()
            if item is not NOTHING:
                taken.append(item)
        elif op == "batch":
            batch = queue.take_batch()
            if batch is not None:
                taken.extend(batch.items)
                assert batch.offset == offset_of(len(taken))  # a batch ends at a boundary
        else:
            taken.extend(queue.take_all())
        assert taken == list(range(len(taken)))
        base = max(b for b in bounds if b <= len(taken))
        assert queue.position(fetched) == Position(offset_of(base), len(taken) - base)
