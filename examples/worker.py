"""An asyncio worker: consume a durable stream in batches, with a checkpoint to resume from.

With the repository's reference server (Node.js;
``python -m durable_streams.testing install`` once)::

    python -m tests.with_server python examples/worker.py /orders --checkpoint orders.offset

or against a server you run yourself::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/worker.py /orders

- It reads the stream from its checkpoint (the beginning the first time), catches up,
  then follows it live, one batch at a time.
- After each batch is handled it saves the batch's offset to the checkpoint file
  (atomically: a crash leaves the old checkpoint or the new one, never half of one).
  On restart it resumes from there: a batch is handled again only if the worker died
  between handling it and saving the checkpoint (at-least-once; make ``handle``
  idempotent, or store the offset in the same transaction as the results).
- SIGTERM or Ctrl-C stops it cleanly: a batch being handled is finished and
  checkpointed, a wait for new data is abandoned, and the exit status is 0.
- When the stream is closed (EOF), it handles the last batch and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import durable_streams as ds


def load_checkpoint(path: Path) -> str:
    """The saved offset, or ``"-1"`` (the beginning) when there is none yet."""
    try:
        return path.read_text().strip() or "-1"
    except FileNotFoundError:
        return "-1"


def save_checkpoint(path: Path, offset: str) -> None:
    """Replace the checkpoint atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(offset + "\n")
    os.replace(tmp, path)


async def handle(items: list[Any]) -> None:
    """The work: here, print each message. Replace with yours."""
    for item in items:
        print("handled", json.dumps(item), flush=True)


async def next_batch(
    batches: AsyncIterator[ds.Batch[Any]], stop: asyncio.Event
) -> ds.Batch[Any] | None:
    """The next batch, or None at the end of the stream or once ``stop`` is set."""
    if stop.is_set():
        return None
    get = asyncio.ensure_future(anext(batches, None))
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
        if not get.done():
            # Cancelling a reader's wait is safe: it closes the live request, loses nothing.
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await get
    return None if get.cancelled() else get.result()


async def run(stream: ds.Stream, checkpoint: Path, stop: asyncio.Event) -> None:
    """Handle batches from the checkpoint on, until stopped or the stream ends."""
    offset = load_checkpoint(checkpoint)
    print(f"worker: reading {stream.url} from offset {offset}", flush=True)
    async with stream.read(offset, live=True) as reader:
        batches = reader.batches()
        while (batch := await next_batch(batches, stop)) is not None:
            await handle(batch.items)
            await asyncio.to_thread(save_checkpoint, checkpoint, batch.offset)
            if batch.closed:
                print("worker: the stream is closed; all done", flush=True)
    print(f"worker: stopped; checkpoint {load_checkpoint(checkpoint)}", flush=True)


async def main() -> None:
    """Parse the arguments, install the signal handlers and run the worker."""
    parser = argparse.ArgumentParser(description="Consume a durable stream in batches.")
    parser.add_argument("stream", nargs="?", default="/orders", help="the stream's path")
    parser.add_argument("--checkpoint", type=Path, default=Path("worker.offset"))
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    async with ds.Session(base_url) as session:
        await run(session.stream(args.stream), args.checkpoint, stop)


if __name__ == "__main__":
    asyncio.run(main())
