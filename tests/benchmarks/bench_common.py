"""Shared by every Python benchmark child: payloads, memory readings, the result line.

Standard library only: the official PyPI client's child imports this from its own
virtual environment, where neither aiohttp nor our ``durable_streams`` exists.

Protocol with the driver (``run.py``): a child is started as
``python impl_X.py '<spec JSON>'`` and prints exactly one JSON object on its last stdout
line. ``spec["workload"]`` names the workload; the rest are its sizes and stream URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

Spec = dict[str, Any]
Result = dict[str, Any]

MIB = 1024 * 1024
# Fixed seed material: every implementation sends byte-identical payloads.
_BLOB_SEED = b"durable-streams-benchmark-"


def message(i: int) -> dict[str, Any]:
    """The i-th ~100-byte JSON message (as a Python value; serialising it is the client's job)."""
    return {
        "id": i,
        "user": f"user-{i % 9973:05d}",
        "event": "page_view",
        "path": f"/items/{i % 1000:04d}",
        "ok": True,
        "score": (i % 1000) / 8,
    }


def blob(size: int, salt: int = 0) -> bytes:
    """Deterministic, poorly compressible bytes (the benchmark server does not gzip anyway)."""
    out = bytearray()
    counter = salt * 1_000_003
    import hashlib  # noqa: PLC0415 - only byte workloads need it

    while len(out) < size:
        out += hashlib.blake2b(_BLOB_SEED + counter.to_bytes(8, "little"), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


def spec_from_argv() -> Spec:
    """The workload spec passed by the driver as the only argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} '<spec JSON>'")
    spec: Spec = json.loads(sys.argv[1])
    return spec


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes, from /proc/self/status."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def rss() -> int:
    """Current resident memory in bytes."""
    return proc_status()["VmRSS"]


def peak_rss() -> int:
    """Peak resident memory (high-water mark) in bytes."""
    return proc_status()["VmHWM"]


def settled_rss() -> int:
    """Resident memory after a full garbage collection (for per-reader memory deltas)."""
    gc.collect()
    return rss()


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit.

    10,000 live readers hold 10,000 sockets, past the usual soft limit of 1,024 (this
    machine's is 20,000; ``ulimit -Hn`` shows the hard limit, which only root raises).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    """User + system CPU time this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (the server), from /proc; NaN if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(samples_s: Sequence[float]) -> Result:
    """p50 / p99 / max in milliseconds, and the sample count."""
    return {
        "samples": len(samples_s),
        "p50_ms": percentile(samples_s, 50) * 1000,
        "p99_ms": percentile(samples_s, 99) * 1000,
        "max_ms": max(samples_s) * 1000 if samples_s else float("nan"),
    }


class Timer:
    """Wall time (perf_counter) and CPU time of one measured section."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._t0 = 0.0
        self._c0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = cpu_seconds()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = cpu_seconds() - self._c0


def emit(result: Result) -> None:
    """Print the result line (the driver reads the last stdout line) and flush."""
    result.setdefault("peak_rss", peak_rss())
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run_main(
    handlers: Mapping[str, Callable[[Spec], Coroutine[Any, Any, Result]]],
    runner: Callable[[Coroutine[Any, Any, Result]], Result],
) -> None:
    """Dispatch the spec to its handler; ``runner`` turns the handler's coroutine into a result."""
    spec = spec_from_argv()
    raise_fd_limit()
    workload = spec["workload"]
    if workload not in handlers:
        raise SystemExit(f"unknown workload {workload!r}")
    result = runner(handlers[workload](spec))
    result["workload"] = workload
    emit(result)
    sys.stdout.flush()
    # Stalled-producer runs leave connections the server never answers; do not wait on them.
    os._exit(0)


# -- live-reading loops shared by the Python children -----------------------------------


async def measure_latency(
    append: Callable[[int], Awaitable[object]],
    arrivals: asyncio.Queue[tuple[int, float]],
    spec: Spec,
) -> Result:
    """Append message ``i``, wait until the reader delivers it, repeat; warm-up excluded.

    ``append(i)`` sends ``{"seq": i, ...}``; the reader puts ``(seq, perf_counter())`` on
    ``arrivals``. One message is in flight at a time, ``gap_ms`` apart.
    """
    samples: list[float] = []
    for i in range(spec["warmup"] + spec["samples"]):
        t0 = time.perf_counter()
        await append(i)
        seq, t1 = await asyncio.wait_for(arrivals.get(), spec["timeout_s"])
        if seq != i:
            raise RuntimeError(f"expected message {i}, got {seq}")
        if i >= spec["warmup"]:
            samples.append(t1 - t0)
        await asyncio.sleep(spec["gap_ms"] / 1000)
    return latency_summary(samples)


class FanOut:
    """Delivery times of every append to every reader of a fan-out run."""

    def __init__(self, readers: int, appends: int) -> None:
        self.readers = readers
        self.arrived = [[0.0] * readers for _ in range(appends + 1)]
        self.counts = [0] * (appends + 1)
        self.done = [asyncio.Event() for _ in range(appends + 1)]

    def deliver(self, reader: int, msg: dict[str, Any]) -> None:
        """Reader ``reader`` got ``msg`` (``{"k": k, ...}``) now."""
        k = msg["k"]
        self.arrived[k][reader] = time.perf_counter()
        self.counts[k] += 1
        if self.counts[k] == self.readers:
            self.done[k].set()

    def deliverer(self, reader: int) -> Callable[[dict[str, Any]], None]:
        """``deliver`` bound to one reader."""
        return lambda msg: self.deliver(reader, msg)

    async def measure(self, append: Callable[[int], Awaitable[object]], spec: Spec) -> Result:
        """Prime with append 0 (not measured), then time appends 1..n to every reader.

        An append not delivered to every reader within ``timeout_s`` ends the run: its
        missing deliveries count at ``timeout_s`` (so p99 is then a lower bound) and the
        remaining appends are not made. A prime that fails so is measured that way too.
        ``loaded_rss`` is taken once every reader is live (after the prime).
        """
        delays: list[float] = []
        missing = 0
        loaded = 0
        timeout = spec["timeout_s"]
        made = 0
        server = spec.get("server_pid")
        cpu0 = server_cpu0 = float("nan")
        for k in range(len(self.counts)):
            if k == 1:  # the measured appends begin: CPU of both processes from here
                cpu0 = cpu_seconds()
                server_cpu0 = process_cpu_seconds(server) if server else float("nan")
            t0 = time.perf_counter()
            await append(k)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done[k].wait(), timeout)
            complete = self.counts[k] == self.readers
            if k == 0:
                loaded = settled_rss()
            if k > 0 or not complete:
                made += 1
                delays.extend(t - t0 for t in self.arrived[k] if t)
                lost = self.readers - self.counts[k]
                missing += lost
                delays.extend([timeout] * lost)
            if not complete:
                break
            await asyncio.sleep(spec["gap_ms"] / 1000)
        result = latency_summary(delays)
        result.update(loaded_rss=loaded, missing=missing, appends_made=made)
        # Over the measured appends (gaps included): who was busy, client or server.
        result["client_cpu_s"] = cpu_seconds() - cpu0
        result["server_cpu_s"] = (
            process_cpu_seconds(server) - server_cpu0 if server else float("nan")
        )
        return result
