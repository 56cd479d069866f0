"""cProfile of our client's hot paths: the producer and the catch-up reads.

Usage (from the repository root, with the reference server's npm packages installed)::

    python tests/benchmarks/profile_ours.py [--top 25] [--n 100000] [--out DIR]

Starts its own in-memory reference server (gzip off, as in ``run.py``), warms up, then
profiles, one after the other: the producer with 100,000 ~100-byte JSON messages (one
append each, then extend of the values, then extend of pre-encoded bytes), the
producer with 50 messages of 1 MiB, the catch-up read of 100,000 JSON messages and the
catch-up read of a 256 MiB byte stream, then 1,000 live readers (SSE, then long-poll) each
receiving 10 appends. For each it prints the wall time without and
with the profiler and the top functions by own time (``tottime``) and by cumulative
time, and saves the ``.pstats`` files to ``--out`` for snakeviz or ``pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # for the tests package, when run as a script

import durable_streams as ds  # noqa: E402
from durable_streams.testing import ReferenceServer  # noqa: E402
from tests.benchmarks import bench_common as bc  # noqa: E402
from tests.benchmarks import run  # noqa: E402

MIB = bc.MIB


async def produce(url: str, values: list[Any], content_type: str, *, extend: bool = False) -> None:
    async with ds.Session() as session:
        stream = session.stream(url, content_type=content_type)
        async with stream.producer("profile") as producer:
            if extend:
                await producer.extend(values)
                return
            for value in values:
                await producer.append(value)


async def read_messages(url: str) -> int:
    count = 0
    async with ds.Session() as session:
        async for _ in session.stream(url).read(live=False):
            count += 1
    return count


async def fan_out(url: str, readers: int, mode: ds.LiveMode) -> bc.Result:
    tally = bc.FanOut(readers, 10)
    spec = {"timeout_s": 10, "gap_ms": 500}
    async with ds.Session() as session:
        stream = session.stream(url, content_type=run.JSON)

        async def follow(j: int) -> None:
            deliver = tally.deliverer(j)
            async with stream.read(live=mode) as reader:
                async for msg in reader:
                    deliver(msg)

        tasks = [asyncio.create_task(follow(j)) for j in range(readers)]
        result = await tally.measure(lambda k: stream.append({"k": k, "pad": "x" * 64}), spec)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def read_bytes(url: str) -> int:
    total = 0
    async with ds.Session() as session:
        async for chunk in session.stream(url).read(live=False):
            total += len(chunk)
    return total


def measure(
    name: str, factory: Callable[[], Awaitable[Any]], out: Path, top: int, repeat: int
) -> str:
    """Time ``factory()`` without the profiler (best of ``repeat``), then profile one run."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        asyncio.run(factory())  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - t0)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    asyncio.run(factory())  # type: ignore[arg-type]
    profiler.disable()
    profiled = time.perf_counter() - t0
    profiler.dump_stats(out / f"{name}.pstats")
    text = io.StringIO()
    text.write(f"== {name}: best of {repeat} {best:.3f} s; under cProfile {profiled:.3f} s\n")
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--readers", type=int, default=1000, help="fan-out readers")
    parser.add_argument(
        "--only",
        default="produce_json,extend_json,extend_encoded,produce_bytes,read_json,read_bytes,"
        "fanout_sse,fanout_longpoll",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/ds-profile"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    blob = bc.blob(MIB)
    values = [bc.message(i) for i in range(args.n)]
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    encoded = [encode(value).encode() for value in values]
    blobs = [i.to_bytes(8, "big") + blob[8:] for i in range(50)]
    counter = iter(range(10**9))
    with ReferenceServer(compression=False) as server:
        base = server.url + "/profile"

        def fresh(content_type: str) -> str:
            url = f"{base}/s{next(counter)}"
            run.create(url, content_type)
            return url

        json_url, bytes_url = f"{base}/read-json", f"{base}/read-bytes"
        run.fill_json(json_url, args.n)
        run.fill_bytes(bytes_url, args.mib, blob)
        jobs: dict[str, Callable[[], Awaitable[Any]]] = {
            "produce_json": lambda: produce(fresh(run.JSON), values, run.JSON),
            "extend_json": lambda: produce(fresh(run.JSON), values, run.JSON, extend=True),
            "extend_encoded": lambda: produce(fresh(run.JSON), encoded, run.JSON, extend=True),
            "produce_bytes": lambda: produce(fresh(run.BYTES), blobs, run.BYTES),
            "read_json": lambda: read_messages(json_url),
            "read_bytes": lambda: read_bytes(bytes_url),
            "fanout_sse": lambda: fan_out(fresh(run.JSON), args.readers, "sse"),
            "fanout_longpoll": lambda: fan_out(fresh(run.JSON), args.readers, "long-poll"),
        }
        for name in args.only.split(","):
            print(measure(name, jobs[name], args.out, args.top, args.repeat), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
