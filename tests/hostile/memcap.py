"""Run a client snippet in a child Python with a memory cap, and measure its peak RSS.

A client that buffers without bound must not take the machine (or the test run) down
with it: the child sets ``RLIMIT_AS`` before it imports anything, so a runaway ends in a
``MemoryError`` in the child and a failed assertion here. The hostile server runs in the
parent's event loop; the child connects to it over loopback.

The snippet is Python source that defines ``async def main() -> dict``; it runs with
``URL`` (the server's URL), ``ARGS`` (a JSON-decoded dict), ``ds`` (``durable_streams``)
and ``describe(exc)`` (an exception as a JSON-able dict) in scope. The child prints one
report: what ``main()`` returned (or ``{"error": describe(exc)}`` if it raised), plus
``peak_rss`` in bytes: ``VmHWM`` of ``/proc/self/status`` at the end. (Not
``ru_maxrss``: Linux carries a process's high-water mark across ``fork`` and ``exec``,
so a child of a large test run would report its parent's peak.)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ChildResult", "run_capped"]

_MiB = 1024 * 1024
DEFAULT_CAP = 1536 * _MiB
_MARK = "HOSTILE-REPORT "

_PRELUDE = """\
import json, resource, sys
_cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (_cap, _cap))
URL = sys.argv[2]
ARGS = json.loads(sys.argv[3])
import asyncio
import durable_streams as ds


def describe(exc):
    return {
        "type": type(exc).__name__,
        "classes": [cls.__name__ for cls in type(exc).__mro__],
        "limit": getattr(exc, "limit", None),
        "maximum": getattr(exc, "maximum", None),
        "offset": getattr(exc, "offset", None),
        "message": str(exc)[:300],
    }

"""

_EPILOGUE = """
try:
    _report = asyncio.run(main())
except BaseException as _exc:
    _report = {"error": describe(_exc)}
def _peak_rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_report["peak_rss"] = _peak_rss()
sys.stdout.write("\\n" + MARK + json.dumps(_report) + "\\n")
""".replace("MARK", repr(_MARK))


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How the child ended.

    Attributes:
        returncode: the child's exit status.
        stdout: everything it printed (the report line included).
        stderr: its standard error (a traceback, if it died).
        report: the report it printed, or ``None`` if it died before.
        peak_rss: its peak resident set size in bytes, from the report.
    """

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    peak_rss: int | None

    def explain(self) -> str:
        """The child's outcome for an assertion message."""
        return f"exit {self.returncode}; report {self.report!r}; stderr:\n{self.stderr[-3000:]}"


async def run_capped(
    snippet: str,
    url: str,
    *,
    args: Mapping[str, Any] | None = None,
    memory_cap: int = DEFAULT_CAP,
    timeout: float = 60.0,
) -> ChildResult:
    """Run ``snippet`` (see the module docstring) in a capped child against ``url``.

    Raises ``AssertionError`` if the child has not finished after ``timeout`` seconds
    (it is killed first).
    """
    source = _PRELUDE + textwrap.dedent(snippet) + _EPILOGUE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        source,
        str(memory_cap),
        url,
        json.dumps(dict(args or {})),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"the child did not finish in {timeout} s; stderr:\n{err.decode()[-3000:]}"
        ) from None
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    report = _report(stdout)
    peak = report.get("peak_rss") if report is not None else None
    assert process.returncode is not None
    return ChildResult(
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        report=report,
        peak_rss=peak if isinstance(peak, int) else None,
    )


def _report(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARK):
            value = json.loads(line[len(_MARK) :])
            return value if isinstance(value, dict) else None
    return None
