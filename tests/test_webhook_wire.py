"""Webhook delivery on the wire, without a server: the signature header, the signed string,
the replay window, the key set and the wake body (pure functions, no event loop)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from durable_streams import InvalidArgumentError, ParseError
from durable_streams._errors import WebhookSignatureError
from durable_streams._subscriptions.webhook import webhook_answer
from durable_streams._subscriptions.webhook_wire import (
    check_timestamp,
    parse_jwks,
    parse_signature,
    parse_wake,
    signed_payload,
)

SIG = base64.urlsafe_b64encode(bytes(range(64))).rstrip(b"=").decode()
KEY_X = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
HEADER = f"t=1796162792,kid=ds_abc,ed25519={SIG}"


def refusal(value: str | None) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        parse_signature(value)
    return caught.value.reason


# -- the header -------------------------------------------------------------------------


def test_a_signature_header_is_read() -> None:
    sig = parse_signature(HEADER)
    assert (sig.timestamp, sig.key_id, sig.signature) == (1796162792, "ds_abc", bytes(range(64)))
    assert SIG not in repr(sig)


def test_parameter_order_does_not_matter_and_unknown_ones_are_ignored() -> None:
    sig = parse_signature(f"ed25519={SIG}, v9=later, kid=ds_abc, t=1796162792")
    assert (sig.timestamp, sig.key_id) == (1796162792, "ds_abc")


def test_the_signed_string_is_the_timestamp_as_sent_a_dot_and_the_raw_body() -> None:
    sig = parse_signature(f"t=0001796162792,kid=k,ed25519={SIG}")
    assert signed_payload(sig, b'{"a": 1}') == b'0001796162792.{"a": 1}'


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_header_is_missing(value: str | None) -> None:
    assert refusal(value) == "missing"


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "t=1796162792,kid=ds_abc",  # no signature
        f"kid=ds_abc,ed25519={SIG}",  # no timestamp
        f"t=1796162792,ed25519={SIG}",  # no key id
        f"t=1796162792,kid=,ed25519={SIG}",  # empty key id
        f"t=-5,kid=k,ed25519={SIG}",
        f"t=17961627.92,kid=k,ed25519={SIG}",
        f"t=\uff11\uff17\uff19\uff16,kid=k,ed25519={SIG}",  # fullwidth digits, not ASCII
        f"t=179616279200000,kid=k,ed25519={SIG}",  # not Unix seconds
        f"t=1,t=2,kid=k,ed25519={SIG}",  # repeated
        "t=1796162792,kid=k,ed25519=not+base64/",
        "t=1796162792,kid=k,ed25519=" + SIG[:-4],  # too short for Ed25519
        "t=1796162792,kid=k,ed25519=" + SIG + "AAAA",  # too long
        f"t=1796162792,kid=k,ed25519={SIG},",  # empty parameter
        "t=1796162792,kid=k,ed25519=" + "A" * 3000,
    ],
)
def test_anything_else_is_malformed(value: str) -> None:
    assert refusal(value) == "malformed"


# -- the replay window ------------------------------------------------------------------


def test_the_replay_window_refuses_stale_and_future_signatures() -> None:
    sig = parse_signature(HEADER)
    now = float(sig.timestamp)
    check_timestamp(sig, now=now, replay_window=300)
    check_timestamp(sig, now=now + 300, replay_window=300)
    check_timestamp(sig, now=now - 300, replay_window=300)
    with pytest.raises(WebhookSignatureError) as stale:
        check_timestamp(sig, now=now + 301, replay_window=300)
    assert stale.value.reason == "stale"
    with pytest.raises(WebhookSignatureError) as future:
        check_timestamp(sig, now=now - 301, replay_window=300)
    assert future.value.reason == "future"


# -- the key set ------------------------------------------------------------------------


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def ed25519(kid: str, x: str = KEY_X, **extra: str) -> dict[str, Any]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
    } | extra


def test_a_key_set_gives_raw_ed25519_keys_by_kid_and_skips_other_keys() -> None:
    rsa = {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}
    enc = ed25519("enc", use="enc")
    assert parse_jwks(jwks(ed25519("a"), rsa, enc, ed25519("b")), url="u") == {
        "a": bytes(32),
        "b": bytes(32),
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": [1]}',
        jwks(ed25519("a"), ed25519("a")),
        jwks(ed25519("")),
        jwks(ed25519("a", x="AAAA")),
        jwks(ed25519("a", x="!!")),
        jwks(*[ed25519(f"k{n}") for n in range(65)]),
    ],
)
def test_a_malformed_key_set_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_jwks(body, url="http://127.0.0.1/v1/stream/__ds/jwks.json")


# -- the wake ---------------------------------------------------------------------------

WAKE: dict[str, Any] = {
    "subscription_id": "sub-1",
    "wake_id": "w_1",
    "generation": 3,
    "streams": [
        {
            "path": "events/a",
            "link_type": "glob",
            "acked_offset": "-1",
            "tail_offset": "0000000000000000_0000000000000013",
            "has_pending": True,
        },
        {
            "path": "events/b",
            "link_type": "explicit",
            "acked_offset": "0000000000000000_0000000000000007",
            "tail_offset": "0000000000000000_0000000000000007",
            "has_pending": False,
        },
    ],
    "callback_url": "http://127.0.0.1:9/v1/stream/__ds/subscriptions/sub-1/callback",
    "callback_token": "secret-token",
    "a_later_field": [1, 2],
}


def test_a_wake_is_read_into_a_typed_record() -> None:
    wake = parse_wake(json.dumps(WAKE).encode(), parse_signature(HEADER))
    assert (wake.subscription_id, wake.wake_id, wake.generation) == ("sub-1", "w_1", 3)
    assert [s.path for s in wake.streams] == ["events/a", "events/b"]
    assert [s.path for s in wake.pending] == ["events/a"]
    assert wake.tails() == {"events/a": "0000000000000000_0000000000000013"}
    assert (wake.signed_at, wake.key_id) == (1796162792, "ds_abc")
    assert wake.callback_token == "secret-token"
    assert "secret-token" not in repr(wake)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subscription_id", ""),
        ("wake_id", 7),
        ("generation", "3"),
        ("generation", True),
        ("generation", -1),
        ("streams", None),
        ("streams", [{"path": "events/a"}]),
        ("callback_url", "/relative/callback"),
        ("callback_url", "ftp://127.0.0.1/callback"),
        ("callback_token", None),
    ],
)
def test_a_body_that_is_not_a_wake_is_a_parse_error(field: str, value: object) -> None:
    body = json.dumps({**WAKE, field: value}).encode()
    with pytest.raises(ParseError):
        parse_wake(body, parse_signature(HEADER))


@pytest.mark.parametrize(
    "stream",
    [
        {**WAKE["streams"][0], "link_type": "other"},
        {**WAKE["streams"][0], "has_pending": "yes"},
        {**WAKE["streams"][0], "path": "../escape"},
        {**WAKE["streams"][0], "tail_offset": ""},
    ],
)
def test_a_stream_entry_is_read_strictly(stream: dict[str, Any]) -> None:
    body = json.dumps({**WAKE, "streams": [stream]}).encode()
    with pytest.raises(ParseError):
        parse_wake(body, parse_signature(HEADER))


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[1]", b'{"generation": NaN}', b""])
def test_a_body_that_is_not_a_json_object_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_wake(body, parse_signature(HEADER))


def test_the_answers_to_a_webhook_request() -> None:
    assert webhook_answer(done=True) == {"done": True}
    assert webhook_answer(done=False) == {"done": False}
    with pytest.raises(InvalidArgumentError):
        webhook_answer(done=1)  # type: ignore[arg-type]
