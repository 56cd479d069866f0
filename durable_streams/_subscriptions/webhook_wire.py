"""Webhook delivery on the wire: pure parsing, no I/O and no cryptography.

The ``Webhook-Signature`` header, the signed string, the replay window, the server's key
set (JWKS) and the wake body, each read strictly: bytes and strings in, values or a
typed refusal out (protocol section 7.1; reference server 0.3.7, ``crypto.ts``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .._errors import InvalidArgumentError, ParseError, WebhookSignatureError
from .._protocol import urls
from .records import StreamCursor
from .wire import parse_cursors

__all__ = [
    "SIGNATURE_HEADER",
    "Signature",
    "WebhookWake",
    "check_timestamp",
    "parse_jwks",
    "parse_signature",
    "parse_wake",
    "signed_payload",
]

SIGNATURE_HEADER: Final = "webhook-signature"

# Generous bounds: the real header is about 150 characters and a JWKS a few hundred
# bytes; anything far larger is not from a Durable Streams server.
_MAX_HEADER_CHARS: Final = 2048
_MAX_JWKS_KEYS: Final = 64
_ED25519_SIGNATURE_BYTES: Final = 64
_ED25519_KEY_BYTES: Final = 32
# Unix seconds fit in 11 digits until the year 5138; more is not a timestamp.
_MAX_TIMESTAMP_DIGITS: Final = 11
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed ``Webhook-Signature`` header: ``t=<unix seconds>,kid=<key id>,ed25519=<sig>``.

    Attributes:
        timestamp: when the server signed, in Unix seconds.
        key_id: the ``kid`` of the key in the server's JWKS that made the signature.
        signature: the raw 64-byte Ed25519 signature.
        timestamp_text: ``t`` exactly as sent: the signed string begins with it.
    """

    timestamp: int
    key_id: str
    signature: bytes = field(repr=False)
    timestamp_text: str = field(repr=False)


def _refuse(reason: str, message: str) -> WebhookSignatureError:
    return WebhookSignatureError(message, reason=reason)


def parse_signature(value: str | None) -> Signature:
    """Read a ``Webhook-Signature`` header value.

    The three parameters may come in any order; each must appear exactly once, and
    parameters of other names are ignored (they are not signed, and a later protocol
    version may add some).

    Raises:
        WebhookSignatureError: ``reason="missing"`` without a header, ``"malformed"``
            for anything that is not a well-formed signature header.
    """
    if value is None or not value.strip():
        raise _refuse("missing", "the request has no Webhook-Signature header")
    if len(value) > _MAX_HEADER_CHARS or not value.isascii():
        raise _refuse("malformed", "the Webhook-Signature header is not a signature header")
    params: dict[str, str] = {}
    for part in value.split(","):
        name, sep, param = part.strip().partition("=")
        if not sep or not name:
            raise _refuse("malformed", f"Webhook-Signature parameter {part.strip()!r} has no value")
        if name in params:
            raise _refuse("malformed", f"Webhook-Signature repeats the {name!r} parameter")
        params[name] = param
    missing = [name for name in ("t", "kid", "ed25519") if not params.get(name)]
    if missing:
        raise _refuse("malformed", f"Webhook-Signature lacks {', '.join(missing)}")
    stamp, key_id, encoded = params["t"], params["kid"], params["ed25519"]
    if not _DIGITS.fullmatch(stamp) or len(stamp.lstrip("0")) > _MAX_TIMESTAMP_DIGITS:
        raise _refuse("malformed", "the Webhook-Signature timestamp is not Unix seconds")
    signature = _base64url(encoded)
    if signature is None or len(signature) != _ED25519_SIGNATURE_BYTES:
        raise _refuse("malformed", "the Webhook-Signature ed25519 value is not a signature")
    return Signature(int(stamp), key_id, signature, stamp)


def _base64url(text: str) -> bytes | None:
    """Unpadded base64url (padding tolerated), or None if it is not."""
    text = text.rstrip("=")
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def signed_payload(signature: Signature, body: bytes) -> bytes:
    """The bytes the server signed: ``<t>.<raw body>``, with ``t`` as it was sent."""
    return signature.timestamp_text.encode("ascii") + b"." + body


