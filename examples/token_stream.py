"""An AI-style token stream: a producer writes tokens, then closes the stream; a reader
prints them live and stops at the end of the stream.

With the repository's reference server (Node.js;
``python -m durable_streams.testing install`` once)::

    python -m tests.with_server python examples/token_stream.py

or against a server you run yourself::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/token_stream.py

The generator and the reader share nothing but the stream's URL, so they could as well
run in different processes or on different machines; a reader that starts late, or
reconnects, gets every token from the beginning (or from its last offset). Closing the
stream is what tells every reader, now or later, that the answer is complete.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import durable_streams as ds

ANSWER = (
    "Durable streams keep every token, so a reader that drops its connection"
    " picks up exactly where it left off."
)


async def fake_model(prompt: str) -> AsyncIterator[str]:
    """Stands in for a language model: yields the answer a word at a time."""
    print(f"prompt: {prompt}", flush=True)
    for n, word in enumerate(ANSWER.split(" ")):
        await asyncio.sleep(0.02)
        yield word if n == 0 else " " + word


async def generate(stream: ds.Stream, prompt: str) -> None:
    """Write the model's tokens to the stream, then close it with a final summary."""
    count = 0
    async with stream.producer(f"generator-{uuid.uuid4().hex}") as producer:
        async for token in fake_model(prompt):
            await producer.append({"token": token})
            count += 1
        # The close is part of the producer's sequence: retried safely, applied once.
        await producer.close_stream(final={"finish_reason": "stop", "tokens": count})


async def show(stream: ds.Stream) -> None:
    """Print tokens as they arrive (Server-Sent Events); returns at the end of the stream."""
    summary: dict[str, Any] = {}
    async with stream.read(live="sse") as reader:
        async for message in reader:
            if "token" in message:
                print(message["token"], end="", flush=True)
            else:
                summary = message
    # The loop ended by itself: the stream is closed and every message was read.
    print(f"\n[end of stream: {summary.get('tokens')} tokens, {summary.get('finish_reason')}]")


async def main() -> None:
    """Create a stream for one answer, then generate and show it at the same time."""
    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    async with ds.Session(base_url) as session:
        stream = session.stream(f"/answers/{uuid.uuid4().hex}")
        await stream.create(content_type="application/json")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(show(stream))
            tasks.create_task(generate(stream, "Why use a durable stream for tokens?"))


if __name__ == "__main__":
    asyncio.run(main())
