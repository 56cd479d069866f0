"""The FastAPI dependency: a verified wake for the route, or an HTTP refusal before it runs.

The app is called as ASGI directly (no HTTP server); the verifier fetches its key set from
a receiver of ours, and one delivery is a real one from the reference server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")

from fastapi import Depends, FastAPI, Request

import durable_streams as ds
from durable_streams._subscriptions.webhook import (
    webhook_answer,
    webhook_dependency,
)
from durable_streams._subscriptions.webhook_verify import WebhookVerifier
from durable_streams._subscriptions.webhook_wire import WebhookWake
from durable_streams.testing import ReferenceServer
from tests.test_subscriptions_webhook import (
    STREAM_ROOT,
    Receiver,
    jwks_of_test_key,
    new_events,
    sign,
)


def _verifier(request: Request) -> WebhookVerifier:
    verifier: WebhookVerifier = request.app.state.verifier
    return verifier


VERIFIED = webhook_dependency(_verifier, max_body_bytes=4096)


def make_app(verifier: WebhookVerifier, seen: list[WebhookWake]) -> FastAPI:
    app = FastAPI()
    app.state.verifier = verifier

    @app.post("/hooks")
    async def hook(wake: Annotated[WebhookWake, Depends(VERIFIED)]) -> dict[str, bool]:
        seen.append(wake)
        return webhook_answer(done=True)

    return app


async def call(app: FastAPI, body: bytes, signature: str | None) -> tuple[int, Any]:
    """POST /hooks through the ASGI interface; the status and the JSON answer."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if signature is not None:
        headers.append((b"webhook-signature", signature.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hooks",
        "raw_path": b"/hooks",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(webhooks=True) as srv:
        yield srv


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_the_dependency_refuses_before_the_route_runs(
    webhook_server: ReferenceServer, receiver: Receiver
) -> None:
    receiver.jwks = jwks_of_test_key()
    seen: list[WebhookWake] = []
    async with ds.Session(
        webhook_server.url + STREAM_ROOT, allowed_origins=[receiver.origin]
    ) as session:
        app = make_app(WebhookVerifier(session, jwks_url=receiver.origin + "/jwks"), seen)
        wake = {
            "subscription_id": "s",
            "wake_id": "w",
            "generation": 1,
            "streams": [],
            "callback_url": session.url_for("__ds/subscriptions/s/callback"),
            "callback_token": "t",
        }
        body = json.dumps(wake).encode()
        assert await call(app, body, None) == (
            401,
            {"detail": "webhook signature refused: missing"},
        )
        assert await call(app, body + b" ", sign(body, kid="test-key")) == (
            401,
            {"detail": "webhook signature refused: bad_signature"},
        )
        assert (await call(app, b"[]", sign(b"[]", kid="test-key")))[0] == 400
        big = b" " * 5000
        assert (await call(app, big, sign(big, kid="test-key")))[0] == 413
        assert seen == []
        assert await call(app, body, sign(body, kid="test-key")) == (200, {"done": True})
        assert [w.wake_id for w in seen] == ["w"]


async def test_a_real_delivery_reaches_the_route(
    webhook_server: ReferenceServer, receiver: Receiver
) -> None:
    seen: list[WebhookWake] = []
    async with ds.Session(webhook_server.url + STREAM_ROOT) as session:
        prefix = f"fastapi-{uuid.uuid4().hex[:12]}"
        subscription = session.subscription(prefix)
        await subscription.create(
            ds.SubscriptionConfig.webhook(receiver.origin + "/raw", pattern=f"{prefix}/*")
        )
        try:
            tail = await new_events(session, f"{prefix}/a", {"n": 1})
            delivery = await receiver.next_delivery()
            app = make_app(WebhookVerifier(session), seen)
            assert await call(app, delivery.body, delivery.signature) == (200, {"done": True})
        finally:
            await subscription.delete()
    (wake,) = seen
    assert wake.subscription_id == prefix
    assert wake.tails() == {f"{prefix}/a": tail}
