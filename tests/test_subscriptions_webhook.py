"""Webhook receivers against the real reference server (``webhooks: true``).

The server POSTs signed wakes to a receiver of ours on 127.0.0.1 (its SSRF rules allow
``http://`` only for ``localhost`` and ``127.0.0.x``, which is what tests need). Every
test waits on what the server sends (a queue of deliveries), never on time; the one
test that needs a lease to expire waits for the redelivery that the expiry causes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import durable_streams as ds
from durable_streams._errors import WebhookSignatureError
from durable_streams._subscriptions.webhook import WebhookCallback, webhook_handler
from durable_streams._subscriptions.webhook_verify import (
    WebhookVerifier,
    WebhookVerifierStatistics,
)
from durable_streams._subscriptions.webhook_wire import WebhookWake
from durable_streams.testing import ReferenceServer

STREAM_ROOT = "/v1/stream"
_WAIT = 15.0


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[ReferenceServer]:
    """A reference server of this module's own, with webhook subscriptions enabled."""
    with ReferenceServer(webhooks=True, long_poll_timeout_ms=2000) as srv:
        yield srv


# -- a receiver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One request the server sent to the receiver, as it arrived."""

    signature: str | None
    body: bytes


class Receiver:
    """An aiohttp app on 127.0.0.1: the server's webhook target, and fakes beside it.

    - ``POST /raw`` records each delivery (``deliveries``) and answers ``raw_answer``;
    - ``POST /hook`` runs ``hook``, a handler made with ``webhook_handler``;
    - ``GET /jwks`` answers ``jwks`` (a key set of the test's choosing), counting requests;
    - ``POST /callback`` is a callback endpoint that rotates its token on the first call.
    """

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.raw_answer: dict[str, Any] = {"done": False}
        self.hook: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.jwks: bytes = b'{"keys": []}'
        self.jwks_requests = 0
        self.callback_auth: list[str | None] = []
        self._runner: web.AppRunner | None = None
        self.origin = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/raw", self._raw)
        app.router.add_post("/hook", self._hook)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/callback", self._callback)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _raw(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.deliveries.put(Delivery(request.headers.get("Webhook-Signature"), body))
        return web.json_response(self.raw_answer)

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        assert self.hook is not None
        return await self.hook(request)

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.Response(body=self.jwks, content_type="application/jwk-set+json")

    async def _callback(self, request: web.Request) -> web.Response:
        self.callback_auth.append(request.headers.get("Authorization"))
        answer: dict[str, Any] = {"ok": True, "next_wake": False}
        if len(self.callback_auth) == 1:
            answer["token"] = "token-2"
        return web.json_response(answer)

    async def next_delivery(self) -> Delivery:
        async with asyncio.timeout(_WAIT):
            return await self.deliveries.get()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def session(webhook_server: ReferenceServer, receiver: Receiver) -> AsyncIterator[ds.Session]:
    """A session whose base URL is the server's stream root; the receiver's origin is
    allowed (the fake key set and callback endpoint live there)."""
    retry = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with ds.Session(
        webhook_server.url + STREAM_ROOT, allowed_origins=[receiver.origin], retry=retry
    ) as s:
        yield s


@pytest.fixture
async def subscribe(
    session: ds.Session, receiver: Receiver
) -> AsyncIterator[Callable[..., Awaitable[tuple[ds.Subscription, str]]]]:
    """Create a webhook subscription to a receiver route over streams ``<prefix>/*``;
    every one is deleted afterwards, so the server stops delivering to a closed port."""
    made: list[ds.Subscription] = []

    async def make(route: str = "/raw", lease_ttl: float = 30.0) -> tuple[ds.Subscription, str]:
        prefix = f"wh-{uuid.uuid4().hex[:12]}"
        subscription = session.subscription(f"sub-{prefix}")
        config = ds.SubscriptionConfig.webhook(
            receiver.origin + route, pattern=f"{prefix}/*", lease_ttl=lease_ttl
        )
        await subscription.create(config)
        made.append(subscription)
        return subscription, prefix

    yield make
    for subscription in made:
        await subscription.delete()


