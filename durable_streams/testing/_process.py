"""The child process's side of things: the ready line, signals to its group, its stdout."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
from typing import IO, NamedTuple

__all__ = ["ReadyInfo", "drain_stdout", "parse_ready_line", "signal_group"]


class ReadyInfo(NamedTuple):
    """The one JSON line ``serve.mjs`` prints once it is listening."""

    url: str
    port: int
    pid: int


def parse_ready_line(text: str) -> ReadyInfo | None:
    """Return the ready info if ``text`` is the ready line, else ``None``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    url, port, pid = data.get("url"), data.get("port"), data.get("pid")
    if isinstance(url, str) and isinstance(port, int) and isinstance(pid, int):
        return ReadyInfo(url=url, port=port, pid=pid)
    return None


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid``, ignoring if gone."""
    # The child is started in its own session, so its pgid equals its pid;
    # signalling the group also reaches anything Node may have spawned.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def drain_stdout(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    """Forward stdout lines to ``lines`` and keep draining until EOF.

    Draining for the life of the process means a chatty server can never
    block on a full pipe; ``None`` marks EOF (the process closed stdout).
    """
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        # The pipe was closed under us during teardown; EOF is all we report.
        pass
    finally:
        lines.put(None)
