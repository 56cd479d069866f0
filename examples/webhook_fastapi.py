"""Receive webhook wakes in a FastAPI app, and finish them later from a background worker.

Needs a server with webhook subscriptions enabled. With the repository's reference server
(Node.js; ``python -m durable_streams.testing install`` once;
``DS_TEST_WEBHOOKS=1`` turns webhooks on)::

    DS_TEST_WEBHOOKS=1 python -m tests.with_server python examples/webhook_fastapi.py

or against a server you run yourself (its stream root is ``$DURABLE_STREAMS_URL/v1/stream``)::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/webhook_fastapi.py

It runs from start to finish by itself, printing what happens:

1. it serves the app with uvicorn on 127.0.0.1 (a free port): the reference server accepts
   plain ``http://`` webhook URLs only for ``localhost`` and ``127.0.0.x``;
2. it creates a webhook subscription over the streams ``jobs-<run>/*`` and appends jobs;
3. ``POST /hooks`` takes the verified wake from the ``ds.webhook_dependency`` (a forged
   request is answered 401 before the route runs: the demo sends one), queues it for
   the worker and answers ``{"done": false}`` at once: the asynchronous path;
4. the worker, a task the app's lifespan owns, reads each pending stream from its acked
   offset, acks after every batch through the wake's callback (which also extends the
   lease), and finishes the wake with ``done``; the server wakes again if jobs arrived
   meanwhile;
5. once every job is handled it shows the acked offsets, deletes the subscription and
   exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import aiohttp
import uvicorn
from fastapi import Depends, FastAPI, Request

import durable_streams as ds

SERVER = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
STREAM_ROOT = SERVER + "/v1/stream"  # the reference server's streams live under /v1/stream
JOBS = 8


class Worker:
    """Handles queued wakes one at a time; acks as it goes; done at the end of each."""

    def __init__(self, session: ds.Session) -> None:
        self.session = session
        self.wakes: asyncio.Queue[ds.WebhookWake] = asyncio.Queue()
        self.handled: list[dict[str, object]] = []
        self.all_handled = asyncio.Event()

    async def run(self) -> None:
        while True:
            wake = await self.wakes.get()
            try:
                await self.finish(wake)
            except ds.SubscriptionFencedError:
                # The lease ran out and a newer wake has this work: stop here. What was
                # acked stays acked; the newer wake starts after it.
                print(f"wake {wake.generation} was fenced; a newer one carries on")
            if len(self.handled) >= JOBS:
                self.all_handled.set()

    async def finish(self, wake: ds.WebhookWake) -> None:
        callback = ds.WebhookCallback(self.session, wake)
        for cursor in wake.pending:
            stream = self.session.stream(cursor.path)
            async with stream.read(cursor.acked_offset, live=False) as reader:
                async for batch in reader.batches():
                    for job in batch.items:
                        self.handled.append(job)
                        print(f"handled {job} (generation {wake.generation})")
                    await callback.ack({cursor.path: batch.offset})
        next_wake = await callback.done()
        print(f"wake {wake.generation} done; the server woke again: {next_wake}")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The session, the verifier and the worker task live as long as the app."""
    async with ds.Session(STREAM_ROOT) as session:
        worker = Worker(session)
        app.state.worker = worker
        app.state.verifier = ds.WebhookVerifier(session)
        task = asyncio.create_task(worker.run())  # owned: cancelled and awaited below
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _verifier(request: Request) -> ds.WebhookVerifier:
    verifier: ds.WebhookVerifier = request.app.state.verifier
    return verifier


app = FastAPI(lifespan=lifespan)
verified_wake = ds.webhook_dependency(_verifier)


@app.post("/hooks")
async def hook(
    wake: Annotated[ds.WebhookWake, Depends(verified_wake)], request: Request
) -> dict[str, bool]:
    """Queue the wake for the worker and answer at once: it will call back."""
    print(f"received wake {wake.generation}: {[s.path for s in wake.pending]}")
    request.app.state.worker.wakes.put_nowait(wake)
    return ds.webhook_answer(done=False)


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    # Bound and listening before uvicorn starts: the server's first delivery waits in
    # the backlog until the app is up.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    hook_url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    print(f"app listening at {hook_url}")
    try:
        async with ds.Session(STREAM_ROOT) as session, aiohttp.ClientSession() as client:
            # Answered once the app is up (its lifespan has run): app.state is ready then.
            async with client.post(hook_url, data=b"{}", headers={"Webhook-Signature": "t=1"}) as r:
                print(f"a forged request was answered {r.status}: {(await r.json())['detail']}")
            subscription = session.subscription(f"webhook-fastapi-{run}")
            config = ds.SubscriptionConfig.webhook(hook_url, pattern=f"jobs-{run}/*")
            await subscription.create(config)
            print(f"subscription {subscription.id} covers jobs-{run}/*")
            try:
                tails = {}
                for n in range(JOBS):
                    path = f"jobs-{run}/{'ab'[n % 2]}"
                    await session.stream(path).create(content_type="application/json")
                    tails[path] = (await session.stream(path).append({"job": n})).offset
                async with asyncio.timeout(30):
                    await app.state.worker.all_handled.wait()
                handled = app.state.worker.handled
                duplicates = len(handled) - len({job["job"] for job in handled})
                print(f"all {JOBS} jobs handled, {duplicates} duplicates")
                info = await subscription.get()
                for path in sorted(tails):
                    print(f"acked {path} at {info.acked_offset(path)} (tail {tails[path]})")
            finally:
                await subscription.delete()
        print("subscription deleted; done")
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
