"""Subscription management: configuration, the control API's URLs and answers, and the
handle against the real server (create or re-confirm, get, delete, explicit streams).

The session's ``base_url`` is the stream root (``/v1/stream`` on the reference server):
subscription bodies name streams relative to it, and the control API lives under it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import durable_streams as ds
from durable_streams._subscriptions import wire
from durable_streams.testing import ReferenceServer

ROOT = "http://127.0.0.1:1/v1/stream"


@pytest.fixture
async def root(server: ReferenceServer, fast_retry: ds.RetryPolicy) -> AsyncIterator[ds.Session]:
    """A session whose base URL is the reference server's stream root."""
    async with ds.Session(f"{server.url}/v1/stream", retry=fast_retry) as session:
        yield session


@pytest.fixture
def prefix() -> str:
    """A stream-path prefix of this test's own (patterns must not match other tests')."""
    return f"m-{uuid.uuid4().hex[:12]}"


def pull(prefix: str, **options: Any) -> ds.SubscriptionConfig:
    return ds.SubscriptionConfig.pull_wake(
        f"{prefix}/wake", pattern=f"{prefix}/events/*", **options
    )


# -- configuration (no server) ---------------------------------------------------------


def test_config_pull_wake_is_validated_and_normalised() -> None:
    config = ds.SubscriptionConfig.pull_wake("/wake/pool", pattern="/events/*", lease_ttl=1.5)
    assert (config.wake_stream, config.pattern, config.lease_ttl_ms) == (
        "wake/pool",
        "events/*",
        1500,
    )
    assert json.loads(wire.encode_config(config)) == {
        "type": "pull-wake",
        "pattern": "events/*",
        "wake_stream": "wake/pool",
        "lease_ttl_ms": 1500,
    }


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"wake_stream": "w"}, "pattern"),  # neither pattern nor streams
        ({"wake_stream": "w", "pattern": "a/../b"}, "pattern"),
        ({"wake_stream": "w", "streams": "a/b"}, "streams"),  # a str is not a list of paths
        ({"wake_stream": "w", "streams": ["a//b"]}, "streams"),
        ({"pattern": "a/*"}, "wake_stream"),  # pull-wake without a wake stream
        ({"wake_stream": "w", "pattern": "a", "webhook_url": "https://x"}, "wake_stream"),
        ({"wake_stream": "w", "pattern": "a", "lease_ttl": 0.5}, "lease_ttl"),
        ({"wake_stream": "w", "pattern": "a", "lease_ttl": 601}, "lease_ttl"),
        ({"wake_stream": "w", "pattern": "a", "lease_ttl": 1.0005}, "lease_ttl"),
        ({"wake_stream": "w", "pattern": "a", "lease_ttl": float("nan")}, "lease_ttl"),
        ({"wake_stream": "w", "pattern": "a", "lease_ttl": True}, "lease_ttl"),
    ],
)
def test_bad_configurations_are_refused_before_sending(
    options: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ds.InvalidArgumentError) as caught:
        ds.SubscriptionConfig(type="pull-wake", **options)
    assert caught.value.argument == argument


def test_config_webhook_needs_an_absolute_url() -> None:
    config = ds.SubscriptionConfig.webhook("https://hooks.example/in", streams=["a/b"])
    assert json.loads(wire.encode_config(config))["webhook"] == {"url": "https://hooks.example/in"}
    with pytest.raises(ds.InvalidArgumentError):
        ds.SubscriptionConfig.webhook("/relative", streams=["a/b"])
    with pytest.raises(ds.InvalidArgumentError):
        ds.SubscriptionConfig(type="webhook", streams=("a",))


# -- URLs and answers (no server) ------------------------------------------------------


@pytest.mark.parametrize(
    ("subscription_id", "segment"),
    [
        ("sub-1", "sub-1"),
        ("a/b", "a%2Fb"),
        ("x?y#z", "x%3Fy%23z"),
        ("100%", "100%25"),
        ("été pool", "%C3%A9t%C3%A9%20pool"),
        ("..x", "..x"),
    ],
)
def test_a_subscription_id_is_one_encoded_segment(subscription_id: str, segment: str) -> None:
    assert wire.control_url(ROOT, subscription_id) == f"{ROOT}/__ds/subscriptions/{segment}"
    assert wire.control_url(ROOT, subscription_id, "ack").endswith(f"/{segment}/ack")