async def new_events(session: ds.Session, path: str, *items: object) -> str:
    """Create the JSON stream ``path`` if needed, append ``items`` in one request; the tail."""
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    return (await stream.append(list(items))).offset


# -- signatures made here -----------------------------------------------------------------

TEST_KEY = Ed25519PrivateKey.generate()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(body: bytes, *, kid: str, t: int | None = None, key: Ed25519PrivateKey = TEST_KEY) -> str:
    """A Webhook-Signature header as the server would make it, with a key of ours."""
    stamp = int(time.time()) if t is None else t
    return f"t={stamp},kid={kid},ed25519={b64url(key.sign(f'{stamp}.'.encode() + body))}"


def jwks_of_test_key(kid: str = "test-key") -> bytes:
    x = b64url(TEST_KEY.public_key().public_bytes_raw())
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}
    return json.dumps({"keys": [jwk]}).encode()


def kid_of(signature: str | None) -> str:
    assert signature is not None
    return dict(p.split("=", 1) for p in signature.split(","))["kid"]


async def refused(verifier: WebhookVerifier, body: bytes, signature: str | None) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        await verifier.verify(body, signature)
    return caught.value.reason


# -- the verifier on real deliveries ------------------------------------------------------


async def test_a_real_delivery_verifies_and_reads_as_a_wake(
    session: ds.Session, receiver: Receiver, subscribe: Any
) -> None:
    subscription, prefix = await subscribe()
    tail = await new_events(session, f"{prefix}/a", {"n": 1}, {"n": 2})
    delivery = await receiver.next_delivery()

    verifier = WebhookVerifier(session)
    assert verifier.jwks_url == session.url_for("__ds/jwks.json")
    wake = await verifier.verify(delivery.body, delivery.signature)
    assert wake.subscription_id == subscription.id
    assert wake.generation == 1
    assert [(s.path, s.acked_offset, s.tail_offset) for s in wake.pending] == [
        (f"{prefix}/a", "-1", tail)
    ]
    assert wake.callback_url == f"{subscription.url}/callback"
    info = await subscription.get()
    assert info.signing is not None
    assert wake.key_id == info.signing.kid
    assert info.signing.jwks_url == verifier.jwks_url

    # The key is cached: a second delivery costs no fetch.
    await verifier.verify(delivery.body, delivery.signature)
    assert verifier.statistics() == WebhookVerifierStatistics(verified=2, refused=0, key_fetches=1)


async def test_tampered_bodies_and_other_keys_are_refused(
    session: ds.Session, receiver: Receiver, subscribe: Any
) -> None:
    _, prefix = await subscribe()
    await new_events(session, f"{prefix}/a", {"n": 1})
    delivery = await receiver.next_delivery()
    verifier = WebhookVerifier(session)
    body, signature = delivery.body, delivery.signature

    assert await refused(
        verifier, body.replace(b'"generation":1', b'"generation":2'), signature
    ) == ("bad_signature")
    assert await refused(verifier, body + b" ", signature) == "bad_signature"
    # The server's key id, but a signature made with another key.
    forged = sign(body, kid=kid_of(signature))
    assert await refused(verifier, body, forged) == "bad_signature"
    # The right signature under another timestamp does not hold either.
    assert signature is not None
    stamp = signature.split(",")[0]
    shifted = signature.replace(stamp, f"t={int(stamp[2:]) - 1}")
    assert await refused(verifier, body, shifted) == "bad_signature"
    assert verifier.statistics() == WebhookVerifierStatistics(verified=0, refused=4, key_fetches=1)
    await verifier.verify(body, signature)  # the original still holds


