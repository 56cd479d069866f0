"""Benchmark child: our client (``durable_streams``, this repository), public API only.

Run by ``run.py`` as ``python impl_ours.py '<spec JSON>'``; see ``bench_common``. Spec
keys of its own: ``api`` (``"extend"``, the default, or ``"append"``: one awaited
``append`` per message), ``no_fast`` (hide the ``fast`` extra's msgspec and orjson, so
the standard ``json`` module does everything) and ``loop`` (``"uvloop"``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

_SPEC: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) == 2 else {}
if _SPEC.get("no_fast"):
    # A None entry makes "import msgspec" fail: the library then takes its pure path.
    sys.modules["msgspec"] = None  # type: ignore[assignment]
    sys.modules["orjson"] = None  # type: ignore[assignment]

import durable_streams as ds  # noqa: E402

if TYPE_CHECKING:  # the children run as scripts, with this folder on sys.path
    from tests.benchmarks import bench_common as bc
else:
    import bench_common as bc

JSON = "application/json"
BYTES = "application/octet-stream"
PRODUCER_ID = "bench-ours"


# -- producer -------------------------------------------------------------------------


async def _produce(
    session: ds.Session, url: str, values: list[Any], content_type: str, api: str = "append"
) -> None:
    stream = session.stream(url, content_type=content_type)
    async with stream.producer(PRODUCER_ID) as producer:
        if api == "extend":
            await producer.extend(values)
        else:
            for value in values:
                await producer.append(value)


async def _produce_timed(spec: bc.Spec, warm: list[Any], values: list[Any]) -> bc.Result:
    api = spec.get("api", "extend")
    async with ds.Session() as session:
        await _produce(session, spec["warmup_url"], warm, JSON, api)
        timer = bc.Timer()
        timer.start()
        await _produce(session, spec["url"], values, JSON, api)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": len(values)}


async def produce_json(spec: bc.Spec) -> bc.Result:
    """Python values: encoding them is timed."""
    warm = [bc.message(i) for i in range(spec["warmup_n"])]
    values = [bc.message(i) for i in range(spec["n"])]
    return await _produce_timed(spec, warm, values)


def _encoded(n: int) -> list[bytes]:
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    return [encode(bc.message(i)).encode() for i in range(n)]


async def produce_encoded(spec: bc.Spec) -> bc.Result:
    """Pre-encoded input: one ``bytes`` per message, made before the clock starts."""
    return await _produce_timed(spec, _encoded(spec["warmup_n"]), _encoded(spec["n"]))


def _blobs(spec: bc.Spec, n: int) -> list[bytes]:
    base = Path(spec["blob_file"]).read_bytes()
    return [i.to_bytes(8, "big") + base[8:] for i in range(n)]


async def produce_bytes(spec: bc.Spec) -> bc.Result:
    warm = _blobs(spec, spec["warmup_n"])
    values = _blobs(spec, spec["n"])
    async with ds.Session() as session:
        await _produce(session, spec["warmup_url"], warm, BYTES)
        del warm
        timer = bc.Timer()
        timer.start()
        await _produce(session, spec["url"], values, BYTES)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": sum(map(len, values))}


# -- catch-up read --------------------------------------------------------------------


async def _count_messages(session: ds.Session, url: str) -> int:
    count = 0
    async for _ in session.stream(url).read(live=False):
        count += 1
    return count


async def _count_bytes(session: ds.Session, url: str) -> int:
    total = 0
    async for chunk in session.stream(url).read(live=False):
        total += len(chunk)
    return total


async def catchup_json(spec: bc.Spec) -> bc.Result:
    async with ds.Session() as session:
        await _count_messages(session, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        count = await _count_messages(session, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": count}


async def catchup_bytes(spec: bc.Spec) -> bc.Result:
    async with ds.Session() as session:
        await _count_bytes(session, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(session, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total}


async def memory_read(spec: bc.Spec) -> bc.Result:
    async with ds.Session() as session:
        base = bc.settled_rss()
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(session, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total, "base_rss": base}


# -- live latency ---------------------------------------------------------------------


async def latency(spec: bc.Spec) -> bc.Result:
    arrivals: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    async with ds.Session() as session:
        stream = session.stream(spec["url"], content_type=JSON)

        async def follow() -> None:
            async with stream.read(live=spec["mode"]) as reader:
                async for msg in reader:
                    arrivals.put_nowait((msg["seq"], time.perf_counter()))

        task = asyncio.create_task(follow())
        result = await bc.measure_latency(
            lambda i: stream.append({"seq": i, "pad": "x" * 64}), arrivals, spec
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return result


# -- fan-out --------------------------------------------------------------------------


async def fanout(spec: bc.Spec) -> bc.Result:
    n = spec["readers"]
    tally = bc.FanOut(n, spec["appends"])
    # Every live reader holds a connection: the pool must have one for each, and a few
    # for the appends (the default, 4096, is enough for 1,000 readers).
    async with ds.Session(max_connections=max(4096, n + 64)) as session:
        stream = session.stream(spec["url"], content_type=JSON)
        await stream.head()  # open the pool before the baseline
        base = bc.settled_rss()

        async def follow(j: int) -> None:
            deliver = tally.deliverer(j)
            async with stream.read(live=spec["mode"]) as reader:
                async for msg in reader:
                    deliver(msg)

        tasks = [asyncio.create_task(follow(j)) for j in range(n)]
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
    session = ds.Session()
    stream = session.stream(spec["url"], content_type=BYTES)
    producer = stream.producer(PRODUCER_ID, max_buffer_bytes=spec["buffer_limit"])
    await producer.start()
    base = bc.settled_rss()
    offered = 0

    async def pump() -> None:
        nonlocal offered
        for _ in range(total // size):
            await producer.append(payload)
            offered += size

    task = asyncio.create_task(pump())
    last, still = -1, 0.0
    while not task.done() and still < spec["stall_s"]:
        await asyncio.sleep(0.1)
        still = still + 0.1 if offered == last else 0.0
        last = offered
    stats = producer.statistics()
    return {
        "base_rss": base,
        "peak_rss": bc.peak_rss(),
        "offered_bytes": offered,
        "accepted_bytes": offered,
        "buffered_bytes": stats.bytes_buffered,
        "buffer_limit": spec["buffer_limit"],
        "blocked": not task.done(),
    }


HANDLERS = {
    "produce_json": produce_json,
    "produce_encoded": produce_encoded,
    "produce_bytes": produce_bytes,
    "catchup_json": catchup_json,
    "catchup_bytes": catchup_bytes,
    "latency": latency,
    "fanout": fanout,
    "memory_read": memory_read,
    "stalled": stalled,
}


def _runner() -> Any:
    if _SPEC.get("loop") == "uvloop":  # only for the uvloop comparison; untyped here
        return importlib.import_module("uvloop").run
    return asyncio.run


if __name__ == "__main__":
    bc.run_main(HANDLERS, _runner())
