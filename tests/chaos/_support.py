"""Shared pieces of the chaos scenarios: scale and seed, exact accounting of messages, and
probes for leaked tasks, sockets, warnings and memory.

``CHAOS_SCALE`` chooses the form: ``small`` (the default, what a plain ``pytest`` and CI
run: seeded, a few minutes in all) or ``full`` (``nox -s chaos``). ``CHAOS_SEED`` changes
the seed of every fault schedule and random choice (default :data:`DEFAULT_SEED`).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = [
    "FULL",
    "RESULTS",
    "SCALE",
    "SEED",
    "LeakProbe",
    "LeakReport",
    "SequenceCheck",
    "check_sequences",
    "record",
    "rss_bytes",
    "scaled",
    "socket_fds",
    "suspended_in",
]

T = TypeVar("T")

DEFAULT_SEED: Final = 20261128
SCALE: Final = os.environ.get("CHAOS_SCALE", "small").strip().lower() or "small"
if SCALE not in ("small", "full"):
    msg = f"CHAOS_SCALE must be 'small' or 'full', got {SCALE!r}"
    raise RuntimeError(msg)
FULL: Final = SCALE == "full"
SEED: Final = int(os.environ.get("CHAOS_SEED", "") or DEFAULT_SEED)

_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
_LIBRARY_DIR: Final = f"{os.sep}durable_streams{os.sep}"


def scaled(small: T, full: T) -> T:
    """``small`` in the reduced form, ``full`` in the full one."""
    return full if FULL else small


# -- results ------------------------------------------------------------------------------

RESULTS: list[dict[str, Any]] = []


def record(scenario: str, **numbers: Any) -> None:
    """Keep a scenario's numbers for the run's summary (and ``CHAOS_REPORT``, if set)."""
    entry = {"scenario": scenario, "scale": SCALE, "seed": SEED, **numbers}
    RESULTS.append(entry)
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")


# -- exact accounting ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequenceCheck:
    """How a list of (producer, n) records compares with what each producer wrote.

    Attributes:
        total: records seen.
        lost: records some producer wrote that are missing.
        duplicated: records seen more than once (each extra copy counts).
        out_of_order: records (first copies) that came before a record of the same
            producer with a higher number.
        foreign: records no producer wrote.
        examples: the first few lost and duplicated records, to start a diagnosis.
    """

    total: int
    lost: int
    duplicated: int
    out_of_order: int
    foreign: int
    examples: Mapping[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Nothing lost, duplicated, reordered or made up."""
        return not (self.lost or self.duplicated or self.out_of_order or self.foreign)


def check_sequences(
    records: Iterable[tuple[int, int]], written: Mapping[int, int]
) -> SequenceCheck:
    """Compare ``records`` with ``written`` (producer -> messages it wrote, numbered 0..n-1)."""
    seen: Counter[tuple[int, int]] = Counter()
    last: dict[int, int] = {}
    out_of_order = foreign = total = 0
    for producer, n in records:
        total += 1
        if producer not in written or not 0 <= n < written[producer]:
            foreign += 1
            continue
        seen[producer, n] += 1
        if seen[producer, n] > 1:
            continue  # a duplicate copy: counted below; order is judged on first copies
        if n < last.get(producer, -1):
            out_of_order += 1
        last[producer] = max(n, last.get(producer, -1))
    duplicated = sum(count - 1 for count in seen.values())
    lost = sum(written.values()) - len(seen)
    examples: dict[str, list[tuple[int, int]]] = {}
    if duplicated:
        examples["duplicated"] = sorted(key for key, count in seen.items() if count > 1)[:5]
    if lost:
        examples["lost"] = [
            (producer, n)
            for producer, count in sorted(written.items())
            for n in range(count)
            if (producer, n) not in seen
        ][:5]
    return SequenceCheck(total, lost, duplicated, out_of_order, foreign, examples)


# -- processes, sockets, memory -----------------------------------------------------------


