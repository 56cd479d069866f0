"""Receive webhook wakes in an aiohttp app: verify each one, handle its events, answer done.

Needs a server with webhook subscriptions enabled. With the repository's reference server
(Node.js; ``python -m durable_streams.testing install`` once;
``DS_TEST_WEBHOOKS=1`` turns webhooks on)::

    DS_TEST_WEBHOOKS=1 python -m tests.with_server python examples/webhook_aiohttp.py

or against a server you run yourself (its stream root is ``$DURABLE_STREAMS_URL/v1/stream``)::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/webhook_aiohttp.py

It runs from start to finish by itself, printing what happens:

1. it starts an aiohttp receiver on 127.0.0.1 (a free port): the reference server accepts
   plain ``http://`` webhook URLs only for ``localhost`` and ``127.0.0.x``; anywhere else
   a receiver needs ``https://`` on a public host;
2. it creates a webhook subscription over the streams ``orders-<run>/*``;
3. it appends orders to two streams, in rounds;
4. for each wake, ``ds.webhook_handler`` checks the signature (a forged or replayed request
   is answered 401 and never reaches ``handle``); ``handle`` reads every pending stream
   from its acked offset and handles the orders; when it read exactly up to the wake's
   snapshot it answers ``{"done": true}`` and the server acks the snapshot itself, and
   when it read further (orders appended meanwhile) it acks exactly what it handled,
   through the wake's callback, so that nothing is handled twice;
5. once every order is handled it shows the subscription's acked offsets (the tails),
   deletes the subscription and exits.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from aiohttp import web

import durable_streams as ds

SERVER = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
STREAM_ROOT = SERVER + "/v1/stream"  # the reference server's streams live under /v1/stream
ROUNDS = 3
STREAMS = ("eu", "us")


class OrderHandler:
    """The application: handles each order once, and knows when all have been handled."""

    def __init__(self, session: ds.Session, expected: int) -> None:
        self.session = session
        self.handled: list[dict[str, object]] = []
        self.expected = expected
        self.all_handled = asyncio.Event()

    async def handle(self, wake: ds.WebhookWake) -> bool:
        """Handle the wake's new orders; True answers done (the server acks the snapshot)."""
        read_to: dict[str, str] = {}
        for cursor in wake.pending:
            stream = self.session.stream(cursor.path)
            async with stream.read(cursor.acked_offset, live=False) as reader:
                async for batch in reader.batches():
                    for order in batch.items:
                        self.handled.append(order)
                        print(f"handled {order} (generation {wake.generation})")
                    read_to[cursor.path] = batch.offset
        if len(self.handled) >= self.expected:
            self.all_handled.set()
        if read_to == wake.tails():
            return True
        # Orders appended after the snapshot were handled too: ack exactly those offsets
        # (the done answer would ack only the snapshot, and they would come again).
        await ds.WebhookCallback(self.session, wake).done(read_to)
        print(f"acked past the snapshot through the callback: {read_to}")
        return False


async def start_receiver(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/hooks"


async def acked_offsets(subscription: ds.Subscription, tails: dict[str, str]) -> dict[str, str]:
    """The subscription's acked offsets, once the server has recorded them all.

    A done answer is applied by the server after it has read the answer: wait for it.
    """
    async with asyncio.timeout(10):
        while True:
            info = await subscription.get()
            acked = {path: info.acked_offset(path) or "-1" for path in tails}
            if acked == tails:
                return acked
            await asyncio.sleep(0.05)


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    async with ds.Session(STREAM_ROOT) as session:
        orders = OrderHandler(session, expected=ROUNDS * len(STREAMS))
        verifier = ds.WebhookVerifier(session)
        await verifier.refresh()  # fetch the server's keys now, not on the first wake
        app = web.Application()
        app.router.add_post("/hooks", ds.webhook_handler(verifier, orders.handle))
        runner, hook_url = await start_receiver(app)
        print(f"receiver listening at {hook_url}")
        subscription = session.subscription(f"webhook-aiohttp-{run}")
        try:
            config = ds.SubscriptionConfig.webhook(hook_url, pattern=f"orders-{run}/*")
            await subscription.create(config)
            print(f"subscription {subscription.id} covers orders-{run}/*")
            tails: dict[str, str] = {}
            for region in STREAMS:
                await session.stream(f"orders-{run}/{region}").create(
                    content_type="application/json"
                )
            for n in range(ROUNDS):
                for region in STREAMS:
                    path = f"orders-{run}/{region}"
                    ack = await session.stream(path).append({"order": n, "region": region})
                    tails[path] = ack.offset
            async with asyncio.timeout(30):
                await orders.all_handled.wait()
            distinct = {(o["order"], o["region"]) for o in orders.handled}
            duplicates = len(orders.handled) - len(distinct)
            print(f"all {len(distinct)} orders handled, {duplicates} duplicates")
            for path, offset in (await acked_offsets(subscription, tails)).items():
                print(f"acked {path} at {offset}")
            print(f"verifier: {verifier.statistics()}")
        finally:
            await subscription.delete()
            await runner.cleanup()
    print("subscription deleted; done")


if __name__ == "__main__":
    asyncio.run(main())
