"""A worker pool: several processes share one pull-wake subscription over many streams.

With the repository's reference server (Node.js;
``python -m durable_streams.testing install`` once)::

    python -m tests.with_server python examples/worker_pool.py

or against a server you run yourself::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/worker_pool.py

The subscription API lives under the server's *stream root*, and the session's base URL
must be that root: ``$DURABLE_STREAMS_URL/v1/stream`` for the reference server (set
``DURABLE_STREAMS_ROOT`` for another layout).

Run without arguments, this program is the coordinator: it creates a wake stream, a
pull-wake subscription whose glob covers ``<run>/orders/*``, and 20 order streams; starts
three worker processes (this program again, as ``worker_pool.py worker SUBSCRIPTION NAME``);
appends 200 orders across the streams; waits until the server's acknowledged offset of
every stream is its tail; then closes the wake stream, which ends the workers' loops, and
prints what each worker did.

A worker is a :class:`durable_streams.SubscriptionRunner`: it follows the wake stream,
races the others to claim the subscription's pending work, calls ``handle`` for every
batch and acknowledges the batch's offset once ``handle`` has returned. The server holds
the acknowledgements, so a worker that dies loses nothing: when its lease expires another
worker claims the work and starts from the last acknowledged offset. SIGTERM or Ctrl-C
stops a worker gracefully (the batches in hand are finished and acknowledged).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import durable_streams as ds

STREAMS = 20
ORDERS = 200
WORKERS = 3


def say(line: str) -> None:
    """Print one line in one write: the processes share stdout, lines must not interleave."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def stream_root() -> str:
    """The server's stream root, the base URL subscriptions need."""
    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    return os.environ.get("DURABLE_STREAMS_ROOT") or base_url.rstrip("/") + "/v1/stream"


# -- a worker process -------------------------------------------------------------------


async def worker(subscription_id: str, name: str) -> None:
    """Handle the subscription's work until the wake stream is closed (or a signal)."""
    handled = 0

    async def handle(path: str, batch: ds.Batch[Any]) -> None:
        # The work. It may see a batch again if a worker died before acknowledging it:
        # make it idempotent (here, keyed by the order number).
        nonlocal handled
        handled += len(batch.items)
        orders = ", ".join(str(item["order"]) for item in batch.items)
        say(f"{name}: {path}: orders {orders}")

    async with ds.Session(stream_root()) as session:
        subscription = session.subscription(subscription_id)
        runner = ds.SubscriptionRunner(subscription, handle, worker=name, concurrency=4)
        stats = await runner.run()  # until stopped, or until the wake stream is closed
    say(f"{name}: done, {stats.claims} claims, {handled} orders")


# -- the coordinator --------------------------------------------------------------------


async def all_acknowledged(subscription: ds.Subscription, paths: list[str]) -> bool:
    """Whether the server's cursor of every stream has reached the stream's tail."""
    info = await subscription.get()
    for path in paths:
        if info.acked_offset(path) != (await subscription.stream(path).head()).offset:
            return False
    return True


async def coordinator() -> None:
    """Set up a subscription, start the workers, feed them orders, wait, wind down."""
    run = f"pool-{uuid.uuid4().hex[:8]}"
    async with ds.Session(stream_root()) as session:
        wake = session.stream(f"{run}/wake")
        await wake.create(content_type="application/json")
        subscription = session.subscription(run)
        await subscription.create(
            ds.SubscriptionConfig.pull_wake(f"{run}/wake", pattern=f"{run}/orders/*", lease_ttl=10)
        )
        paths = [f"{run}/orders/{n}" for n in range(STREAMS)]
        streams = [subscription.stream(path) for path in paths]
        for stream in streams:
            await stream.create(content_type="application/json")

        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "worker", subscription.id, f"w{n}"
            )
            for n in range(1, WORKERS + 1)
        ]
        try:
            for order in range(ORDERS):
                await streams[order % STREAMS].append({"order": order})
                if order % STREAMS == STREAMS - 1:
                    await asyncio.sleep(0.2)  # orders arrive over time, as they would
            say(f"coordinator: appended {ORDERS} orders to {STREAMS} streams")
            while True:  # the server is the checkpoint store: ask it
                if await all_acknowledged(subscription, paths):
                    break
                await asyncio.sleep(0.2)
            say(f"coordinator: all {ORDERS} orders acknowledged")
            await wake.close()  # no more wakes: each worker's loop ends
            codes = [await process.wait() for process in workers]
            say(f"coordinator: workers exited with {codes}")
        finally:
            for process in workers:
                if process.returncode is None:
                    process.terminate()
                    await process.wait()
        await subscription.delete()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(coordinator())
