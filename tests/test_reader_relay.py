"""The FastAPI relay's event ids are reader positions: a browser that reconnects with the id
of any event, even one in the middle of a delivery, gets exactly the messages after it."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import aiohttp

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_examples import example, free_port, read_event, require, wait_http


async def test_relay_resumes_after_any_single_message(
    server: ReferenceServer, session: ds.Session, tmp_path: Path
) -> None:
    require("fastapi")
    require("uvicorn")
    prefix = f"/relay-{uuid.uuid4().hex}"
    stream = session.stream(f"{prefix}/demo")
    await stream.create(content_type="application/json")
    for n in range(4):
        await stream.append({"text": f"m{n}"})
    port = free_port()
    base = f"http://127.0.0.1:{port}/streams/demo"
    async with (
        example(
            "fastapi_relay.py", "--port", str(port), server=server, tmp_path=tmp_path,
            RELAY_PREFIX=prefix,
        ) as relay,
        aiohttp.ClientSession() as client,
    ):  # fmt: skip
        await wait_http(base, relay)
        # The catch-up answer holds all four messages: one event each, each with its id.
        async with client.get(f"{base}/events") as response:
            events = [await read_event(response) for _ in range(4)]
        assert [json.loads(e["data"]) for e in events] == [[{"text": f"m{n}"}] for n in range(4)]
        ids = [e["id"] for e in events]
        assert len(set(ids)) == 4
        assert ids[-1] == (await stream.head()).offset  # after the last: a plain offset
        for n, last_seen in enumerate(ids[:-1]):
            async with client.get(
                f"{base}/events", headers={"Last-Event-ID": last_seen}
            ) as response:
                got = [json.loads((await read_event(response))["data"]) for _ in range(n + 1, 4)]
            assert got == [[{"text": f"m{k}"}] for k in range(n + 1, 4)], last_seen
        assert await relay.stop() in (0, -signal.SIGTERM), relay.report()
        relay.assert_clean()
