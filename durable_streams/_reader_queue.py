"""A reader's positions and its one queue of received messages (pure: no I/O).

A **position** is where a reader stands between two messages. It is a server offset, or,
inside a delivery, the offset the delivery started at and how many units follow it before
the position: messages on JSON streams, bytes on other streams. The stream is append-only,
so "``offset``, then skip ``n``" names the same place forever. Written as a string it is
the offset alone, or ``<offset>,skip=<n>``; no server offset contains a comma or an
equals sign (the protocol forbids both in offsets), so the two never mix.

The **queue** holds what a reader received and has not yet handed out, with the boundaries
of the deliveries it came in. Every reading style takes from this one queue, so mixing
styles continues exactly where the other left off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import length_hint
from typing import Any, Final

from ._errors import InvalidArgumentError
from ._types import Batch

__all__ = [
    "NOTHING",
    "SENTINELS",
    "PendingQueue",
    "Position",
    "check_offset",
    "parse_position",
    "skip_units",
]

SENTINELS: Final = frozenset({"-1", "now"})
_SEPARATOR: Final = ",skip="
_FORBIDDEN_IN_OFFSET: Final = frozenset(",&=?/#% \t\r\n")

NOTHING: Final[Any] = object()
"""What :meth:`PendingQueue.take_item` returns when it holds no message (``None`` is one)."""


def check_offset(offset: object, *, sentinels: bool = True) -> str:
    """Validate an offset given by a caller; offsets are opaque, but never contain these."""
    if not isinstance(offset, str) or not offset:
        raise InvalidArgumentError(
            f"offset must be a non-empty str, got {offset!r}", argument="offset"
        )
    if not sentinels and offset in SENTINELS:
        raise InvalidArgumentError(
            f"offset {offset!r} is a sentinel; pass an offset the server returned",
            argument="offset",
        )
    if any(c in _FORBIDDEN_IN_OFFSET or not c.isprintable() for c in offset):
        raise InvalidArgumentError(
            f"offset {offset!r} contains characters no server offset has", argument="offset"
        )
    return offset


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a stream: ``skip`` units (messages, or bytes) after ``offset``."""

    offset: str
    skip: int = 0

    def __str__(self) -> str:
        return f"{self.offset}{_SEPARATOR}{self.skip}" if self.skip else self.offset


def parse_position(text: object) -> Position:
    """A position from an offset or from a string :attr:`StreamReader.position` returned."""
    if isinstance(text, str) and _SEPARATOR in text:
        offset, _, count = text.partition(_SEPARATOR)
        if not (count.isascii() and count.isdigit()):
            raise InvalidArgumentError(
                f"offset {text!r} is neither a server offset nor a reader position "
                f"('<offset>{_SEPARATOR}<count>')",
                argument="offset",
            )
        if offset == "now":
            raise InvalidArgumentError(
                f"position {text!r} counts from 'now', which is no fixed place",
                argument="offset",
            )
        return Position(check_offset(offset), int(count))
    return Position(check_offset(text))


def skip_units(items: Sequence[Any], skip: int, *, in_bytes: bool) -> tuple[list[Any], int]:
    """``items`` without their first ``skip`` units, and the units still to skip after them."""
    if not skip:
        return items if isinstance(items, list) else list(items), 0
    if not in_bytes:
        dropped = min(skip, len(items))
        return list(items[dropped:]), skip - dropped
    kept: list[Any] = []
    for item in items:
        if skip >= len(item):
            skip -= len(item)
        else:
            kept.append(item[skip:])
            skip = 0
    return kept, skip


class _Entry:
    """One delivery in the queue, or (with no ``end`` yet) a piece of a body still arriving."""

    __slots__ = ("end", "in_bytes", "items", "left", "report", "start")

    def __init__(
        self,
        start: Position,
        items: list[Any],
        *,
        end: Batch[Any] | None,
        report: bool,
        in_bytes: bool,
    ) -> None:
        self.start = start
        self.items = items
        # What is still to hand out. An iterator, so that taking one message costs next()
        # alone: message iteration is the reader's hot path.
        self.left: Iterator[Any] = iter(items)
        self.end = end  # the delivery's offset and flags (its items are unused)
        self.report = report  # worth a Batch even without items (first up-to-date, closed)
        self.in_bytes = in_bytes

    def taken(self) -> int:
        """How many of the items were handed out."""
        return len(self.items) - length_hint(self.left)

    def rest(self) -> list[Any]:
        """The items not handed out yet, handed out now."""
        taken = self.taken()
        self.left = _EXHAUSTED
        return self.items[taken:] if taken else self.items

    def batch(self, items: list[Any]) -> Batch[Any]:
        assert self.end is not None
        end = self.end
        return Batch(items, end.offset, end.cursor, end.up_to_date, end.closed)