async def test_stale_and_future_timestamps_are_refused_before_any_key_fetch(
    session: ds.Session,
) -> None:
    verifier = WebhookVerifier(session)
    body = b'{"subscription_id": "x"}'
    now = int(time.time())
    # Far enough outside the window that the time the test takes cannot matter.
    assert await refused(verifier, body, sign(body, kid="k", t=now - 400)) == "stale"
    assert await refused(verifier, body, sign(body, kid="k", t=now + 400)) == "future"
    short = WebhookVerifier(session, replay_window=60)
    assert await refused(short, body, sign(body, kid="k", t=now - 120)) == "stale"
    assert verifier.statistics().key_fetches == short.statistics().key_fetches == 0


async def test_missing_and_malformed_headers_are_refused(session: ds.Session) -> None:
    verifier = WebhookVerifier(session)
    assert await refused(verifier, b"{}", None) == "missing"
    assert await refused(verifier, b"{}", "sha256=abc") == "malformed"
    assert await refused(verifier, b"{}", f"t={int(time.time())},kid=k,ed25519=x") == "malformed"
    assert verifier.statistics() == WebhookVerifierStatistics(verified=0, refused=3, key_fetches=0)


async def test_an_unknown_kid_refetches_the_key_set_and_succeeds_when_the_key_is_there(
    session: ds.Session, receiver: Receiver, subscribe: Any, webhook_server: ReferenceServer
) -> None:
    _, prefix = await subscribe()
    await new_events(session, f"{prefix}/a", {"n": 1})
    delivery = await receiver.next_delivery()
    receiver.jwks = jwks_of_test_key()  # the server's key is not in it yet
    verifier = WebhookVerifier(session, jwks_url=receiver.origin + "/jwks", refetch_interval=0)

    assert await refused(verifier, delivery.body, delivery.signature) == "unknown_key"
    assert receiver.jwks_requests == 1
    # The key appears (a rotation): the next unknown kid fetches again and finds it.
    jwks_url = webhook_server.url + STREAM_ROOT + "/__ds/jwks.json"
    async with aiohttp.ClientSession() as client, client.get(jwks_url) as answer:
        receiver.jwks = await answer.read()
    wake = await verifier.verify(delivery.body, delivery.signature)
    assert wake.key_id == kid_of(delivery.signature)
    assert receiver.jwks_requests == 2
    # A kid nobody has: one more fetch, then a typed refusal.
    assert await refused(verifier, delivery.body, sign(delivery.body, kid="nobody")) == (
        "unknown_key"
    )
    assert receiver.jwks_requests == 3


async def test_a_flood_of_unknown_kids_fetches_the_key_set_once(
    session: ds.Session, receiver: Receiver
) -> None:
    receiver.jwks = jwks_of_test_key()
    verifier = WebhookVerifier(session, jwks_url=receiver.origin + "/jwks", refetch_interval=3600)
    body = b"{}"
    reasons = await asyncio.gather(
        *(refused(verifier, body, sign(body, kid=f"forged-{n}")) for n in range(50))
    )
    assert set(reasons) == {"unknown_key"}
    assert receiver.jwks_requests == 1
    assert verifier.statistics() == WebhookVerifierStatistics(verified=0, refused=50, key_fetches=1)
    # The key set that was fetched still serves the keys it has.
    good = json.dumps({"not": "a wake"}).encode()
    with pytest.raises(ds.ParseError):  # the signature holds; the body is no wake
        await verifier.verify(good, sign(good, kid="test-key"))
    assert receiver.jwks_requests == 1


async def test_the_key_set_must_be_on_the_sessions_origins(session: ds.Session) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        WebhookVerifier(session, jwks_url="http://127.0.0.2:1/jwks.json")
    with pytest.raises(ds.InvalidArgumentError):
        WebhookVerifier(session, replay_window=0)


# -- answering: done, or call back later --------------------------------------------------


def hook_into_queue(
    receiver: Receiver, session: ds.Session, answers: list[bool]
) -> asyncio.Queue[WebhookWake]:
    """Install ``webhook_handler`` on ``/hook``: each wake is queued and answered with the
    next of ``answers`` (the last one repeats): True is ``done``."""
    wakes: asyncio.Queue[WebhookWake] = asyncio.Queue()

    async def handle(wake: WebhookWake) -> bool:
        await wakes.put(wake)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    receiver.hook = webhook_handler(WebhookVerifier(session), handle)
    return wakes