@pytest.mark.parametrize("bad", ["", ".", "..", "a\nb", "a\x00", "x" * 1025, 7])
def test_bad_subscription_ids_and_worker_names_are_refused(bad: Any) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        wire.control_url(ROOT, bad)
    with pytest.raises(ds.InvalidArgumentError):
        wire.encode_claim(bad)


def test_a_session_without_base_url_has_no_stream_root() -> None:
    with pytest.raises(ds.InvalidArgumentError) as caught:
        ds.Session().subscription("sub")
    assert caught.value.argument == "base_url"


def test_paths_of_explicit_streams_are_encoded_as_one_segment() -> None:
    assert wire.stream_action("events/a b") == ("streams", "events%2Fa%20b")
    with pytest.raises(ds.InvalidArgumentError):
        wire.stream_action("events/../secrets")


def _record(**changes: Any) -> bytes:
    record: dict[str, Any] = {
        "id": "s",
        "type": "pull-wake",
        "streams": [{"path": "events/a", "link_type": "glob", "acked_offset": "-1"}],
        "wake_stream": "wake/pool",
        "lease_ttl_ms": 30000,
        "status": "active",
    }
    record.update(changes)
    return json.dumps(record).encode()


def test_a_record_is_parsed_strictly() -> None:
    info = wire.parse_info(_record(), url=ROOT)
    assert info.streams == (ds.SubscriptionStream("events/a", "glob", "-1"),)
    assert (info.lease_ttl, info.wake_stream, info.created) == (30.0, "wake/pool", False)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{not json",
        b'{"id": "s", "lease_ttl_ms": NaN}',
        _record(type="push"),
        _record(lease_ttl_ms="30000"),
        _record(streams=[{"path": "../../etc", "link_type": "glob", "acked_offset": "-1"}]),
        _record(streams=[{"path": "a", "link_type": "other", "acked_offset": "-1"}]),
        _record(streams=[{"path": "a", "link_type": "glob"}]),
        _record(wake_stream="a/../../b"),
    ],
)
def test_a_record_of_the_wrong_shape_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ds.ParseError):
        wire.parse_info(body, url=ROOT)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "FENCED", ds.SubscriptionFencedError),
        (409, "SUBSCRIPTION_ALREADY_EXISTS", ds.SubscriptionExistsError),
        (409, "INVALID_OFFSET", ds.InvalidAckError),
        (409, "SOMETHING_NEW", ds.ConflictError),
        (404, "SUBSCRIPTION_NOT_FOUND", ds.SubscriptionNotFoundError),
        (400, "WEBHOOK_URL_REJECTED", ds.BadRequestError),
        (401, "TOKEN_EXPIRED", ds.UnauthorizedError),
        (503, None, ds.ServerError),
    ],
)
def test_error_answers_map_to_the_error_tree(
    status: int, code: str | None, expected: type[ds.ResponseError]
) -> None:
    body = json.dumps({"error": {"code": code, "message": "m"}}).encode() if code else b"oops"
    error = wire.error_for_answer(status, {}, body, op=wire.CallOp.ACK, url=ROOT, generation=3)
    assert type(error) is expected
    assert error.status == status
    if isinstance(error, ds.SubscriptionFencedError):
        assert error.generation == 3


# -- against the server ----------------------------------------------------------------


async def test_the_handle_does_no_io(root: ds.Session) -> None:
    subscription = root.subscription("no-io")
    assert subscription.url.endswith("/v1/stream/__ds/subscriptions/no-io")
    assert root.statistics().requests == 0


async def test_create_then_reconfirm_then_conflict(root: ds.Session, prefix: str) -> None:
    await root.stream(f"{prefix}/wake").create(content_type="application/json")
    subscription = root.subscription(f"{prefix}-sub")
    first = await subscription.create(pull(prefix, lease_ttl=5, description="pool"))
    assert first.created
    assert (first.id, first.type, first.lease_ttl, first.status) == (
        f"{prefix}-sub",
        "pull-wake",
        5.0,
        "active",
    )
    again = await subscription.create(pull(prefix, lease_ttl=5, description="pool"))
    assert not again.created  # identical: re-confirmed
    with pytest.raises(ds.SubscriptionExistsError) as caught:
        await subscription.create(pull(prefix, lease_ttl=6, description="pool"))
    assert caught.value.status == 409
    await subscription.delete()