_EXHAUSTED: Final[Iterator[Any]] = iter(())


class PendingQueue:
    """Messages received and not yet handed out, with their delivery boundaries.

    A delivery is pushed whole, or, for a byte body that is streamed, as pieces (``end``
    ``None``) followed by an entry that ends them. :meth:`take_item` hands out one
    message, :meth:`take_batch` the rest of one delivery (the pieces of a body joined),
    :meth:`take_all` everything held; :meth:`position` says where the reader stands after
    what was handed out.
    """

    __slots__ = ("_entries", "head")

    def __init__(self) -> None:
        # A list, not a deque: it holds one or two entries nearly always, and a deque costs
        # a 64-slot block per reader (10,000 live readers hold 10,000 queues).
        self._entries: list[_Entry] = []
        self.head: Iterator[Any] = _EXHAUSTED
        """What is left of the first delivery: ``next(queue.head, NOTHING)`` is the fast
        path of :meth:`take_item` (kept by this class alone, after every change)."""

    def _new_head(self) -> None:
        self.head = self._entries[0].left if self._entries else _EXHAUSTED

    def __bool__(self) -> bool:
        return bool(self._entries)

    def push(
        self,
        start: Position,
        items: list[Any],
        *,
        end: Batch[Any] | None,
        report: bool,
        in_bytes: bool,
    ) -> None:
        """Add a delivery starting at ``start``; ``end=None`` for a piece of a body."""
        self._entries.append(_Entry(start, items, end=end, report=report, in_bytes=in_bytes))
        if len(self._entries) == 1:
            self._new_head()

    def body_open(self) -> bool:
        """Whether the last entry is a piece of a body whose end has not been pushed."""
        return bool(self._entries) and self._entries[-1].end is None

    def take_item(self) -> Any:
        """The next message, or :data:`NOTHING`."""
        entries = self._entries
        while entries:
            item = next(entries[0].left, NOTHING)
            if item is not NOTHING:
                return item
            del entries[0]  # handed out entirely (or nothing to hand out)
            self._new_head()
        return NOTHING

    def take_batch(self) -> Batch[Any] | None:
        """The rest of the next delivery worth reporting, or ``None`` until one is whole."""
        try:
            return self._take_batch()
        finally:
            self._new_head()

    def _take_batch(self) -> Batch[Any] | None:
        entries = self._entries
        while entries:
            head = entries[0]
            if head.end is not None:
                del entries[0]
                touched = head.taken() > 0
                items = head.rest()
                # A delivery whose messages were all taken one by one is over, flags too.
                if items or (head.report and not touched):
                    return head.batch(items)
                continue
            ends = next((i for i, e in enumerate(entries) if e.end is not None), None)
            if ends is None:
                return None  # a body still arriving: its batch is not whole yet
            pieces = [piece for entry in entries[:ends] for piece in entry.rest()]
            last = entries[ends]
            del entries[: ends + 1]
            pieces += last.rest()
            joined = b"".join(pieces)
            if joined or last.report:
                return last.batch([joined] if joined else [])
        return None

    def take_all(self) -> list[Any]:
        """Every message held, in order (pieces of a body stay separate)."""
        items = [item for entry in self._entries for item in entry.rest()]
        self._entries.clear()
        self._new_head()
        return items

    def position(self, fetched: Position) -> Position:
        """The position after the last message handed out; ``fetched`` when none is held.

        A delivery that began at ``"now"`` has no known start, so until it is handed out
        entirely the position is ``"now"`` (the one place a position cannot be exact).
        """
        for entry in self._entries:
            if length_hint(entry.left):
                start = entry.start
                if start.offset == "now":
                    return start
                taken = entry.taken()
                if entry.in_bytes:
                    taken = sum(map(len, entry.items[:taken]))
                return Position(start.offset, start.skip + taken)
        return fetched