async def next_wake(wakes: asyncio.Queue[WebhookWake]) -> WebhookWake:
    async with asyncio.timeout(_WAIT):
        return await wakes.get()


async def test_answering_done_acks_the_wakes_snapshot(
    session: ds.Session, receiver: Receiver, subscribe: Any
) -> None:
    subscription, prefix = await subscribe(route="/hook")
    wakes = hook_into_queue(receiver, session, [True, False])
    path = f"{prefix}/a"
    tail = await new_events(session, path, {"n": 1}, {"n": 2})
    first = await next_wake(wakes)
    assert first.tails() == {path: tail}

    # New events: the next wake starts where the done answer acked the first one.
    newer = await new_events(session, path, {"n": 3})
    second = await next_wake(wakes)
    assert second.generation == first.generation + 1
    (stream,) = second.pending
    assert (stream.acked_offset, stream.tail_offset) == (tail, newer)
    # That wake was answered without done: it is held, and the cursor stays put.
    assert (await subscription.get()).acked_offset(path) == tail


async def test_a_callback_acks_later_and_done_releases(
    session: ds.Session, receiver: Receiver, subscribe: Any
) -> None:
    subscription, prefix = await subscribe(route="/hook")
    wakes = hook_into_queue(receiver, session, [False])
    a, b = f"{prefix}/a", f"{prefix}/b"
    tail_a = await new_events(session, a, {"n": 1})
    first = await next_wake(wakes)
    tail_b = await new_events(session, b, {"n": 2})  # while the wake is held: no new wake

    callback = WebhookCallback(session, first)
    await callback.ack({a: tail_a})
    assert (await subscription.get()).acked_offset(a) == tail_a
    await callback.heartbeat()
    # b was linked (and got its event) after the wake's snapshot: done wakes again for it.
    assert await callback.done() is True
    second = await next_wake(wakes)
    assert second.generation == first.generation + 1
    assert {s.path: (s.acked_offset, s.tail_offset) for s in second.pending} == {b: ("-1", tail_b)}
    assert await WebhookCallback(session, second).done(second.tails()) is False
    info = await subscription.get()
    assert (info.acked_offset(a), info.acked_offset(b)) == (tail_a, tail_b)


async def test_a_stale_callback_is_fenced(
    session: ds.Session, receiver: Receiver, subscribe: Any
) -> None:
    # The first wake is kept without an answer of done and without callbacks: its lease
    # (1 s) expires and the server wakes again, with a newer generation.
    _, prefix = await subscribe(route="/hook", lease_ttl=1.0)
    wakes = hook_into_queue(receiver, session, [False, True])
    path = f"{prefix}/a"
    tail = await new_events(session, path, {"n": 1})
    first = await next_wake(wakes)
    second = await next_wake(wakes)
    assert second.generation > first.generation

    stale = WebhookCallback(session, first)
    with pytest.raises(ds.SubscriptionFencedError) as fenced:
        await stale.ack({path: tail})
    assert fenced.value.generation == first.generation
    with pytest.raises(ds.SubscriptionFencedError):
        await stale.done({path: tail})


async def test_callback_urls_must_be_on_the_sessions_origins(session: ds.Session) -> None:
    wake = WebhookWake(
        subscription_id="s",
        wake_id="w",
        generation=1,
        streams=(),
        callback_url="http://127.0.0.2:1/v1/stream/__ds/subscriptions/s/callback",
        callback_token="t",
        signed_at=0,
        key_id="k",
    )
    with pytest.raises(ds.InvalidArgumentError):
        WebhookCallback(session, wake)
    with pytest.raises(ds.InvalidArgumentError):
        await WebhookCallback(session, replace(wake, callback_url=session.url_for("x"))).ack({})