async def test_get_reports_link_types_and_acked_offsets(root: ds.Session, prefix: str) -> None:
    old = root.stream(f"{prefix}/events/old")
    await old.create(content_type="application/json", data=[{"n": 0}])
    await root.stream(f"{prefix}/wake").create(content_type="application/json")
    subscription = root.subscription(f"{prefix}-sub")
    await subscription.create(pull(prefix, streams=[f"{prefix}/other/x"]))

    fresh = root.stream(f"{prefix}/events/new")
    await fresh.create(content_type="application/json")
    await fresh.append({"n": 1})  # a stream the pattern discovers now: from its beginning
    info = await subscription.get()
    links = {s.path: s for s in info.streams}
    assert links[f"{prefix}/events/old"].link_type == "glob"
    assert info.acked_offset(f"{prefix}/events/old") == (await old.head()).offset  # at the tail
    assert links[f"{prefix}/events/new"] == ds.SubscriptionStream(
        f"{prefix}/events/new", "glob", "-1"
    )
    assert links[f"{prefix}/other/x"].link_type == "explicit"
    assert info.pattern == f"{prefix}/events/*"
    assert info.acked_offset("not/linked") is None
    await subscription.delete()


async def test_explicit_links_are_added_and_removed(root: ds.Session, prefix: str) -> None:
    await root.stream(f"{prefix}/wake").create(content_type="application/json")
    subscription = root.subscription(f"{prefix}-sub")
    await subscription.create(pull(prefix))
    globbed = f"{prefix}/events/a"
    await root.stream(globbed).create(content_type="application/json")
    await root.stream(globbed).append({"n": 1})
    await subscription.add_streams([f"{prefix}/x/1", globbed])
    await subscription.add_streams([f"{prefix}/x/1"])  # again: idempotent
    links = {s.path: s.link_type for s in (await subscription.get()).streams}
    assert links == {globbed: "explicit", f"{prefix}/x/1": "explicit"}  # explicit wins

    await subscription.remove_stream(globbed)  # the glob link stays
    await subscription.remove_stream(f"{prefix}/x/1")
    await subscription.remove_stream(f"{prefix}/x/never")  # absent: idempotent
    links = {s.path: s.link_type for s in (await subscription.get()).streams}
    assert links == {globbed: "glob"}
    with pytest.raises(ds.InvalidArgumentError):
        await subscription.add_streams([])
    await subscription.delete()


async def test_delete_then_everything_is_not_found(root: ds.Session, prefix: str) -> None:
    await root.stream(f"{prefix}/wake").create(content_type="application/json")
    subscription = root.subscription(f"{prefix}/with slash?and#more")  # any text is an id
    info = await subscription.create(pull(prefix))
    assert info.id == f"{prefix}/with slash?and#more"
    assert (await subscription.get()).id == info.id
    await subscription.delete()
    await subscription.delete()  # deleting a missing subscription succeeds
    with pytest.raises(ds.SubscriptionNotFoundError):
        await subscription.get()
    with pytest.raises(ds.SubscriptionNotFoundError):
        await subscription.add_streams(["a/b"])
    with pytest.raises(ds.SubscriptionNotFoundError):
        await subscription.claim("w1")


async def test_a_webhook_on_a_server_without_webhooks_is_a_bad_request(
    root: ds.Session, prefix: str
) -> None:
    subscription = root.subscription(f"{prefix}-hook")
    config = ds.SubscriptionConfig.webhook("http://127.0.0.1:9/hook", pattern=f"{prefix}/*")
    with pytest.raises(ds.BadRequestError) as caught:
        await subscription.create(config)
    assert "INVALID_REQUEST" in str(caught.value)


async def test_claims_are_refused_on_a_webhook_subscription() -> None:
    with ReferenceServer(webhooks=True) as hooks:
        async with ds.Session(f"{hooks.url}/v1/stream") as session:
            subscription = session.subscription("hook")
            await subscription.create(
                ds.SubscriptionConfig.webhook("http://127.0.0.1:9/hook", pattern="events/*")
            )
            with pytest.raises(ds.BadRequestError):
                await subscription.claim("w1")
            with pytest.raises(ds.InvalidArgumentError):
                async with subscription.worker("w1") as worker:
                    await anext(worker)
