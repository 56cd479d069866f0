"""The subscription control API on the wire: URLs, JSON bodies, answers and their errors.

Pure code, no I/O: paths and ids in, URLs out; bytes in, records or typed errors out.
Everything the server sends is checked for shape before it becomes a record, and the
stream paths it names are checked like stream names, so a hostile answer cannot point a
worker at a path outside the stream root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any
from urllib.parse import quote

from .._errors import (
    BadRequestError,
    ConflictError,
    InvalidAckError,
    InvalidArgumentError,
    ParseError,
    ResponseError,
    SubscriptionExistsError,
    SubscriptionFencedError,
    SubscriptionNotFoundError,
)
from .._protocol import urls
from .._protocol.errors import Op, error_for
from .._protocol.redact import redact_text
from .records import (
    ClaimInfo,
    LinkType,
    StreamCursor,
    SubscriptionConfig,
    SubscriptionInfo,
    SubscriptionStream,
    SubscriptionType,
    WakeEvent,
    WebhookSigning,
    check_relative_path,
)

__all__ = [
    "ALREADY_CLAIMED",
    "FENCED",
    "NO_PENDING_WORK",
    "CallOp",
    "check_offset",
    "check_subscription_id",
    "check_worker",
    "control_url",
    "encode_acks",
    "encode_claim",
    "encode_config",
    "encode_streams",
    "error_code",
    "error_for_answer",
    "parse_ack_answer",
    "parse_claim",
    "parse_cursors",
    "parse_info",
    "parse_object",
    "parse_wake_event",
    "stream_action",
]

CONTROL_PREFIX = "__ds/subscriptions"
FENCED = "FENCED"
ALREADY_CLAIMED = "ALREADY_CLAIMED"
NO_PENDING_WORK = "NO_PENDING_WORK"
_MAX_NAME = 1024
_MAX_MESSAGE = 200


class CallOp(Enum):
    """Which control call an answer belongs to (a 409 means different things per call)."""

    CREATE = "create"
    GET = "get"
    DELETE = "delete"
    STREAMS = "streams"
    CLAIM = "claim"
    ACK = "ack"
    RELEASE = "release"
    CALLBACK = "callback"


# -- names and URLs -----------------------------------------------------------------


def _check_name(value: object, *, argument: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(
            f"{what} must be a non-empty str, got {value!r}", argument=argument
        )
    if len(value) > _MAX_NAME:
        raise InvalidArgumentError(
            f"{what} is longer than {_MAX_NAME} characters", argument=argument
        )
    if value in (".", "..") or any(_is_control(c) for c in value):
        raise InvalidArgumentError(
            f"{what} {value!r} is a dot segment or has control characters", argument=argument
        )
    return value


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or 0xD800 <= ord(char) < 0xE000


def check_subscription_id(value: object) -> str:
    """A subscription id: any non-empty text without control characters (encoded in URLs)."""
    return _check_name(value, argument="subscription_id", what="a subscription id")


def check_worker(value: object) -> str:
    """A worker name: any non-empty text without control characters (sent in JSON)."""
    return _check_name(value, argument="worker", what="a worker name")


def check_offset(value: object, *, argument: str = "offset") -> str:
    """An offset to acknowledge: one the server returned (not ``-1`` nor ``now``)."""
    if not isinstance(value, str) or not value or value in ("-1", "now"):
        raise InvalidArgumentError(
            f"{argument} must be an offset the server returned, got {value!r}", argument=argument
        )
    if any(_is_control(c) for c in value) or len(value) > _MAX_NAME:
        raise InvalidArgumentError(f"{argument} {value!r} is not an offset", argument=argument)
    return value


def control_url(stream_root: str, subscription_id: str, *action: str) -> str:
    """The URL of a subscription (or one of its actions) under ``stream_root``.

    The id is one path segment whatever it contains: ``/``, ``%``, ``?`` and ``#`` are
    percent-encoded (the server decodes the segment), so an id addresses exactly one
    subscription. ``action`` parts are fixed words, or an encoded stream path.
    """
    segment = quote(check_subscription_id(subscription_id), safe="")
    return urls.join(stream_root, "/".join((CONTROL_PREFIX, segment, *action)))


def stream_action(path: str) -> tuple[str, str]:
    """The action parts of ``DELETE .../streams/:path`` (the path as one encoded segment)."""
    return ("streams", quote(check_relative_path(path, argument="path"), safe=""))


# -- request bodies -----------------------------------------------------------------


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_config(config: SubscriptionConfig) -> bytes:
    """The PUT body of a subscription: only the fields that are set."""
    body: dict[str, Any] = {"type": config.type, "lease_ttl_ms": config.lease_ttl_ms}
    if config.pattern is not None:
        body["pattern"] = config.pattern
    if config.streams:
        body["streams"] = list(config.streams)
    if config.wake_stream is not None:
        body["wake_stream"] = config.wake_stream
    if config.webhook_url is not None:
        body["webhook"] = {"url": config.webhook_url}
    if config.description is not None:
        body["description"] = config.description
    return _dumps(body)


def encode_streams(paths: Iterable[str]) -> bytes:
    """The body that adds explicit streams."""
    if isinstance(paths, str):
        raise InvalidArgumentError(
            "paths must be an iterable of paths, not a str", argument="paths"
        )
    checked = [check_relative_path(p, argument="paths") for p in paths]
    if not checked:
        raise InvalidArgumentError("no stream paths given", argument="paths")
    return _dumps({"streams": checked})


def encode_claim(worker: str) -> bytes:
    """The body of a claim."""
    return _dumps({"worker": check_worker(worker)})


def encode_acks(
    wake_id: str, generation: int, acks: Mapping[str, str] | None = None, *, done: bool = False
) -> bytes:
    """The body of an ack (a heartbeat without acks), a ``done``, a release or a callback."""
    body: dict[str, Any] = {"wake_id": wake_id, "generation": generation}
    if acks:
        body["acks"] = [
            {"stream": check_relative_path(path, argument="acks"), "offset": check_offset(o)}
            for path, o in acks.items()
        ]
    if done:
        body["done"] = True
    return _dumps(body)


# -- answers ------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_loads = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_object(body: bytes, *, url: str, what: str) -> dict[str, Any]:
    """A JSON object body, strictly parsed; :class:`ParseError` otherwise."""
    try:
        value = _loads(body.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ParseError(f"{what} is not valid JSON", url=url) from exc
    if not isinstance(value, dict):
        raise ParseError(f"{what} is not a JSON object", url=url)
    return value


class _Fields:
    """Typed access to one JSON object of an answer; a wrong shape is a ParseError."""

    def __init__(self, value: object, *, url: str, what: str) -> None:
        if not isinstance(value, dict):
            raise ParseError(f"{what} is not a JSON object", url=url)
        self.value: dict[str, Any] = value
        self.url = url
        self.what = what

    def fail(self, key: str, expected: str) -> ParseError:
        return ParseError(f"{self.what}: {key!r} is not {expected}", url=self.url)

    def text(self, key: str) -> str:
        value = self.value.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "a string")
        return value

    def integer(self, key: str) -> int:
        value = self.value.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, "a non-negative integer")
        return value

    def flag(self, key: str) -> bool:
        value = self.value.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, "a boolean")
        return value

    def path(self, key: str) -> str:
        try:
            return check_relative_path(self.text(key), argument=key)
        except InvalidArgumentError as exc:
            raise ParseError(f"{self.what}: {exc.message}", url=self.url) from None

    def link_type(self) -> LinkType:
        value = self.value.get("link_type")
        if value == "glob":
            return "glob"
        if value == "explicit":
            return "explicit"
        raise self.fail("link_type", "'glob' or 'explicit'")

    def kind(self) -> SubscriptionType:
        value = self.value.get("type")
        if value == "pull-wake":
            return "pull-wake"
        if value == "webhook":
            return "webhook"
        raise self.fail("type", "'pull-wake' or 'webhook'")

    def items(self, key: str) -> list[Any]:
        value = self.value.get(key)
        if not isinstance(value, list):
            raise self.fail(key, "a list")
        return value


def parse_cursors(
    value: object, *, url: str, what: str = "a stream entry"
) -> tuple[StreamCursor, ...]:
    """The ``streams`` of a claim or a webhook wake."""
    if not isinstance(value, list):
        raise ParseError(f"{what}: 'streams' is not a list", url=url)
    cursors = []
    for entry in value:
        f = _Fields(entry, url=url, what=what)
        cursors.append(
            StreamCursor(
                path=f.path("path"),
                link_type=f.link_type(),
                acked_offset=f.text("acked_offset"),
                tail_offset=f.text("tail_offset"),
                has_pending=f.flag("has_pending"),
            )
        )
    return tuple(cursors)


def _lease_ttl(f: _Fields) -> float:
    return f.integer("lease_ttl_ms") / 1000


def parse_info(body: bytes, *, url: str, created: bool = False) -> SubscriptionInfo:
    """A subscription record (the answer to PUT or GET)."""
    what = "the subscription record"
    f = _Fields(parse_object(body, url=url, what=what), url=url, what=what)
    links = []
    for entry in f.items("streams"):
        g = _Fields(entry, url=url, what="a subscription stream")
        links.append(SubscriptionStream(g.path("path"), g.link_type(), g.text("acked_offset")))
    webhook_url, signing = _webhook(f.value.get("webhook"), url=url)
    wake_stream = f.optional_text("wake_stream")
    return SubscriptionInfo(
        id=f.text("id"),
        type=f.kind(),
        streams=tuple(links),
        lease_ttl=_lease_ttl(f),
        status=f.text("status"),
        pattern=f.optional_text("pattern"),
        wake_stream=None if wake_stream is None else f.path("wake_stream"),
        webhook_url=webhook_url,
        signing=signing,
        description=f.optional_text("description"),
        created_at=f.optional_text("created_at"),
        created=created,
    )


def _webhook(value: object, *, url: str) -> tuple[str | None, WebhookSigning | None]:
    if value is None:
        return None, None
    f = _Fields(value, url=url, what="the webhook of the subscription")
    signing = f.value.get("signing")
    if signing is None:
        return f.text("url"), None
    g = _Fields(signing, url=url, what="the webhook signing metadata")
    return f.text("url"), WebhookSigning(g.text("alg"), g.text("kid"), g.text("jwks_url"))


def parse_claim(body: bytes, *, url: str, subscription_id: str, worker: str) -> ClaimInfo:
    """The answer to a claim that was won."""
    what = "the claim answer"
    f = _Fields(parse_object(body, url=url, what=what), url=url, what=what)
    return ClaimInfo(
        subscription_id=subscription_id,
        worker=worker,
        wake_id=f.text("wake_id"),
        generation=f.integer("generation"),
        streams=parse_cursors(f.value.get("streams"), url=url, what=what),
        lease_ttl=_lease_ttl(f),
        token=f.text("token"),
    )


def parse_ack_answer(body: bytes, *, url: str) -> bool:
    """``next_wake`` from the answer to an ack or a callback (False if absent)."""
    f = _Fields(parse_object(body, url=url, what="the ack answer"), url=url, what="the ack answer")
    return "next_wake" in f.value and f.flag("next_wake")


def parse_wake_event(value: object, *, url: str) -> WakeEvent | None:
    """A wake event read from a wake stream, or None for anything that is not one."""
    if not isinstance(value, dict) or value.get("type") != "wake":
        return None
    f = _Fields(value, url=url, what="a wake event")
    ts = f.value.get("ts")
    return WakeEvent(
        subscription_id=f.text("subscription_id"),
        stream=f.text("stream"),
        generation=f.integer("generation"),
        ts=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
    )


# -- errors -------------------------------------------------------------------------


def error_code(body: bytes) -> tuple[str | None, str | None, dict[str, Any]]:
    """``(code, message, error object)`` of an error answer; Nones if it has none."""
    try:
        value = _loads(body.decode())
    except (ValueError, RecursionError):
        return None, None, {}
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message[:_MAX_MESSAGE] if isinstance(message, str) else None,
        error,
    )


_OP_FOR_STATUS = {
    CallOp.CREATE: Op.CREATE,
    CallOp.GET: Op.HEAD,
    CallOp.DELETE: Op.DELETE,
}


def error_for_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    op: CallOp,
    url: str,
    generation: int | None = None,
) -> ResponseError:
    """The typed error of a failed control call, judged by status and the error code."""
    code, message, _ = error_code(body)
    detail = f"{code}: {redact_text(message or '')}" if code else f"status {status}"
    kwargs: dict[str, Any] = {"url": url, "status": status, "headers": headers}
    if status == 404 and code in (None, "SUBSCRIPTION_NOT_FOUND"):
        return SubscriptionNotFoundError(f"subscription not found ({detail})", **kwargs)
    if status == 409:
        if code == FENCED:
            return SubscriptionFencedError(
                f"fenced: generation {generation} is no longer current",
                generation=generation,
                **kwargs,
            )
        if code == "SUBSCRIPTION_ALREADY_EXISTS":
            return SubscriptionExistsError(
                "a subscription with this id has a different configuration", **kwargs
            )
        if code == "INVALID_OFFSET":
            return InvalidAckError(f"the server refused the ack ({detail})", **kwargs)
        return ConflictError(f"the server refused the request ({detail})", **kwargs)
    if status == 400:
        return BadRequestError(f"the server refused the request ({detail})", **kwargs)
    return error_for(status, headers, op=_OP_FOR_STATUS.get(op, Op.APPEND), url=url)