def socket_fds() -> int:
    """Sockets this process holds open (Linux: ``/proc/self/fd``)."""
    count = 0
    for entry in os.scandir("/proc/self/fd"):
        try:
            if os.readlink(entry.path).startswith("socket:"):
                count += 1
        except OSError:
            continue  # the directory's own descriptor, or one closed meanwhile
    return count


def rss_bytes() -> int:
    """This process's resident set size now (not its peak)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def _awaited(obj: object) -> Iterator[object]:
    """The chain of coroutines (and generators) a suspended coroutine is waiting in."""
    while obj is not None:
        yield obj
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )


def suspended_in(task: asyncio.Task[Any]) -> str:
    """Where a task waits, as the innermost library function (and ``sleep`` if it sleeps).

    For example ``Session._request>sleep`` (a retry backoff) or ``BodyStream.read_chunk``.
    """
    coro = task.get_coro()
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        return "not started"
    library = "outside the library"
    sleeping = False
    for obj in _awaited(coro):
        code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None)
        if code is None:
            continue
        if _LIBRARY_DIR in code.co_filename:
            library = code.co_qualname
            sleeping = False
        elif code.co_name == "sleep":
            sleeping = True
    return f"{library}>sleep" if sleeping else library


@dataclass(slots=True)
class LeakReport:
    """What a :class:`LeakProbe` found once everything was closed."""

    tasks: list[str] = field(default_factory=list)
    sockets: int = 0
    resource_warnings: list[str] = field(default_factory=list)
    unraisable: list[str] = field(default_factory=list)
    loop_errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No leaked task or socket, no warning, no unraisable error, no loop error."""
        return not (
            self.tasks
            or self.sockets
            or self.resource_warnings
            or self.unraisable
            or self.loop_errors
        )


class LeakProbe:
    """Watches for leaks between :meth:`start` and :meth:`finish`.

    It notes the tasks and sockets that exist at the start, records every
    ``ResourceWarning``, every unraisable exception (errors in ``__del__``, such as an
    unclosed session) and every error the event loop reports (a task destroyed while
    pending, an unclosed transport). :meth:`finish` collects garbage and reports what is
    left over: call it after closing everything the test opened.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sockets = 0
        self._warnings: warnings.catch_warnings[list[warnings.WarningMessage]] | None = None
        self._caught: list[warnings.WarningMessage] = []
        self._unraisable: list[str] = []
        self._loop_errors: list[str] = []
        self._old_hook: Any = None
        self._old_handler: Any = None

    def start(self) -> None:
        """Take the baseline and install the hooks."""
        gc.collect()
        self._tasks = asyncio.all_tasks()
        self._sockets = socket_fds()
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always", ResourceWarning)
        self._old_hook = sys.unraisablehook
        sys.unraisablehook = self._on_unraisable
        loop = asyncio.get_running_loop()
        self._old_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_error)

    async def finish(self, *, settle: float = 0.2) -> LeakReport:
        """Let closing transports finish, collect garbage, remove the hooks and report."""
        await asyncio.sleep(settle)
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
        report = LeakReport()
        current = asyncio.current_task()
        report.tasks = sorted(
            repr(task)
            for task in asyncio.all_tasks() - self._tasks
            if task is not current and not task.done()
        )
        report.sockets = max(0, socket_fds() - self._sockets)
        self._restore()
        report.resource_warnings = [
            str(w.message) for w in self._caught if issubclass(w.category, ResourceWarning)
        ]
        report.unraisable = list(self._unraisable)
        report.loop_errors = list(self._loop_errors)
        return report

    def _restore(self) -> None:
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None
        if self._old_hook is not None:
            sys.unraisablehook = self._old_hook
            self._old_hook = None
        asyncio.get_running_loop().set_exception_handler(self._old_handler)

    def _on_unraisable(self, args: Any) -> None:
        self._unraisable.append(f"{args.exc_type.__name__}: {args.exc_value} in {args.object!r}")

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._loop_errors.append(str(context.get("message")) + f" {context.get('exception')!r}")
