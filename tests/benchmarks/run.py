"""Benchmark driver: ``nox -s bench`` runs this (``-- --quick`` for a smoke run).

It starts one in-memory reference server, prepares the shared streams, and then runs
every workload for every implementation, interleaved (case 1: A B C D, case 2: A B C D,
... and again for each round, the order of A B C D rotating per round), each run in a
fresh child process:

- ``ours``: this repository's client (``impl_ours.py``), with the ``fast`` extra if it is
  installed (``nox -s bench`` installs it);
- ``std``: the same, the ``fast`` extra hidden (the standard ``json`` module only), for the
  workloads the extra can change (the producer's);
- ``uvloop`` (not run by default): ours on uvloop's event loop;
- ``raw``: minimal aiohttp with pre-encoded bodies, the ceiling (``impl_raw.py``);
- ``ts``: the official TypeScript client with its IdempotentProducer (``ts_bench.mjs``);
- ``pypi``: the official Python client from PyPI, in its own venv (``impl_pypi.py``);
- ``base`` (only with ``--baseline DIR``): another checkout's ``impl_ours.py`` with that
  checkout's library (``PYTHONPATH=DIR``, checked by ``impl_base.py``), for "no
  regression" comparisons of ours before and after a change.

Every child warms up on a stream of its own before its measured section. Producer
results are verified by reading the stream back (count and order). Medians over the
rounds go to ``docs/benchmarks/results.json`` (with every raw result), a chart to
``docs/benchmarks/chart.png`` and a table into ``docs/benchmarks.md`` (between the
``results`` markers; the rest of that file is left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # for the tests package, when run as a script

from durable_streams.testing import ReferenceServer, install_server  # noqa: E402
from tests.benchmarks import bench_common as bc  # noqa: E402

IMPLS = ("ours", "std", "uvloop", "base", "raw", "ts", "pypi")
DEFAULT_IMPLS = ("ours", "std", "raw", "ts", "pypi")  # base needs --baseline
OURS_VARIANTS = ("ours", "std", "uvloop")  # impl_ours.py, with spec keys of their own
LABELS = {
    "ours": "ours (aiohttp)",
    "std": "ours, standard json",
    "uvloop": "ours on uvloop",
    "base": "ours before (baseline)",
    "raw": "raw limit",
    "ts": "official TS",
    "pypi": "official PyPI",
}
MIB = bc.MIB
JSON = "application/json"
BYTES = "application/octet-stream"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "produce_json": {"n": 100_000, "warmup_n": 10_000},
        "produce_encoded": {"n": 100_000, "warmup_n": 10_000},
        "produce_append": {"n": 100_000, "warmup_n": 10_000},
        "produce_bytes": {"n": 50, "warmup_n": 5},
        "catchup_json": {"n": 100_000, "warmup_n": 10_000},
        "catchup_bytes": {"mib": 256, "warmup_mib": 16},
        "latency": {"samples": 500, "warmup": 20, "gap_ms": 5, "timeout_s": 10},
        "fanout": {"readers": 1000, "appends": 10, "gap_ms": 500, "timeout_s": 10},
        "fanout_10k": {"readers": 10_000, "appends": 10, "gap_ms": 1000, "timeout_s": 20},
        "memory_read": {"mib": 1024},
        "stalled": {"total_mib": 64, "message_bytes": 1024, "buffer_mib": 8, "stall_s": 2.0},
    },
    "quick": {
        "produce_json": {"n": 20_000, "warmup_n": 2_000},
        "produce_encoded": {"n": 20_000, "warmup_n": 2_000},
        "produce_append": {"n": 20_000, "warmup_n": 2_000},
        "produce_bytes": {"n": 10, "warmup_n": 2},
        "catchup_json": {"n": 20_000, "warmup_n": 2_000},
        "catchup_bytes": {"mib": 32, "warmup_mib": 4},
        "latency": {"samples": 100, "warmup": 10, "gap_ms": 5, "timeout_s": 10},
        "fanout": {"readers": 200, "appends": 5, "gap_ms": 300, "timeout_s": 10},
        "fanout_10k": {"readers": 2_000, "appends": 5, "gap_ms": 500, "timeout_s": 10},
        "memory_read": {"mib": 128},
        "stalled": {"total_mib": 16, "message_bytes": 1024, "buffer_mib": 4, "stall_s": 1.5},
    },
}


# -- talking to the server (stdlib only) ----------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=300) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def create(url: str, content_type: str) -> None:
    status, _, body = http("PUT", url, headers={"Content-Type": content_type})
    if status not in (200, 201):
        raise RuntimeError(f"PUT {url}: {status} {body[:200]!r}")


def delete(url: str) -> None:
    http("DELETE", url)


def append(url: str, body: bytes, content_type: str) -> None:
    status, _, text = http("POST", url, body, {"Content-Type": content_type})
    if status not in (200, 204):
        raise RuntimeError(f"POST {url}: {status} {text[:200]!r}")


def read_back(url: str) -> bytes:
    status, _, body = http("GET", url + "?offset=-1")
    if status != 200:
        raise RuntimeError(f"GET {url}: {status}")
    return body


def fill_json(url: str, n: int) -> None:
    create(url, JSON)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    for start in range(0, n, 10_000):
        values = [bc.message(i) for i in range(start, min(n, start + 10_000))]
        append(url, encode(values).encode(), JSON)


def fill_bytes(url: str, mib: int, chunk: bytes) -> None:
    create(url, BYTES)
    for _ in range(mib):
        append(url, chunk, BYTES)


# -- cases ----------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case needs to build its spec and check its result."""

    server: ReferenceServer
    sizes: dict[str, Any]
    blob_file: str
    shared: dict[str, str]
    serial: Iterator[int]

    def fresh(self, name: str, content_type: str) -> str:
        url = f"{self.server.url}/bench/{name}-{next(self.serial)}"
        create(url, content_type)
        return url


