"""Reader guards against responses the reference server only produces under races.

A small aiohttp server stands in for the real one here, because the fault is a race in
the file-backed reference server (a read that overlaps an append sees the new data but
the old tail) that cannot be triggered on demand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

import durable_streams as ds

START, END = "0000_0000", "0000_0020"
JSON_BODIES = (json.dumps([{"n": 1}]).encode(), json.dumps([{"n": 1}, {"n": 2}]).encode())
BYTE_BODIES = (b"abc", b"abcdef")

Serve = Callable[[str, tuple[bytes, bytes]], AsyncIterator[tuple[str, list[str]]]]


async def _racy_server(
    content_type: str, bodies: tuple[bytes, bytes]
) -> AsyncIterator[tuple[str, list[str]]]:
    """A stream whose first read at START carries data under a stale next offset."""
    seen: list[str] = []

    async def read(request: web.Request) -> web.Response:
        offset = request.query["offset"]
        seen.append(offset)
        headers = {"Content-Type": content_type, "Stream-Up-To-Date": "true"}
        if offset == START and len(seen) == 1:
            # The race: the body has the new data, the header still has the old tail.
            body, headers["Stream-Next-Offset"] = bodies[0], START
        elif offset == START:
            body, headers["Stream-Next-Offset"] = bodies[1], END
        else:
            raise web.HTTPBadRequest
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/s", read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/s", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("content_type", "bodies", "expected"),
    [
        ("application/json", JSON_BODIES, [{"n": 1}, {"n": 2}]),
        ("application/octet-stream", BYTE_BODIES, [b"abcdef"]),
    ],
    ids=["json", "bytes"],
)
async def test_data_under_a_stale_next_offset_is_read_again_not_repeated(
    content_type: str, bodies: tuple[bytes, bytes], expected: list[object]
) -> None:
    retry = ds.RetryPolicy(initial_delay=0.01, max_delay=0.02)
    async for url, seen in _racy_server(content_type, bodies):
        async with ds.Session(retry=retry) as session:
            stream = session.stream(url, content_type=content_type)
            async with stream.read(START, live=False) as reader:
                batches = [batch async for batch in reader.batches()]
        # Reading on from the stale offset would have repeated the first body's data;
        # the reader read the same offset again (bytes: skipping what it had delivered).
        items = [item for batch in batches for item in batch.items]
        if content_type != "application/json":
            items = [b"".join(items)]
        assert items == expected
        assert seen == [START, START]
        assert batches[-1].offset == END
