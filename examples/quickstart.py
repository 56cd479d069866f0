"""Quick start: create a JSON stream, write to it, and tail it live until it closes.

This is what ``nox -s demo`` (the README's demo command) runs. To run it by hand with the
repository's reference server (Node.js; install it once with
``python -m durable_streams.testing install``)::

    python -m tests.with_server python examples/quickstart.py

or against any Durable Streams server::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/quickstart.py

A writer task appends five events and then closes the stream; meanwhile the reader
catches up and follows the stream live, and its loop ends by itself at the end of the
closed stream.
"""

import asyncio
import os
import uuid

import durable_streams as ds


async def write(stream: ds.Stream) -> None:
    """Append a few events, one every 100 ms, then close the stream (EOF)."""
    for n in range(1, 6):
        await stream.append({"event": "tick", "n": n})
        await asyncio.sleep(0.1)
    final = await stream.close(final={"event": "done"})
    print(f"writer: closed the stream at offset {final}")


async def main() -> None:
    """Create a stream, then tail it live while a writer appends to it."""
    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    async with ds.Session(base_url) as session:
        stream = session.stream(f"/demo/{uuid.uuid4().hex}")
        await stream.create(content_type="application/json")
        print(f"created {stream.url}")

        writer = asyncio.create_task(write(stream))
        # Tails live (long-poll) and ends by itself when the stream is closed.
        async for message in stream.read(live=True):
            print("reader:", message)
        await writer


if __name__ == "__main__":
    asyncio.run(main())