@dataclass
class Case:
    """One row of the results: a workload with its sizes, metric and target."""

    name: str
    title: str
    workload: str
    metric: str  # key of the derived metric that ranks implementations
    unit: str
    higher_is_better: bool
    prepare: Callable[[Ctx], dict[str, Any]]
    derive: Callable[[dict[str, Any], dict[str, Any]], dict[str, float]]
    verify: Callable[[dict[str, Any], dict[str, Any]], str | None] = lambda spec, res: None
    cleanup: Callable[[Ctx, dict[str, Any]], None] = lambda ctx, spec: None
    extra: list[tuple[str, str]] = field(default_factory=list)  # (metric, label) also shown
    only: tuple[str, ...] | None = None  # the implementations that run it (None: all but std)

    def runs(self, impl: str) -> bool:
        return impl in self.only if self.only is not None else impl != "std"


def _verify_json(spec: dict[str, Any], result: dict[str, Any]) -> str | None:
    items = json.loads(read_back(spec["url"]))
    ids = [item["id"] for item in items]
    if ids == list(range(spec["n"])):
        return None
    if sorted(ids) == list(range(spec["n"])):
        return "complete but out of order"
    return f"read back {len(ids)} messages, expected {spec['n']}"


def _verify_bytes(spec: dict[str, Any], result: dict[str, Any]) -> str | None:
    body = read_back(spec["url"])
    expected = spec["n"] * MIB
    if len(body) != expected:
        return f"read back {len(body)} bytes, expected {expected}"
    order = [int.from_bytes(body[i * MIB : i * MIB + 8], "big") for i in range(spec["n"])]
    return None if order == list(range(spec["n"])) else "complete but out of order"


def _drop(*keys: str) -> Callable[[Ctx, dict[str, Any]], None]:
    def cleanup(ctx: Ctx, spec: dict[str, Any]) -> None:
        for key in keys:
            delete(spec[key])

    return cleanup


def _producer(workload: str, sizes: str, **extra: Any) -> Callable[[Ctx], dict[str, Any]]:
    def prepare(ctx: Ctx) -> dict[str, Any]:
        return {
            "workload": workload,
            "url": ctx.fresh(sizes.replace("_", "-"), JSON),
            "warmup_url": ctx.fresh(sizes.replace("_", "-") + "-warm", JSON),
            **ctx.sizes[sizes],
            **extra,
        }

    return prepare


def _produce_bytes(ctx: Ctx) -> dict[str, Any]:
    s = ctx.sizes["produce_bytes"]
    return {
        "workload": "produce_bytes",
        "url": ctx.fresh("produce-bytes", BYTES),
        "warmup_url": ctx.fresh("produce-bytes-warm", BYTES),
        "blob_file": ctx.blob_file,
        **s,
    }


def _catchup_json(ctx: Ctx) -> dict[str, Any]:
    return {
        "workload": "catchup_json",
        "url": ctx.shared["catchup_json"],
        "warmup_url": ctx.shared["catchup_json_warm"],
        "n": ctx.sizes["catchup_json"]["n"],
    }


def _catchup_bytes(ctx: Ctx) -> dict[str, Any]:
    return {
        "workload": "catchup_bytes",
        "url": ctx.shared["catchup_bytes"],
        "warmup_url": ctx.shared["catchup_bytes_warm"],
        "mib": ctx.sizes["catchup_bytes"]["mib"],
    }


def _latency(mode: str) -> Callable[[Ctx], dict[str, Any]]:
    def prepare(ctx: Ctx) -> dict[str, Any]:
        return {
            "workload": "latency",
            "mode": mode,
            "url": ctx.fresh(f"latency-{mode}", JSON),
            **ctx.sizes["latency"],
        }

    return prepare


def _fanout(mode: str, sizes: str = "fanout") -> Callable[[Ctx], dict[str, Any]]:
    def prepare(ctx: Ctx) -> dict[str, Any]:
        return {
            "workload": "fanout",
            "mode": mode,
            "url": ctx.fresh(f"fanout-{mode}", JSON),
            "server_pid": ctx.server.pid,  # for the server's CPU time while measured
            **ctx.sizes[sizes],
        }

    return prepare


def _memory_read(ctx: Ctx) -> dict[str, Any]:
    return {
        "workload": "memory_read",
        "url": ctx.shared["memory_read"],
        "mib": ctx.sizes["memory_read"]["mib"],
    }


def _stalled(ctx: Ctx) -> dict[str, Any]:
    s = ctx.sizes["stalled"]
    url = ctx.fresh("stalled", BYTES)
    # The server holds every POST to this stream unanswered (and unread) for 10 minutes.
    ctx.server.inject_error(url, delay_ms=600_000, count=1_000_000, method="POST")
    return {
        "workload": "stalled",
        "url": url,
        "blob_file": ctx.blob_file,
        "total_bytes": s["total_mib"] * MIB,
        "message_bytes": s["message_bytes"],
        "buffer_limit": s["buffer_mib"] * MIB,
        "stall_s": s["stall_s"],
    }


def _stalled_cleanup(ctx: Ctx, spec: dict[str, Any]) -> None:
    ctx.server.clear_errors()
    delete(spec["url"])


