"""Benchmark child: the official Python client, ``durable-streams`` 0.1.0 from PyPI (httpx).

Runs in its own virtual environment (both packages import as ``durable_streams``), so it
imports the client dynamically and types it as ``Any``. Version 0.1.0 has no idempotent
producer: its best write path is many concurrent ``AsyncDurableStream.append`` calls,
which its client-side batching merges into few requests.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the children run as scripts, with this folder on sys.path
    from tests.benchmarks import bench_common as bc
else:
    import bench_common as bc


ds: Any = importlib.import_module("durable_streams")
httpx: Any = importlib.import_module("httpx")
if not hasattr(ds, "AsyncDurableStream"):  # this repository's package shadowed the PyPI one
    raise SystemExit(f"expected the PyPI durable-streams client, imported {ds.__file__}")

JSON = "application/json"
BYTES = "application/octet-stream"
TIMEOUT_S = 60.0


def _client() -> Any:
    # No pool limits: the default (100 connections) would starve the fan-out readers.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(timeout=TIMEOUT_S, limits=limits)


# -- producer -------------------------------------------------------------------------


async def _produce(client: Any, url: str, values: list[Any], content_type: str) -> None:
    stream = ds.AsyncDurableStream(url, content_type=content_type, client=client)
    await asyncio.gather(*(stream.append(value) for value in values))


async def produce_json(spec: bc.Spec) -> bc.Result:
    warm = [bc.message(i) for i in range(spec["warmup_n"])]
    values = [bc.message(i) for i in range(spec["n"])]
    async with _client() as client:
        await _produce(client, spec["warmup_url"], warm, JSON)
        timer = bc.Timer()
        timer.start()
        await _produce(client, spec["url"], values, JSON)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": len(values)}


def _blobs(spec: bc.Spec, n: int) -> list[bytes]:
    base = Path(spec["blob_file"]).read_bytes()
    return [i.to_bytes(8, "big") + base[8:] for i in range(n)]


async def produce_bytes(spec: bc.Spec) -> bc.Result:
    warm = _blobs(spec, spec["warmup_n"])
    values = _blobs(spec, spec["n"])
    async with _client() as client:
        await _produce(client, spec["warmup_url"], warm, BYTES)
        timer = bc.Timer()
        timer.start()
        await _produce(client, spec["url"], values, BYTES)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": sum(map(len, values))}


# -- catch-up read --------------------------------------------------------------------


async def _count_messages(client: Any, url: str) -> int:
    count = 0
    async with ds.astream(url, offset="-1", live=False, client=client) as response:
        async for _ in response.iter_json():
            count += 1
    return count


async def _count_bytes(client: Any, url: str) -> int:
    total = 0
    async with ds.astream(url, offset="-1", live=False, client=client) as response:
        async for chunk in response:
            total += len(chunk)
    return total


async def catchup_json(spec: bc.Spec) -> bc.Result:
    async with _client() as client:
        await _count_messages(client, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        count = await _count_messages(client, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": count}


async def catchup_bytes(spec: bc.Spec) -> bc.Result:
    async with _client() as client:
        await _count_bytes(client, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(client, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total}


async def memory_read(spec: bc.Spec) -> bc.Result:
    async with _client() as client:
        base = bc.settled_rss()
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(client, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total, "base_rss": base}


# -- live reading ---------------------------------------------------------------------


async def _follow(client: Any, url: str, mode: str, deliver: Any) -> None:
    async with ds.astream(url, offset="-1", live=mode, client=client) as response:
        async for msg in response.iter_json():
            deliver(msg)


async def latency(spec: bc.Spec) -> bc.Result:
    arrivals: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    async with _client() as client:
        stream = ds.AsyncDurableStream(spec["url"], content_type=JSON, client=client)
        task = asyncio.create_task(
            _follow(
                client,
                spec["url"],
                spec["mode"],
                lambda msg: arrivals.put_nowait((msg["seq"], time.perf_counter())),
            )
        )
        result = await bc.measure_latency(
            lambda i: stream.append({"seq": i, "pad": "x" * 64}), arrivals, spec
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return result


async def fanout(spec: bc.Spec) -> bc.Result:
    n = spec["readers"]
    tally = bc.FanOut(n, spec["appends"])
    async with _client() as client:
        stream = ds.AsyncDurableStream(spec["url"], content_type=JSON, client=client)
        await stream.head()
        base = bc.settled_rss()
        tasks = [
            asyncio.create_task(_follow(client, spec["url"], spec["mode"], tally.deliverer(j)))
            for j in range(n)
        ]
        result = await tally.measure(lambda k: stream.append({"k": k, "pad": "x" * 64}), spec)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result.update(base_rss=base, rss_per_reader=(result["loaded_rss"] - base) / n)
    return result


# -- stalled producer -----------------------------------------------------------------


async def stalled(spec: bc.Spec) -> bc.Result:
    size, total = spec["message_bytes"], spec["total_bytes"]
    payload = bc.blob(size)
    # Never closed: requests to a stalled server never finish; the process just exits.
    client = _client()
    stream = ds.AsyncDurableStream(spec["url"], content_type=BYTES, client=client)
    base = bc.settled_rss()
    # The application's side of "many concurrent appends": nothing pushes back, so every
    # message it offers is held (in its task and in the client's queue) while stalled.
    tasks = [asyncio.create_task(stream.append(payload)) for _ in range(total // size)]
    await asyncio.sleep(spec["stall_s"])
    return {
        "base_rss": base,
        "peak_rss": bc.peak_rss(),
        "offered_bytes": len(tasks) * size,
        "accepted_bytes": len(tasks) * size,
        "blocked": False,
    }


HANDLERS = {
    "produce_json": produce_json,
    "produce_bytes": produce_bytes,
    "catchup_json": catchup_json,
    "catchup_bytes": catchup_bytes,
    "latency": latency,
    "fanout": fanout,
    "memory_read": memory_read,
    "stalled": stalled,
}

if __name__ == "__main__":
    bc.run_main(HANDLERS, asyncio.run)
