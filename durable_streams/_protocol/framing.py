"""Message framing: JSON wrapping on append, flattening on read, base64 for SSE."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from .._errors import InvalidArgumentError, ParseError

JSON_MEDIA_TYPE = "application/json"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# The standard parser, made strict: NaN and Infinity are not JSON. (orjson was measured
# at about 10 % faster on a 10 MB array, but it reads integers beyond 64 bits as floats,
# silently changing the data.)
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_loads = _decoder.decode


# Strict and compact: NaN and Infinity are not JSON, and the server would store any
# whitespace we sent. ensure_ascii=False keeps non-ASCII text at its UTF-8 size.
_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type`` value."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a stream of this content type is a JSON stream (``application/json``)."""
    return media_type(content_type) == JSON_MEDIA_TYPE


def is_text(content_type: str | None) -> bool:
    """Whether a stream of this content type carries text (``text/*``)."""
    return media_type(content_type).startswith("text/")


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# JSONEncoder.encode() builds a new C encoder (c_make_encoder) on every call; build it
# once. Same output, same strictness (allow_nan=False); markers=None drops the cycle
# check, so a cyclic value raises RecursionError (caught below) instead of ValueError.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode = (
    _c_make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None and json.encoder.encode_basestring is not None
    else None
)


def encode_json_value(value: object, *, argument: str = "value") -> bytes:
    """Serialise one message strictly, raising :class:`InvalidArgumentError` if it is not JSON."""
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0)).encode()
        return _encoder.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(
            f"{argument} is not JSON-serialisable: {exc}", argument=argument
        ) from exc


def check_json_bytes(data: bytes) -> bytes:
    """Check that already-encoded bytes are one valid JSON value, as a JSON stream needs."""
    try:
        _loads(data.decode())
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
        raise InvalidArgumentError(f"bytes are not valid JSON: {exc}", argument="data") from exc
    return data


def frame_json_batch(encoded: Iterable[bytes]) -> bytes:
    """Wrap already-encoded messages as the one JSON array the protocol appends."""
    return b"[" + b",".join(encoded) + b"]"


def encode_json_append(value: object, *, argument: str = "data") -> bytes:
    """The body that appends ``value`` as exactly one message (wrapped, so arrays stay whole)."""
    return b"[" + encode_json_value(value, argument=argument) + b"]"


def parse_json_body(body: bytes, *, offset: str | None, url: str | None = None) -> list[Any]:
    """The messages of one JSON read response: a JSON array, or an empty body meaning none."""
    if not body.strip():
        return []
    try:
        value = _loads(body.decode())
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
        raise ParseError(
            f"invalid JSON in response body ({len(body)} bytes): {_preview(body)}",
            offset=offset,
            url=url,
        ) from exc
    if not isinstance(value, list):
        raise ParseError("JSON response body is not an array", offset=offset, url=url)
    return value


def parse_json_event(data: str, *, offset: str | None, url: str | None = None) -> list[Any]:
    """The messages of one SSE data event on a JSON stream, flattened one level."""
    try:
        value = _loads(data)
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
        raise ParseError(
            f"invalid JSON in SSE data event: {_preview(data.encode())}", offset=offset, url=url
        ) from exc
    return value if isinstance(value, list) else [value]


def decode_base64_event(data: str, *, offset: str | None, url: str | None = None) -> bytes:
    """Decode one base64 SSE data event; line breaks inside it are not part of the payload."""
    text = data.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParseError(
            f"invalid base64 in SSE data event: {_preview(text.encode())}", offset=offset, url=url
        ) from exc


def _preview(data: bytes, limit: int = 80) -> str:
    text = data[:limit].decode("utf-8", "replace")
    return repr(text) + ("..." if len(data) > limit else "")