def _rate_msgs(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {"msgs_per_s": r["messages"] / r["wall_s"], "cpu_s": r["cpu_s"], "wall_s": r["wall_s"]}


def _rate_mib(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {"mib_per_s": r["bytes"] / MIB / r["wall_s"], "cpu_s": r["cpu_s"], "wall_s": r["wall_s"]}


def _check_count(key: str, expected: Callable[[dict[str, Any]], int]) -> Callable[..., str | None]:
    def verify(spec: dict[str, Any], result: dict[str, Any]) -> str | None:
        want = expected(spec)
        return None if result[key] == want else f"{key}={result[key]}, expected {want}"

    return verify


def _lat(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"]}


def _fan(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {
        "p99_ms": r["p99_ms"],
        "p50_ms": r["p50_ms"],
        "kib_per_reader": r["rss_per_reader"] / 1024,
        "missing": float(r["missing"]),
        "appends_made": float(r["appends_made"]),
        # CPU per measured append wave, in ms: the client's and the server's.
        "client_cpu_ms": r.get("client_cpu_s", float("nan")) * 1000 / max(r["appends_made"], 1),
        "server_cpu_ms": r.get("server_cpu_s", float("nan")) * 1000 / max(r["appends_made"], 1),
    }


def _mem(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {
        "peak_rss_mib": r["peak_rss"] / MIB,
        "base_rss_mib": r["base_rss"] / MIB,
        "mib_per_s": r["bytes"] / MIB / r["wall_s"],
    }


def _stall(spec: dict[str, Any], r: dict[str, Any]) -> dict[str, float]:
    return {
        "growth_mib": (r["peak_rss"] - r["base_rss"]) / MIB,
        "peak_rss_mib": r["peak_rss"] / MIB,
        "accepted_mib": r["accepted_bytes"] / MIB,
        "blocked": float(bool(r["blocked"])),
        "limit_mib": r.get("buffer_limit", float("nan")) / MIB
        if "buffer_limit" in r
        else float("nan"),
    }


PRODUCERS = ("ours", "std", "uvloop", "raw", "ts")
# Fan-out: CPU time per measured append, of the client process and of the server.
_CPU_ROWS = [("client_cpu_ms", "client CPU ms/append"), ("server_cpu_ms", "server CPU ms/append")]
CASES: list[Case] = [
    Case(
        "produce_json",
        "producer: JSON values (extend)",
        "produce_json",
        "msgs_per_s",
        "msg/s",
        True,
        _producer("produce_json", "produce_json"),
        _rate_msgs,
        _verify_json,
        _drop("url", "warmup_url"),
        only=(*PRODUCERS, "pypi"),
    ),
    Case(
        "produce_encoded",
        "producer: pre-encoded JSON",
        "produce_encoded",
        "msgs_per_s",
        "msg/s",
        True,
        _producer("produce_encoded", "produce_encoded"),
        _rate_msgs,
        _verify_json,
        _drop("url", "warmup_url"),
        only=PRODUCERS,
    ),
    Case(
        "produce_append",
        "producer: JSON values, append() each",
        "produce_json",
        "msgs_per_s",
        "msg/s",
        True,
        _producer("produce_json", "produce_append", api="append"),
        _rate_msgs,
        _verify_json,
        _drop("url", "warmup_url"),
        only=("ours", "std", "uvloop", "base"),
    ),
    Case(
        "produce_bytes",
        "producer: 1 MiB messages",
        "produce_bytes",
        "mib_per_s",
        "MiB/s",
        True,
        _produce_bytes,
        _rate_mib,
        _verify_bytes,
        _drop("url", "warmup_url"),
    ),
    Case(
        "catchup_json",
        "catch-up read: JSON messages",
        "catchup_json",
        "msgs_per_s",
        "msg/s",
        True,
        _catchup_json,
        _rate_msgs,
        _check_count("messages", lambda spec: spec["n"]),
    ),
    Case(
        "catchup_bytes",
        "catch-up read: byte stream",
        "catchup_bytes",
        "mib_per_s",
        "MiB/s",
        True,
        _catchup_bytes,
        _rate_mib,
        _check_count("bytes", lambda spec: spec["mib"] * MIB),
    ),
    Case(
        "latency_longpoll",
        "live latency, long-poll",
        "latency",
        "p50_ms",
        "p50 ms",
        False,
        _latency("long-poll"),
        _lat,
        cleanup=_drop("url"),
        extra=[("p99_ms", "p99 ms")],
    ),
    Case(
        "latency_sse",
        "live latency, SSE",
        "latency",
        "p50_ms",
        "p50 ms",
        False,
        _latency("sse"),
        _lat,
        cleanup=_drop("url"),
        extra=[("p99_ms", "p99 ms")],
    ),
    Case(
        "fanout_sse",
        "fan-out, SSE readers",
        "fanout",
        "p99_ms",
        "p99 ms",
        False,
        _fanout("sse"),
        _fan,
        cleanup=_drop("url"),
        extra=[("kib_per_reader", "KiB/reader"), ("missing", "missed"), *_CPU_ROWS],
    ),
    Case(
        "fanout_longpoll",
        "fan-out, long-poll readers",
        "fanout",
        "p99_ms",
        "p99 ms",
        False,
        _fanout("long-poll"),
        _fan,
        cleanup=_drop("url"),
        extra=[("kib_per_reader", "KiB/reader"), ("missing", "missed"), *_CPU_ROWS],
    ),
    Case(
        "fanout_sse_10k",
        "fan-out, 10,000 SSE readers",
        "fanout",
        "p99_ms",
        "p99 ms",
        False,
        _fanout("sse", "fanout_10k"),
        _fan,
        cleanup=_drop("url"),
        extra=[
            ("kib_per_reader", "KiB/reader"),
            ("missing", "missed"),
            ("p50_ms", "p50 ms"),
            *_CPU_ROWS,
        ],
        only=("ours", "uvloop", "raw"),
    ),
    Case(
        "fanout_longpoll_10k",
        "fan-out, 10,000 long-poll readers",
        "fanout",
        "p99_ms",
        "p99 ms",
        False,
        _fanout("long-poll", "fanout_10k"),
        _fan,
        cleanup=_drop("url"),
        extra=[
            ("kib_per_reader", "KiB/reader"),
            ("missing", "missed"),
            ("p50_ms", "p50 ms"),
            *_CPU_ROWS,
        ],
        only=("ours", "uvloop", "raw"),
    ),
    Case(
        "memory_read",
        "memory: reading a large byte stream",
        "memory_read",
        "peak_rss_mib",
        "MiB peak RSS",
        False,
        _memory_read,
        _mem,
        _check_count("bytes", lambda spec: spec["mib"] * MIB),
        extra=[("mib_per_s", "MiB/s")],
    ),
    Case(
        "stalled",
        "memory: producer with a stalled server",
        "stalled",
        "growth_mib",
        "MiB RSS growth",
        False,
        _stalled,
        _stall,
        cleanup=_stalled_cleanup,
        extra=[("accepted_mib", "MiB accepted"), ("blocked", "append blocked")],
    ),
]
CASE_BY_NAME = {case.name: case for case in CASES}


# -- running children -----------------------------------------------------------------


@dataclass
class Interpreters:
    python: str
    pypi_python: str | None
    node: str
    baseline: Path | None = None  # another checkout of this repository, for ``base``

    def command(self, impl: str, spec: dict[str, Any]) -> list[str] | None:
        if impl == "std":
            spec = {**spec, "no_fast": True}
        elif impl == "uvloop":
            spec = {**spec, "loop": "uvloop"}
        arg = json.dumps(spec)
        if impl in OURS_VARIANTS:
            return [self.python, str(HERE / "impl_ours.py"), arg]
        if impl == "base":
            if self.baseline is None:
                return None
            return [self.python, str(HERE / "impl_base.py"), str(self.baseline), arg]
        if impl == "raw":
            return [self.python, str(HERE / "impl_raw.py"), arg]
        if impl == "pypi":
            if self.pypi_python is None:
                return None
            return [self.pypi_python, str(HERE / "impl_pypi.py"), arg]
        if impl == "ts":
            return [self.node, "--expose-gc", str(HERE / "ts_bench.mjs"), arg]
        raise ValueError(impl)

    def env(self, impl: str) -> dict[str, str]:
        env = child_env()
        if impl == "base" and self.baseline is not None:
            # In front of the editable install's path entry (impl_base.py checks it won).
            env["PYTHONPATH"] = str(self.baseline)
        return env


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing may put this repository's durable_streams in front of the PyPI one.
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONASYNCIODEBUG", None)
    env["PYTHONHASHSEED"] = "0"
    return env


def run_child(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=HERE,
            env=child_env() if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        return {"error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_s"] = time.perf_counter() - started
    return result


# -- summary --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return statistics.median(clean) if clean else float("nan")


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for case in CASES:
        per_impl: dict[str, dict[str, Any]] = {}
        for impl in IMPLS:
            runs = [
                r
                for r in records
                if r["case"] == case.name and r["impl"] == impl and "derived" in r
            ]
            if not runs:
                continue
            keys = runs[0]["derived"].keys()
            per_impl[impl] = {
                key: {
                    "median": median([r["derived"][key] for r in runs]),
                    "min": min(r["derived"][key] for r in runs),
                    "max": max(r["derived"][key] for r in runs),
                }
                for key in keys
            }
            per_impl[impl]["rounds"] = len(runs)
            per_impl[impl]["problems"] = sorted({r["problem"] for r in runs if r.get("problem")})
        summary[case.name] = per_impl
    return summary


def med(summary: dict[str, Any], case: str, impl: str, key: str) -> float:
    try:
        return float(summary[case][impl][key]["median"])
    except KeyError:
        return float("nan")


@dataclass
class Target:
    area: str
    text: str
    value: str
    met: bool | None  # None: not measured


def _ratio(a: float, b: float) -> float:
    return a / b if b == b and b != 0 and a == a else float("nan")


def _cmp(ok: bool, *values: float) -> bool | None:
    return None if any(v != v for v in values) else ok


def evaluate(summary: dict[str, Any], sizes: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []

    def m(case: str, impl: str, key: str) -> float:
        return med(summary, case, impl, key)

    def versus(area: str, case: str, key: str, min_pypi: float) -> list[Target]:
        """ours >= 0.9x raw, ahead of TS, >= min_pypi x PyPI; raw's own ratios as the ceiling."""
        ours, raw, ts, pypi = (m(case, i, key) for i in ("ours", "raw", "ts", "pypi"))
        r_raw, r_ts, r_py = _ratio(ours, raw), _ratio(ours, ts), _ratio(ours, pypi)
        ceil_ts, ceil_py = _ratio(raw, ts), _ratio(raw, pypi)
        return [
            Target(area, f"{case}: >= 0.9x raw", f"{r_raw:.2f}x", _cmp(r_raw >= 0.9, r_raw)),
            Target(
                area,
                f"{case}: ahead of TS",
                f"{r_ts:.2f}x (raw: {ceil_ts:.2f}x)",
                _cmp(r_ts > 1.0, r_ts),
            ),
            Target(
                area,
                f"{case}: >= {min_pypi:g}x PyPI",
                f"{r_py:.2f}x (raw: {ceil_py:.2f}x)",
                _cmp(r_py >= min_pypi, r_py),
            ),
        ]

    # Issue 14: pre-encoded input >= 0.9x raw (pre-encoded) and ahead of TS; Python values
    # >= 0.7x raw pre-encoded and ahead of TS; catch-up by async for >= 1.0x raw.
    enc = {i: m("produce_encoded", i, "msgs_per_s") for i in ("ours", "raw", "ts")}
    val = {i: m("produce_json", i, "msgs_per_s") for i in ("ours", "raw", "ts", "pypi")}
    r_enc, r_val = _ratio(enc["ours"], enc["raw"]), _ratio(val["ours"], enc["raw"])
    targets += [
        Target(
            "producer",
            "pre-encoded: >= 0.9x raw (pre-encoded)",
            f"{r_enc:.2f}x",
            _cmp(r_enc >= 0.9, r_enc),
        ),
        Target(
            "producer",
            "pre-encoded: ahead of TS (pre-serialised strings)",
            f"{_ratio(enc['ours'], enc['ts']):.2f}x (raw: {_ratio(enc['raw'], enc['ts']):.2f}x)",
            _cmp(enc["ours"] > enc["ts"], enc["ours"], enc["ts"]),
        ),
        Target(
            "producer",
            "Python values: >= 0.7x raw (pre-encoded)",
            f"{r_val:.2f}x (raw with json.dumps timed: {_ratio(val['raw'], enc['raw']):.2f}x)",
            _cmp(r_val >= 0.7, r_val),
        ),
        Target(
            "producer",
            "Python values: ahead of TS",
            f"{_ratio(val['ours'], val['ts']):.2f}x",
            _cmp(val["ours"] > val["ts"], val["ours"], val["ts"]),
        ),
        Target(
            "producer",
            "Python values: >= 10x PyPI",
            f"{_ratio(val['ours'], val['pypi']):.2f}x "
            f"(raw: {_ratio(enc['raw'], val['pypi']):.2f}x)",
            _cmp(_ratio(val["ours"], val["pypi"]) >= 10, val["ours"], val["pypi"]),
        ),
    ]
    targets += versus("producer", "produce_bytes", "mib_per_s", 10)
    cj = {i: m("catchup_json", i, "msgs_per_s") for i in ("ours", "raw")}
    targets.append(
        Target(
            "catch-up",
            "catchup_json: async for >= 1.0x raw (json.loads per response)",
            f"{_ratio(cj['ours'], cj['raw']):.2f}x",
            _cmp(cj["ours"] >= cj["raw"], cj["ours"], cj["raw"]),
        )
    )
    targets += versus("catch-up", "catchup_json", "msgs_per_s", 1.5)
    targets += versus("catch-up", "catchup_bytes", "mib_per_s", 1.5)
    for case in ("latency_longpoll", "latency_sse"):
        ours, raw, ts, pypi = (m(case, i, "p50_ms") for i in ("ours", "raw", "ts", "pypi"))
        best = min(v for v in (ts, pypi) if v == v) if (ts == ts or pypi == pypi) else float("nan")
        targets += [
            Target(
                "latency",
                f"{case}: p50 no worse than TS and PyPI",
                f"{ours:.2f} ms vs {ts:.2f} / {pypi:.2f} ms",
                _cmp(ours <= best, ours, best),
            ),
            Target(
                "latency",
                f"{case}: p50 <= 1.5x raw",
                f"{_ratio(ours, raw):.2f}x",
                _cmp(ours <= 1.5 * raw, ours, raw),
            ),
        ]
    readers = sizes["fanout"]["readers"]
    for case in ("fanout_sse", "fanout_longpoll"):
        p99, kib, missing = (m(case, "ours", k) for k in ("p99_ms", "kib_per_reader", "missing"))
        targets += [
            Target(
                "fan-out",
                f"{case}: {readers} readers, p99 <= 250 ms, all delivered",
                f"{p99:.0f} ms, {missing:.0f} missed",
                _cmp(p99 <= 250 and missing == 0, p99, missing),
            ),
            Target(
                "fan-out",
                f"{case}: <= 100 KiB RSS per reader",
                f"{kib:.1f} KiB",
                _cmp(kib <= 100, kib),
            ),
        ]
    lp, lp_raw = m("fanout_longpoll", "ours", "p99_ms"), m("fanout_longpoll", "raw", "p99_ms")
    targets.append(
        Target(
            "fan-out",
            f"fanout_longpoll: {readers} readers, p99 no worse than raw",
            f"{lp:.0f} ms vs {lp_raw:.0f} ms ({_ratio(lp, lp_raw):.2f}x)",
            _cmp(lp <= lp_raw, lp, lp_raw),
        )
    )
    many = sizes.get("fanout_10k", {}).get("readers", 10_000)
    for case in ("fanout_sse_10k", "fanout_longpoll_10k"):
        p99, kib, missing = (m(case, "ours", k) for k in ("p99_ms", "kib_per_reader", "missing"))
        raw99 = m(case, "raw", "p99_ms")
        targets += [
            Target(
                "fan-out",
                f"{case}: {many:,} readers, p99 <= 250 ms, all delivered",
                f"{p99:.0f} ms, {missing:.0f} missed (raw: {raw99:.0f} ms)",
                _cmp(p99 <= 250 and missing == 0, p99, missing),
            ),
            Target(
                "fan-out",
                f"{case}: <= 20 KiB RSS per reader",
                f"{kib:.1f} KiB (raw: {m(case, 'raw', 'kib_per_reader'):.1f} KiB)",
                _cmp(kib <= 20, kib),
            ),
        ]
    peak = m("memory_read", "ours", "peak_rss_mib")
    targets.append(
        Target(
            "memory",
            f"read {sizes['memory_read']['mib']} MiB: peak RSS <= 100 MiB",
            f"{peak:.1f} MiB",
            _cmp(peak <= 100, peak),
        )
    )
    growth = m("stalled", "ours", "growth_mib")
    blocked = m("stalled", "ours", "blocked")
    limit = sizes["stalled"]["buffer_mib"]
    targets.append(
        Target(
            "memory",
            f"stalled producer bounded by its buffer limit ({limit} MiB)",
            f"RSS +{growth:.1f} MiB, append blocked: {bool(blocked)}",
            _cmp(blocked == 1 and growth <= 2 * limit, growth, blocked),
        )
    )
    return targets


# -- output ---------------------------------------------------------------------------


def _fmt(value: float, unit: str) -> str:
    if value != value:
        return "n/a"
    if unit == "missed":
        return f"{value:,.0f}"
    if unit == "append blocked":
        return "yes" if value >= 0.5 else "no"
    if unit in ("msg/s",):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(summary: dict[str, Any], case: Case, impl: str, key: str, unit: str) -> str:
    try:
        stats = summary[case.name][impl][key]
    except KeyError:
        return "n/a"
    text = _fmt(stats["median"], unit)
    missing = summary[case.name][impl].get("missing", {}).get("median", 0)
    if key == case.metric and case.workload == "fanout" and missing > 0:
        text = ">= " + text  # undelivered messages were counted at the timeout
    if summary[case.name][impl].get("problems"):
        text += " (!)"
    return text


RATIO_NAMES = {
    "std": "std",
    "uvloop": "uvloop",
    "base": "before",
    "raw": "raw",
    "ts": "TS",
    "pypi": "PyPI",
}


def results_table(summary: dict[str, Any], impls: list[str] | None = None) -> list[str]:
    """One column per implementation of the run (all of them if not given), then ratios."""
    shown = [i for i in IMPLS if (i in impls if impls is not None else i in DEFAULT_IMPLS)]
    others = [i for i in shown if i != "ours"]
    head = "| case | metric | " + " | ".join(LABELS[i] for i in shown) + " | "
    head += " | ".join(f"ours / {RATIO_NAMES[i]}" for i in others) + " |"
    lines = [head, "|" + "---|" * (len(shown) + len(others) + 2)]
    for case in CASES:
        rows = [(case.metric, case.unit, True), *((k, label, False) for k, label in case.extra)]
        for key, unit, primary in rows:
            cells = [_cell(summary, case, impl, key, unit) for impl in shown]
            ratios = []
            for other in others:
                ours = med(summary, case.name, "ours", key)
                r = _ratio(ours, med(summary, case.name, other, key))
                ratios.append("" if not primary or r != r else f"{r:.2f}x")
            title = case.title if primary else ""
            lines.append(f"| {title} | {unit} | " + " | ".join(cells + ratios) + " |")
    return lines


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| area | target | measured | met |", "|---|---|---|---|"]
    for t in targets:
        mark = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.area} | {t.text} | {t.value} | {mark} |")
    return lines


def render_results(meta: dict[str, Any], summary: dict[str, Any], targets: list[Target]) -> str:
    sizes = meta["sizes"]
    out = [
        f"Run of {meta['finished']} ({meta['mode']} sizes, {meta['rounds']} rounds, "
        f"{meta['duration_min']:.1f} min). Medians over the rounds; ratios are medians of "
        "ours divided by medians of the other (for times and memory, lower is better, so a "
        "ratio below 1 favours ours). `(!)` marks a case where a run failed its check "
        "(see `results.json`).",
        "",
        "Command: `" + meta["command"] + "`",
        "",
        "| machine | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in meta["machine"].items()]
    out += ["", "| software | version |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in meta["versions"].items()]
    out += [
        "",
        "Sizes: producer {pj} JSON messages and {pb} x 1 MiB; catch-up {cj} JSON messages "
        "and {cb} MiB; latency {ls} samples per mode; fan-out {fr} readers x {fa} appends, "
        "and {fk} readers x {fka} appends; memory: read {mr} MiB, stall with {st} MiB offered "
        "against a {sb} MiB buffer. Soft limit on open files in every child: {fd}.".format(
            fk=f"{sizes.get('fanout_10k', {}).get('readers', 0):,}",
            fka=sizes.get("fanout_10k", {}).get("appends", 0),
            fd=meta.get("fd_limit", "n/a"),
            pj=f"{sizes['produce_json']['n']:,}",
            pb=sizes["produce_bytes"]["n"],
            cj=f"{sizes['catchup_json']['n']:,}",
            cb=sizes["catchup_bytes"]["mib"],
            ls=sizes["latency"]["samples"],
            fr=sizes["fanout"]["readers"],
            fa=sizes["fanout"]["appends"],
            mr=sizes["memory_read"]["mib"],
            st=sizes["stalled"]["total_mib"],
            sb=sizes["stalled"]["buffer_mib"],
        ),
        "",
        "### Results",
        "",
        *results_table(summary, list(meta.get("implementations", IMPLS))),
        "",
        "### Targets",
        "",
        *targets_table(targets),
        "",
        "![benchmark chart](benchmarks/chart.png)",
    ]
    return "\n".join(out) + "\n"


START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_doc(doc: Path, text: str) -> None:
    current = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in current or END not in current:
        current += f"\n{START}\n{END}\n"
    head, _, rest = current.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{START}\n{text}{END}{tail}")


# Dashed lines in the chart: the absolute targets for ours.
TARGET_LINES: dict[str, Callable[[dict[str, Any]], float]] = {
    "fanout_sse": lambda sizes: 250.0,
    "fanout_longpoll": lambda sizes: 250.0,
    "fanout_sse_10k": lambda sizes: 250.0,
    "fanout_longpoll_10k": lambda sizes: 250.0,
    "memory_read": lambda sizes: 100.0,
    "stalled": lambda sizes: float(sizes["stalled"]["buffer_mib"]),
}


def chart(path: Path, summary: dict[str, Any], sizes: dict[str, Any]) -> bool:
    try:  # installed by `nox -s bench` only; untyped here
        mpl: Any = importlib.import_module("matplotlib")
        mpl.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        print("matplotlib is not installed: no chart (nox -s bench installs it)")
        return False
    colours = {
        "ours": "#1f77b4",
        "std": "#aec7e8",
        "uvloop": "#17becf",
        "base": "#9467bd",
        "raw": "#7f7f7f",
        "ts": "#ff7f0e",
        "pypi": "#2ca02c",
    }
    rows = -(-len(CASES) // 5)
    fig, axes = plt.subplots(rows, 5, figsize=(22, 4.2 * rows))
    for ax in list(axes.flat)[len(CASES) :]:
        ax.set_visible(False)
    for ax, case in zip(axes.flat, CASES, strict=False):
        names, values, lows, highs, cols = [], [], [], [], []
        for impl in IMPLS:
            stats = summary.get(case.name, {}).get(impl, {}).get(case.metric)
            if stats is None:
                continue
            names.append(impl)
            values.append(stats["median"])
            lows.append(stats["median"] - stats["min"])
            highs.append(stats["max"] - stats["median"])
            cols.append(colours[impl])
        ax.bar(names, values, yerr=[lows, highs], color=cols, capsize=3)
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 15:
            ax.set_yscale("log")
        if case.name in TARGET_LINES:
            line = TARGET_LINES[case.name](sizes)
            ax.axhline(line, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate("target", (len(names) - 0.5, line), ha="right", va="bottom", fontsize=7)
        better = "higher" if case.higher_is_better else "lower"
        scale = ", log scale" if ax.get_yscale() == "log" else ""
        ax.set_title(f"{case.title}\n({case.unit}, {better} is better{scale})", fontsize=9)
        ax.tick_params(labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(_fmt(v, case.unit), (i, v), ha="center", va="bottom", fontsize=7)
    fig.suptitle(
        "durable_streams benchmarks: medians over rounds, error bars from min to max, "
        "dashed: the target for ours"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# -- environment ----------------------------------------------------------------------


def _capture(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return out.stdout.strip() or "n/a"


def _npm_version(package_json: Path) -> str:
    try:
        return str(json.loads(package_json.read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "n/a"


def library_fingerprint() -> str:
    """A hash of our package's sources, to notice the library changing during a run."""
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    for path in sorted((ROOT / "durable_streams").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, str]:
    cpu = "n/a"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "n/a"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        kib = int(f.readline().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores (shared with other work: noisy)",
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
    }


def versions(interp: Interpreters) -> dict[str, str]:
    probe = (
        "import importlib.metadata as m, sys;"
        "print(sys.version.split()[0], *(m.version(p) for p in sys.argv[1:]))"
    )
    ours = _capture([interp.python, "-c", probe, "durable-streams-aio", "aiohttp"]).split()
    commit = _capture(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _capture(["git", "-C", str(ROOT), "status", "--porcelain", "durable_streams"])
    info = {
        "Python (ours, raw)": ours[0] if ours else "n/a",
        "durable_streams (ours)": (
            f"{ours[1]} @ {commit}{' + uncommitted changes' if dirty != 'n/a' else ''}"
            if len(ours) > 1
            else "n/a"
        ),
        "aiohttp": ours[2] if len(ours) > 2 else "n/a",
    }
    if interp.pypi_python:
        pypi = _capture([interp.pypi_python, "-c", probe, "durable-streams", "httpx"]).split()
        if len(pypi) == 3:
            info["durable-streams (PyPI)"] = f"{pypi[1]} (httpx {pypi[2]}, Python {pypi[0]})"
    ts_pkg = HERE / "ts" / "node_modules" / "@durable-streams" / "client" / "package.json"
    server_pkg = install_server() / "node_modules" / "@durable-streams" / "server" / "package.json"
    if interp.baseline is not None:
        base_commit = _capture(["git", "-C", str(interp.baseline), "rev-parse", "--short", "HEAD"])
        base_dirty = _capture(
            ["git", "-C", str(interp.baseline), "status", "--porcelain", "durable_streams"]
        )
        info["durable_streams (base)"] = base_commit + (
            " + uncommitted changes" if base_dirty != "n/a" else ""
        )
    info["@durable-streams/client (TS)"] = _npm_version(ts_pkg)
    info["Node"] = _capture([interp.node, "--version"])
    info["@durable-streams/server"] = f"{_npm_version(server_pkg)} (in-memory, gzip off, 127.0.0.1)"
    return info


# -- main -----------------------------------------------------------------------------


def prepare_shared(server: ReferenceServer, sizes: dict[str, Any], blob: bytes) -> dict[str, str]:
    base = server.url + "/bench/shared"
    shared = {
        "catchup_json": f"{base}/catchup-json",
        "catchup_json_warm": f"{base}/catchup-json-warm",
        "catchup_bytes": f"{base}/catchup-bytes",
        "catchup_bytes_warm": f"{base}/catchup-bytes-warm",
        "memory_read": f"{base}/memory-read",
    }
    fill_json(shared["catchup_json"], sizes["catchup_json"]["n"])
    fill_json(shared["catchup_json_warm"], sizes["catchup_json"]["warmup_n"])
    fill_bytes(shared["catchup_bytes"], sizes["catchup_bytes"]["mib"], blob)
    fill_bytes(shared["catchup_bytes_warm"], sizes["catchup_bytes"]["warmup_mib"], blob)
    fill_bytes(shared["memory_read"], sizes["memory_read"]["mib"], blob)
    return shared


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of every case (default 3)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    names = ",".join(c.name for c in CASES)
    p.add_argument("--cases", default=names, help=f"comma-separated, of: {names}")
    p.add_argument(
        "--impls",
        default=",".join(DEFAULT_IMPLS),
        help="comma-separated: ours,raw,ts,pypi (and base, with --baseline)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of this repository (a git worktree of an older commit): "
        "adds the implementation base, its impl_ours.py run with PYTHONPATH=BASELINE",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for ours and raw")
    p.add_argument("--pypi-python", help="interpreter of the venv with durable-streams 0.1.0")
    p.add_argument("--node", default="node")
    p.add_argument("--timeout", type=float, default=600, help="seconds per child run")
    p.add_argument(
        "--out",
        type=Path,
        help="folder for results.json and chart.png (default: docs/benchmarks, or a "
        "temporary folder with --quick)",
    )
    p.add_argument(
        "--doc",
        type=Path,
        help="page whose results section is regenerated (default: docs/benchmarks.md; "
        "none with --quick, so a smoke run never replaces the published numbers)",
    )
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument(
        "--from-results",
        type=Path,
        help="run nothing: re-render the table and chart from this results.json",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "durable-streams-bench-quick"
            if args.quick
            else ROOT / "docs" / "benchmarks"
        )
    if args.doc is None and not args.quick:
        args.doc = ROOT / "docs" / "benchmarks.md"
    if args.doc is None:
        args.no_doc = True
    return args


def _public(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec without its URLs and temporary file names (they differ on every run)."""
    return {k: v for k, v in spec.items() if "url" not in k and not k.endswith(("_file", "_pid"))}


def rerender(args: argparse.Namespace) -> int:
    """Summary, targets, chart and table again from the raw runs of an earlier run."""
    payload = json.loads(args.from_results.read_text())
    meta, records = payload["meta"], payload["runs"]
    for record in records:
        record["spec"] = _public(record["spec"])
    summary = summarise(records)
    targets = evaluate(summary, meta["sizes"])
    payload.update(summary=summary, targets=[t.__dict__ for t in targets])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    chart(args.out / "chart.png", summary, meta["sizes"])
    text = render_results(meta, summary, targets)
    if not args.no_doc:
        write_doc(args.doc, text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_results:
        return rerender(args)
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    cases = [CASE_BY_NAME[name] for name in args.cases.split(",") if name]
    impls = [i for i in args.impls.split(",") if i]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        raise SystemExit(f"unknown implementations: {sorted(unknown)}")
    if "pypi" in impls and not args.pypi_python:
        print("no --pypi-python given: skipping the PyPI client")
        impls.remove("pypi")
    baseline = check_baseline(args.baseline) if args.baseline else None
    if baseline is not None and "base" not in impls:
        impls.insert(1 if "ours" in impls else 0, "base")
    if baseline is None and "base" in impls:
        raise SystemExit("the implementation base needs --baseline DIR")
    interp = Interpreters(
        _absolute(args.python),
        _absolute(args.pypi_python) if args.pypi_python else None,
        args.node,
        baseline,
    )
    started = time.perf_counter()
    # The server (a child of this process) and every client child hold one socket per
    # live reader: 10,000 readers need more than the usual soft limit of 1,024.
    fd_limit = bc.raise_fd_limit()
    load_before = os.getloadavg()
    library_before = library_fingerprint()
    records: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ds-bench-") as tmp,
        ReferenceServer(compression=False, long_poll_timeout_ms=20_000) as server,
    ):
        blob = bc.blob(MIB)
        blob_file = Path(tmp) / "blob.bin"
        blob_file.write_bytes(blob)
        print(f"server {server.url}; preparing shared streams ({mode} sizes)...", flush=True)
        shared = prepare_shared(server, sizes, blob)
        ctx = Ctx(server, sizes, str(blob_file), shared, iter(range(1, 10**9)))
        for rnd in range(args.rounds):
            order = impls[rnd % len(impls) :] + impls[: rnd % len(impls)]
            for case in cases:
                for impl in order:
                    if not case.runs(impl):
                        continue
                    spec = case.prepare(ctx)
                    cmd = interp.command(impl, spec)
                    if cmd is None:
                        continue
                    result = run_child(cmd, args.timeout, interp.env(impl))
                    record: dict[str, Any] = {
                        "case": case.name,
                        "impl": impl,
                        "round": rnd,
                        "spec": _public(spec),
                        "result": result,
                    }
                    if "error" in result:
                        record["problem"] = result["error"][:500]
                    else:
                        try:
                            problem = case.verify(spec, result)
                            record["derived"] = case.derive(spec, result)
                        except Exception as exc:  # report and carry on with the rest
                            problem = f"{type(exc).__name__}: {exc}"
                        if problem:
                            record["problem"] = problem
                    with contextlib.suppress(Exception):
                        case.cleanup(ctx, spec)
                    records.append(record)
                    shown = record.get("derived", {}).get(case.metric, float("nan"))
                    note = f"  !! {record['problem'][:300]}" if record.get("problem") else ""
                    print(
                        f"round {rnd + 1}/{args.rounds}  {case.name:16s} {impl:5s} "
                        f"{case.metric}={_fmt(shown, case.unit)}{note}",
                        flush=True,
                    )
    summary = summarise(records)
    targets = evaluate(summary, sizes)
    meta = {
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "rounds": args.rounds,
        "duration_min": (time.perf_counter() - started) / 60,
        "command": "nox -s bench" + (" -- " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": {
            **machine_info(),
            "load average (1/5/15 min)": "before {} / after {}".format(
                "/".join(f"{x:.1f}" for x in load_before),
                "/".join(f"{x:.1f}" for x in os.getloadavg()),
            ),
        },
        "versions": versions(interp),
        "sizes": sizes,
        "fd_limit": fd_limit,
        "implementations": {i: LABELS[i] for i in impls},
    }
    library_after = library_fingerprint()
    meta["versions"]["durable_streams sources (sha256)"] = (
        library_before
        if library_after == library_before
        else f"{library_before} at the start, {library_after} at the end: CHANGED DURING THE RUN"
    )
    meta["command"] = _clean_command(meta["command"])
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "summary": summary,
        "targets": [t.__dict__ for t in targets],
        "runs": records,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    chart(args.out / "chart.png", summary, meta["sizes"])
    text = render_results(meta, summary, targets)
    if not args.no_doc:
        write_doc(args.doc, text)
    print()
    print(text)
    print(f"results: {args.out / 'results.json'}" + ("" if args.no_doc else f"; table: {args.doc}"))
    return 0


def check_baseline(path: Path) -> Path:
    """The baseline checkout, absolute; refused unless it holds the library and the child."""
    root = path.resolve()
    for needed in ("durable_streams/__init__.py", "tests/benchmarks/impl_ours.py"):
        if not (root / needed).is_file():
            raise SystemExit(f"--baseline {path}: no {needed} there")
    if root == ROOT:
        raise SystemExit("--baseline is this checkout: compare with another one")
    return root


def _absolute(program: str) -> str:
    """A path relative to the current directory made absolute (children run elsewhere).

    Not resolved: a venv's ``bin/python`` is a symlink that must stay one.
    """
    return str(Path(program).absolute()) if os.sep in program else program


def _clean_command(command: str) -> str:
    """Drop the interpreter paths nox passes in; they are machine-specific."""
    parts = command.split()
    kept: list[str] = []
    skip = False
    for part in parts:
        if skip:
            skip = False
            continue
        if part in ("--pypi-python", "--python", "--node"):
            skip = True
            continue
        if part.startswith(("--pypi-python=", "--python=", "--node=")):
            continue
        kept.append(part)
    text = " ".join(kept)
    return text[: -len(" --")] if text.endswith(" --") else text


if __name__ == "__main__":
    raise SystemExit(main())