def check_timestamp(signature: Signature, *, now: float, replay_window: float) -> None:
    """Refuse a signature made more than ``replay_window`` seconds before or after ``now``.

    Raises:
        WebhookSignatureError: ``reason="stale"`` (too old: a replay, or a delivery
            delayed past the window) or ``"future"`` (the clocks disagree, or a forgery).
    """
    age = now - signature.timestamp
    if age > replay_window:
        raise _refuse("stale", f"the webhook was signed {age:.0f} s ago, outside the replay window")
    if -age > replay_window:
        raise _refuse(
            "future", f"the webhook is signed {-age:.0f} s in the future, outside the window"
        )


def parse_jwks(body: bytes, *, url: str) -> dict[str, bytes]:
    """The Ed25519 public keys of a JWK Set, by ``kid``, as raw 32-byte keys.

    Keys of other types are skipped (a key set may hold them); a malformed set, an
    Ed25519 key without a ``kid`` or with a bad ``x``, or a repeated ``kid`` is refused.

    Raises:
        ParseError: the body is not a usable JWK Set.
    """

    def fail(why: str) -> ParseError:
        return ParseError(f"the webhook key set is malformed: {why}", url=url)

    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail("not JSON") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise fail("no 'keys' list")
    if len(keys) > _MAX_JWKS_KEYS:
        raise fail(f"more than {_MAX_JWKS_KEYS} keys")
    found: dict[str, bytes] = {}
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise fail("a key is not an object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") != "EdDSA":
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        raw = _base64url(x) if isinstance(x, str) else None
        if not isinstance(kid, str) or not kid or raw is None or len(raw) != _ED25519_KEY_BYTES:
            raise fail("an Ed25519 key has no usable 'kid' or 'x'")
        if kid in found:
            raise fail(f"the key id {kid!r} appears twice")
        found[kid] = raw
    return found


# -- the wake -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookWake:
    """A verified webhook wake: which streams have pending events, and how to answer.

    Answer the webhook request with ``{"done": true}`` to ack every stream up to its
    ``tail_offset``; or answer with any other 2xx and call back later with a
    :class:`WebhookCallback` made from this wake.

    Attributes:
        subscription_id: the subscription that woke.
        wake_id: this wake's unique id.
        generation: the subscription's fencing counter for this wake.
        streams: the subscription's streams, with their acked and tail offsets as the
            server saw them when it issued the wake (the snapshot).
        callback_url: where acks for this wake go.
        callback_token: the bearer token for ``callback_url`` (a secret: left out of
            ``repr``).
        signed_at: the signature's timestamp, in Unix seconds.
        key_id: the ``kid`` of the key that signed the delivery.
    """

    subscription_id: str
    wake_id: str
    generation: int
    streams: tuple[StreamCursor, ...]
    callback_url: str
    callback_token: str = field(repr=False)
    signed_at: int
    key_id: str

    @property
    def pending(self) -> tuple[StreamCursor, ...]:
        """The streams with events after their acked offset: the work."""
        return tuple(stream for stream in self.streams if stream.has_pending)

    def tails(self) -> dict[str, str]:
        """Each pending stream's snapshot tail by path: the acks that finish this wake."""
        return {stream.path: stream.tail_offset for stream in self.pending}


def parse_wake(body: bytes, signature: Signature) -> WebhookWake:
    """The wake in a webhook body, read strictly (fields of other names are ignored).

    Raises:
        ParseError: the body is not a wake (call this only on a verified body: then
            the server itself sent something the protocol does not allow).
    """
    try:
        document = _loads(body.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ParseError("the webhook body is not valid JSON") from exc
    if not isinstance(document, dict):
        raise ParseError("the webhook body is not a JSON object")
    callback_url = _text(document, "callback_url")
    try:
        urls.check_absolute(callback_url, argument="callback_url")
    except InvalidArgumentError as exc:
        raise ParseError(f"the webhook's callback_url is not an http(s) URL: {exc}") from None
    return WebhookWake(
        subscription_id=_text(document, "subscription_id"),
        wake_id=_text(document, "wake_id"),
        generation=_count(document, "generation"),
        streams=parse_cursors(document.get("streams"), url=callback_url, what="the webhook wake"),
        callback_url=callback_url,
        callback_token=_text(document, "callback_token"),
        signed_at=signature.timestamp,
        key_id=signature.key_id,
    )


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_loads = json.JSONDecoder(parse_constant=_reject_constant).decode


def _text(document: Mapping[str, object], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ParseError(f"the webhook body: {name!r} is not a non-empty string")
    return value


def _count(document: Mapping[str, object], name: str) -> int:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"the webhook body: {name!r} is not a non-negative integer")
    return value