async def test_a_callback_takes_a_rotated_token_and_not_the_sessions_credentials(
    webhook_server: ReferenceServer, receiver: Receiver
) -> None:
    wake = WebhookWake(
        subscription_id="s",
        wake_id="w",
        generation=1,
        streams=(),
        callback_url=receiver.origin + "/callback",
        callback_token="token-1",
        signed_at=0,
        key_id="k",
    )
    headers = {"Authorization": "Bearer the-services-own-token"}
    async with ds.Session(
        webhook_server.url + STREAM_ROOT, headers=headers, allowed_origins=[receiver.origin]
    ) as s:
        callback = WebhookCallback(s, wake)
        await callback.heartbeat()
        await callback.ack({"a": "0000000000000000_0000000000000001"})
        assert await callback.done() is False
    assert receiver.callback_auth == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert "token-1" not in repr(callback)


# -- the aiohttp handler refuses before calling the application ---------------------------


async def test_the_aiohttp_handler_answers_refusals_itself(
    session: ds.Session, receiver: Receiver
) -> None:
    receiver.jwks = jwks_of_test_key()
    handled: list[WebhookWake] = []

    async def handle(wake: WebhookWake) -> bool:
        handled.append(wake)
        return True

    verifier = WebhookVerifier(session, jwks_url=receiver.origin + "/jwks")
    receiver.hook = webhook_handler(verifier, handle, max_body_bytes=4096)
    wake_body = json.dumps(
        {
            "subscription_id": "s",
            "wake_id": "w",
            "generation": 1,
            "streams": [],
            "callback_url": session.url_for("__ds/subscriptions/s/callback"),
            "callback_token": "t",
        }
    ).encode()

    async def post(body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        headers = {"Webhook-Signature": signature} if signature else {}
        async with (
            aiohttp.ClientSession() as client,
            client.post(receiver.origin + "/hook", data=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json()

    assert await post(wake_body, None) == (401, {"error": "webhook signature refused: missing"})
    forged = sign(wake_body, kid="test-key", key=Ed25519PrivateKey.generate())
    assert await post(wake_body, forged) == (
        401,
        {"error": "webhook signature refused: bad_signature"},
    )
    assert (await post(b"[]", sign(b"[]", kid="test-key")))[0] == 400
    big = b" " * 5000
    assert (await post(big, sign(big, kid="test-key")))[0] == 413
    assert handled == []
    assert await post(wake_body, sign(wake_body, kid="test-key")) == (200, {"done": True})
    assert [w.wake_id for w in handled] == ["w"]


# -- without the optional dependency ------------------------------------------------------


def test_without_cryptography_the_package_imports_and_the_verifier_says_what_to_install() -> None:
    code = """
import sys
sys.modules["cryptography"] = None  # as if it were not installed
import durable_streams as ds
from durable_streams._subscriptions import webhook
assert "fastapi" not in sys.modules and "aiohttp.web" not in sys.modules
from durable_streams._subscriptions.webhook_verify import (
    WebhookVerifier,
    WebhookVerifierStatistics,
)
try:
    WebhookVerifier(ds.Session("http://127.0.0.1:1/v1/stream"))
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("no ImportError")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'durable-streams-aio[webhooks]'" in result.stdout


async def test_a_key_set_that_cannot_be_had_is_a_typed_error_and_a_503(
    session: ds.Session, receiver: Receiver
) -> None:
    receiver.jwks = b"not a key set"
    body = b"{}"
    signature = sign(body, kid="test-key")
    verifier = WebhookVerifier(session, jwks_url=receiver.origin + "/jwks", refetch_interval=0)
    with pytest.raises(ds.ParseError):
        await verifier.verify(body, signature)
    with pytest.raises(ds.NotSupportedError):  # no key set at that URL (404)
        await WebhookVerifier(session, jwks_url=receiver.origin + "/nothing").verify(
            body, signature
        )

    async def handle(wake: WebhookWake) -> bool:
        raise AssertionError("not reached")

    receiver.hook = webhook_handler(verifier, handle)
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            receiver.origin + "/hook", data=body, headers={"Webhook-Signature": signature}
        ) as answer,
    ):
        assert answer.status == 503  # the server delivers the wake again later
