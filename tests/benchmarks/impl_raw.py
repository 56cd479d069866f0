"""Benchmark child: the raw limit. Minimal aiohttp, no client logic.

Pre-encoded producer bodies are built before the clock starts (1 MiB producer batches, at
most 5 in flight); with Python values (``produce_json``) each message goes through
``json.dumps`` inside the clock, a batch at a time, each batch sent as soon as it is
built. Reads are plain GETs with ``json.loads``. This is the ceiling the server and the
loopback interface allow a Python process; a client can approach it, not beat it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:  # the children run as scripts, with this folder on sys.path
    from tests.benchmarks import bench_common as bc
else:
    import bench_common as bc

JSON = "application/json"
BYTES = "application/octet-stream"
BATCH_BYTES = 1024 * 1024
IN_FLIGHT = 5
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


# -- producer -------------------------------------------------------------------------


def _json_batches(values: list[Any]) -> list[bytes]:
    return _frame([_dumps(value).encode() for value in values])


def _frame(encoded: list[bytes]) -> list[bytes]:
    """Pre-encoded messages as 1 MiB JSON-array bodies."""
    batches: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for data in encoded:
        if parts and size + len(data) + 1 > BATCH_BYTES:
            batches.append(b"[" + b",".join(parts) + b"]")
            parts, size = [], 0
        parts.append(data)
        size += len(data) + 1
    if parts:
        batches.append(b"[" + b",".join(parts) + b"]")
    return batches


class _Pipeline:
    """Producer batches with (id, epoch, seq) headers, at most ``IN_FLIGHT`` outstanding."""

    def __init__(self, http: aiohttp.ClientSession, url: str, content_type: str) -> None:
        self.http, self.url, self.content_type = http, url, content_type
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()
        self.seq = 0
        self.gaps = 0

    async def send(self, body: bytes) -> None:
        await self.slots.acquire()
        task = asyncio.create_task(self._post(self.seq, body))
        self.seq += 1
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, seq: int, body: bytes) -> None:
        headers = {
            "Content-Type": self.content_type,
            "Producer-Id": "bench-raw",
            "Producer-Epoch": "0",
            "Producer-Seq": str(seq),
        }
        try:
            while True:
                async with self.http.post(self.url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status in (200, 204):
                        return
                    if response.status != 409:
                        raise RuntimeError(f"POST answered {response.status}")
                # 409: an earlier batch of the pipeline has not landed yet; send again.
                self.gaps += 1
                await asyncio.sleep(0.001)
        finally:
            self.slots.release()

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks)


async def _produce(http: aiohttp.ClientSession, url: str, bodies: list[bytes], ct: str) -> int:
    pipeline = _Pipeline(http, url, ct)
    for body in bodies:
        await pipeline.send(body)
    await pipeline.drain()
    return pipeline.gaps


async def produce_encoded(spec: bc.Spec) -> bc.Result:
    """Pre-encoded input: the bodies are built before the clock starts."""
    warm = _json_batches([bc.message(i) for i in range(spec["warmup_n"])])
    bodies = _frame([_dumps(bc.message(i)).encode() for i in range(spec["n"])])
    async with _client() as http:
        await _produce(http, spec["warmup_url"], warm, JSON)
        timer = bc.Timer()
        timer.start()
        gaps = await _produce(http, spec["url"], bodies, JSON)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": spec["n"], "gaps": gaps}


async def _produce_values(http: aiohttp.ClientSession, url: str, values: list[Any]) -> int:
    """``json.dumps`` per message inside the clock; each 1 MiB batch sent once built."""
    pipeline = _Pipeline(http, url, JSON)
    parts: list[bytes] = []
    size = 0
    for value in values:
        data = _dumps(value).encode()
        if parts and size + len(data) + 1 > BATCH_BYTES:
            await pipeline.send(b"[" + b",".join(parts) + b"]")
            await asyncio.sleep(0)  # let the request start while the next batch is built
            parts, size = [], 0
        parts.append(data)
        size += len(data) + 1
    if parts:
        await pipeline.send(b"[" + b",".join(parts) + b"]")
    await pipeline.drain()
    return pipeline.gaps


async def produce_json(spec: bc.Spec) -> bc.Result:
    """Python values: serialising them is timed, as it is for every client."""
    warm = [bc.message(i) for i in range(spec["warmup_n"])]
    values = [bc.message(i) for i in range(spec["n"])]
    async with _client() as http:
        await _produce_values(http, spec["warmup_url"], warm)
        timer = bc.Timer()
        timer.start()
        gaps = await _produce_values(http, spec["url"], values)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": spec["n"], "gaps": gaps}


def _blobs(spec: bc.Spec, n: int) -> list[bytes]:
    base = Path(spec["blob_file"]).read_bytes()
    return [i.to_bytes(8, "big") + base[8:] for i in range(n)]


async def produce_bytes(spec: bc.Spec) -> bc.Result:
    warm = _blobs(spec, spec["warmup_n"])
    bodies = _blobs(spec, spec["n"])  # a 1 MiB message is a batch of its own
    async with _client() as http:
        await _produce(http, spec["warmup_url"], warm, BYTES)
        timer = bc.Timer()
        timer.start()
        gaps = await _produce(http, spec["url"], bodies, BYTES)
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": sum(map(len, bodies)), "gaps": gaps}


# -- catch-up read --------------------------------------------------------------------


async def _count_messages(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url, params={"offset": "-1"}) as response:
        body = await response.read()
    return len(json.loads(body))


async def _count_bytes(http: aiohttp.ClientSession, url: str) -> int:
    total = 0
    async with http.get(url, params={"offset": "-1"}) as response:
        async for chunk in response.content.iter_any():
            total += len(chunk)
    return total


async def catchup_json(spec: bc.Spec) -> bc.Result:
    async with _client() as http:
        await _count_messages(http, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        count = await _count_messages(http, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "messages": count}


async def catchup_bytes(spec: bc.Spec) -> bc.Result:
    async with _client() as http:
        await _count_bytes(http, spec["warmup_url"])
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(http, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total}


async def memory_read(spec: bc.Spec) -> bc.Result:
    async with _client() as http:
        base = bc.settled_rss()
        timer = bc.Timer()
        timer.start()
        total = await _count_bytes(http, spec["url"])
        timer.stop()
    return {"wall_s": timer.wall, "cpu_s": timer.cpu, "bytes": total, "base_rss": base}


# -- live reading ---------------------------------------------------------------------


async def _follow(http: aiohttp.ClientSession, url: str, mode: str, deliver: Any) -> None:
    """Catch up with one GET, then long-poll or SSE; ``deliver(msg)`` for every message."""
    async with http.get(url, params={"offset": "-1"}) as response:
        for msg in json.loads(await response.read()):
            deliver(msg)
        offset = response.headers["Stream-Next-Offset"]
    if mode == "sse":
        params = {"offset": offset, "live": "sse"}
        async with http.get(url, params=params, timeout=aiohttp.ClientTimeout()) as response:
            data_next = False
            async for line in response.content:
                if line.startswith(b"event:"):
                    data_next = line.strip() == b"event: data"
                elif data_next and line.startswith(b"data:"):
                    for msg in json.loads(line[5:]):
                        deliver(msg)
        return
    cursor = None
    while True:
        params = {"offset": offset, "live": "long-poll"}
        if cursor:
            params["cursor"] = cursor
        async with http.get(url, params=params, timeout=aiohttp.ClientTimeout()) as response:
            body = await response.read()
            offset = response.headers["Stream-Next-Offset"]
            cursor = response.headers.get("Stream-Cursor")
            if response.status == 200:
                for msg in json.loads(body):
                    deliver(msg)


async def _append(http: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with http.post(url, data=body, headers={"Content-Type": JSON}) as response:
        await response.read()
        if response.status not in (200, 204):
            raise RuntimeError(f"POST answered {response.status}")


async def latency(spec: bc.Spec) -> bc.Result:
    arrivals: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    count = spec["warmup"] + spec["samples"]
    bodies = [_dumps([{"seq": i, "pad": "x" * 64}]).encode() for i in range(count)]
    async with _client() as http:
        task = asyncio.create_task(
            _follow(
                http,
                spec["url"],
                spec["mode"],
                lambda msg: arrivals.put_nowait((msg["seq"], time.perf_counter())),
            )
        )
        result = await bc.measure_latency(
            lambda i: _append(http, spec["url"], bodies[i]), arrivals, spec
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return result


async def fanout(spec: bc.Spec) -> bc.Result:
    n = spec["readers"]
    tally = bc.FanOut(n, spec["appends"])
    bodies = [_dumps([{"k": k, "pad": "x" * 64}]).encode() for k in range(spec["appends"] + 1)]
    async with _client() as http:
        async with http.head(spec["url"]) as response:
            await response.read()
        base = bc.settled_rss()
        tasks = [
            asyncio.create_task(_follow(http, spec["url"], spec["mode"], tally.deliverer(j)))
            for j in range(n)
        ]
        result = await tally.measure(lambda k: _append(http, spec["url"], bodies[k]), spec)
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
    http = _client()
    pipeline = _Pipeline(http, spec["url"], BYTES)
    base = bc.settled_rss()
    offered = 0

    async def pump() -> None:
        nonlocal offered
        batch = bytearray()
        for _ in range(total // size):
            if len(batch) + size > BATCH_BYTES:
                await pipeline.send(bytes(batch))
                batch.clear()
            batch += payload
            offered += size

    task = asyncio.create_task(pump())
    last, still = -1, 0.0
    while not task.done() and still < spec["stall_s"]:
        await asyncio.sleep(0.1)
        still = still + 0.1 if offered == last else 0.0
        last = offered
    return {
        "base_rss": base,
        "peak_rss": bc.peak_rss(),
        "offered_bytes": offered,
        "accepted_bytes": offered,
        "buffer_limit": (IN_FLIGHT + 1) * BATCH_BYTES,
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

if __name__ == "__main__":
    bc.run_main(HANDLERS, asyncio.run)
