"""The webhook signature verifier: Ed25519 against the server's key set, fetched and cached.

``cryptography`` is an optional dependency (``pip install 'durable-streams-aio[webhooks]'``):
it is imported when a verifier is made, never when ``durable_streams`` is.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    NotSupportedError,
    ResponseError,
    WebhookSignatureError,
)
from .._log import log
from .._protocol.errors import Op, error_for
from .._protocol.redact import redact_url
from .._session import session_wire
from .webhook_wire import (
    Signature,
    WebhookWake,
    check_timestamp,
    parse_jwks,
    parse_signature,
    parse_wake,
    signed_payload,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .._session import Session

__all__ = ["WebhookVerifier", "WebhookVerifierStatistics"]

INSTALL_HINT: Final = (
    "verifying webhook signatures needs the 'cryptography' package: "
    "pip install 'durable-streams-aio[webhooks]'"
)
JWKS_PATH: Final = "__ds/jwks.json"
_JWKS_ACCEPT: Final = "application/jwk-set+json, application/json"


def _ed25519() -> tuple[type[Ed25519PublicKey], type[Exception]]:
    try:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - optional
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PublicKey,
        )
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return Ed25519PublicKey, InvalidSignature


@dataclass(frozen=True, slots=True)
class WebhookVerifierStatistics:
    """Counters of a :class:`WebhookVerifier`.

    Attributes:
        verified: deliveries whose signature held.
        refused: deliveries refused with :class:`WebhookSignatureError`.
        key_fetches: requests for the server's key set (each attempt counts).
    """

    verified: int
    refused: int
    key_fetches: int


def _seconds(name: str, value: float, *, positive: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise InvalidArgumentError(
            f"{name} must be a {'positive' if positive else 'non-negative'} number of "
            f"seconds, got {value!r}",
            argument=name,
        )
    return float(value)


class WebhookVerifier:
    """Checks that a webhook request comes from the Durable Streams server, and reads it.

    A delivery is accepted when its ``Webhook-Signature`` header is well formed, its
    timestamp is within ``replay_window`` seconds of this machine's clock (either way),
    and its Ed25519 signature over ``<timestamp>.<raw body>`` verifies with the key its
    ``kid`` names in the server's JWK Set. The key set is fetched through ``session``
    (its origin rules, credentials, limits and retry policy apply), on first use, and
    cached. An unknown ``kid`` fetches it again, at most once per ``refetch_interval``
    seconds however many requests name unknown keys, so forged requests cannot make the
    verifier fetch per request; keys older than ``max_key_age`` are refreshed the same
    way (if that fails, the cached keys go on serving and a warning is logged).

    Construction does no I/O; the verifier borrows the session and holds nothing to
    close. One verifier serves any number of concurrent requests.

    Args:
        session: the session on the Durable Streams server.
        jwks_url: the key set's URL: the ``jwks_url`` of the subscription's signing
            metadata (``SubscriptionInfo.signing``). By default ``__ds/jwks.json``
            under the session's ``base_url``, which must be the server's stream root.
            It must be on the session's origin (or ``allowed_origins``).
        replay_window: seconds a signature stays acceptable after (and before) its
            timestamp; 5 minutes by default, as the protocol suggests.
        refetch_interval: the least time between two fetches of the key set.
        max_key_age: seconds after which cached keys are fetched again.

    Raises:
        ImportError: ``cryptography`` is not installed
            (``pip install 'durable-streams-aio[webhooks]'``).
        InvalidArgumentError: a URL off the session's origins, or a bad duration.
    """

    def __init__(
        self,
        session: Session,
        *,
        jwks_url: str | None = None,
        replay_window: float = 300.0,
        refetch_interval: float = 10.0,
        max_key_age: float = 300.0,
    ) -> None:
        self._key_type, self._invalid_signature = _ed25519()
        self._session = session
        self._jwks_url = session.url_for(jwks_url if jwks_url is not None else JWKS_PATH)
        self._replay_window = _seconds("replay_window", replay_window, positive=True)
        self._refetch_interval = _seconds("refetch_interval", refetch_interval, positive=False)
        self._max_key_age = _seconds("max_key_age", max_key_age, positive=True)
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded_at: float | None = None  # monotonic time of the last good fetch
        self._attempted_at: float | None = None  # ... and of the last attempt
        self._lock = asyncio.Lock()
        self._verified = 0
        self._refused = 0
        self._fetches = 0

    @property
    def jwks_url(self) -> str:
        """The URL the server's key set is fetched from."""
        return self._jwks_url

    def statistics(self) -> WebhookVerifierStatistics:
        """A snapshot of the counters: deliveries verified and refused, key set fetches."""
        return WebhookVerifierStatistics(self._verified, self._refused, self._fetches)

    def __repr__(self) -> str:
        return f"<WebhookVerifier jwks_url={redact_url(self._jwks_url)!r} keys={len(self._keys)}>"

    async def verify(self, body: bytes, signature: str | None) -> WebhookWake:
        """The wake in a webhook request, once its signature is checked.

        Pass the raw request body exactly as received (not re-serialised JSON) and the
        ``Webhook-Signature`` header's value (``None`` if absent). May wait to fetch the
        server's key set; cancelling leaves the cache as it was.

        Raises:
            WebhookSignatureError: the request is refused; ``reason`` says why.
            ParseError: the signature holds but the body is not a wake (or the key set
                is malformed).
            TransportError, ResponseError: the key set could not be fetched.
        """
        body = _raw(body)
        return parse_wake(body, await self._check(body, signature))

    async def _check(self, body: bytes, signature: str | None) -> Signature:
        """The signature of ``body``, once it holds (``verify`` without reading the wake)."""
        try:
            parsed = parse_signature(signature)
            # Cheap checks first: a stale or malformed forgery costs no key lookup.
            check_timestamp(parsed, now=time.time(), replay_window=self._replay_window)
            key = await self._key(parsed.key_id)
            try:
                key.verify(parsed.signature, signed_payload(parsed, body))
            except self._invalid_signature:
                raise WebhookSignatureError(
                    f"the signature by key {parsed.key_id!r} does not match the body",
                    reason="bad_signature",
                ) from None
        except WebhookSignatureError:
            self._refused += 1
            raise
        self._verified += 1
        return parsed

    async def refresh(self) -> None:
        """Fetch the server's key set now, replacing the cached keys. May wait.

        Useful at startup, so that the first delivery does not wait for it. Not rate
        limited (this is the caller's decision).

        Raises:
            TransportError, ResponseError: the request failed.
            ParseError: the key set is malformed.
        """
        async with self._lock:
            await self._fetch()

    # -- the key cache (one writer: _fetch, under the lock) ---------------------------

    async def _key(self, key_id: str) -> Ed25519PublicKey:
        key = self._keys.get(key_id)
        if key is not None and not self._old():
            return key
        async with self._lock:
            # Another task may have fetched while this one waited for the lock.
            key = self._keys.get(key_id)
            if (key is None or self._old()) and self._may_fetch():
                try:
                    await self._fetch()
                except DurableStreamsError as exc:
                    if key is None:
                        raise
                    log.warning("webhook key set refresh failed; keeping cached keys: %s", exc)
                key = self._keys.get(key_id)
        if key is None:
            raise WebhookSignatureError(
                f"key {key_id!r} is not in the server's key set", reason="unknown_key"
            )
        return key

    def _old(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at > self._max_key_age

    def _may_fetch(self) -> bool:
        last = self._attempted_at
        return last is None or time.monotonic() - last >= self._refetch_interval

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        self._fetches += 1
        session, url = self._session, self._jwks_url
        response = await session_wire(session).fetch(
            "GET", url, headers={"accept": _JWKS_ACCEPT}, budget=session_wire(session).budget()
        )
        if response.status != 200:
            raise _fetch_error(response.status, response.headers, url)
        raw_keys = parse_jwks(response.body, url=url)
        self._keys = {kid: self._key_type.from_public_bytes(raw) for kid, raw in raw_keys.items()}
        self._loaded_at = time.monotonic()
        log.debug("webhook key set fetched from %s: %d key(s)", redact_url(url), len(raw_keys))


def _raw(body: object) -> bytes:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidArgumentError(
            f"body must be the raw request bytes, got {type(body).__name__}", argument="body"
        )
    return bytes(body)


def _fetch_error(status: int, headers: Mapping[str, str], url: str) -> ResponseError:
    if status in (404, 405, 501):
        # Not a stream that is missing: the server publishes no key set at this URL.
        return NotSupportedError(
            "the server publishes no webhook key set here (is jwks_url right?)",
            url=url,
            status=status,
            headers=headers,
        )
    return error_for(status, headers, op=Op.HEAD, url=url)
