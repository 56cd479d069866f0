"""Message framing: the one encoding of appends, JSON flattening on read, base64 for SSE."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import InvalidArgumentError, ParseError
from ._fastjson import (
    FAST_VALIDATOR,
    REFUSED,
    fast_decode,
    fast_encode,
    fast_valid,
    fast_valid_group,
)

JSON_MEDIA_TYPE = "application/json"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# The standard parser, made strict: NaN and Infinity are not JSON. It is the reference
# for reading; with the fast extra, msgspec decodes what it can decode exactly (_fastjson).
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_loads = _decoder.decode


# Strict and compact: NaN and Infinity are not JSON, and the server would store any
# whitespace we sent. ensure_ascii=False keeps non-ASCII text at its UTF-8 size.
_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type`` value."""
    if not content_type:
        return ""
    return _media_type(content_type)


@functools.lru_cache(maxsize=64)  # asked once per response: a stream has one type
def _media_type(content_type: str) -> str:
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


def encode_json_value(value: object, *, argument: str = "data") -> bytes:
    """Serialise one Python value strictly; :class:`InvalidArgumentError` if it is not JSON.

    Always the standard encoder: ``orjson`` is faster per call, but each of its results
    starts as a large allocation that is shrunk, which made a producer's buffered
    messages slower to encode than this (see ``_encode_json_group``, which uses it).
    """
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0)).encode()
        return _encoder.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError includes NaN and the UnicodeEncodeError of a lone surrogate.
        raise InvalidArgumentError(
            f"{argument} is not JSON-serialisable: {exc}", argument=argument
        ) from exc


def check_json_bytes(data: bytes, *, argument: str = "data") -> bytes:
    """Check that already-encoded bytes are exactly one valid JSON value.

    Parsed, not guessed at: a message that is not JSON would make the server refuse the
    whole request, and so every message batched with it. With the ``fast`` extra the
    bytes are first checked without building Python objects; whatever that check does not
    accept is parsed as before (see ``_fastjson``), so the outcome is the same.
    """
    if not data:
        raise _empty(argument)
    if fast_valid(data):
        return data
    try:
        _loads(data.decode())
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
        raise InvalidArgumentError(
            f"{argument} is not one valid JSON value: {exc}", argument=argument
        ) from exc
    return data


# -- appending: the one encoding path -------------------------------------------------
#
# A message is what one append (or one producer ``append``) adds to a stream. On a JSON
# stream it is one JSON value: any Python value is encoded; ``bytes`` (bytearray,
# memoryview) are one already-encoded value, checked, never split. On other streams it is
# ``bytes`` as they are or ``str`` as UTF-8. A request body is the encoded messages framed
# together: a JSON array (the server appends its elements) or the bytes end to end.

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _empty(argument: str) -> InvalidArgumentError:
    return InvalidArgumentError("cannot append empty data", argument=argument)


def encode_json_message(data: object, *, argument: str = "data") -> bytes:
    """One message of a JSON stream, encoded: ``bytes`` checked as one value, else serialised."""
    if isinstance(data, _BYTES_LIKE):
        return check_json_bytes(bytes(data), argument=argument)
    return encode_json_value(data, argument=argument)


def encode_byte_message(
    data: object, *, content_type: str = DEFAULT_CONTENT_TYPE, argument: str = "data"
) -> bytes:
    """One message of a non-JSON stream: ``bytes`` as they are, ``str`` as UTF-8."""
    if isinstance(data, _BYTES_LIKE):
        encoded = bytes(data)
    elif isinstance(data, str):
        encoded = _utf8(data, argument)
    else:
        raise InvalidArgumentError(
            f"{argument}: a {content_type} stream takes bytes or str, not {type(data).__name__}",
            argument=argument,
        )
    if not encoded:
        raise _empty(argument)
    return encoded


def _utf8(text: str, argument: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
        raise InvalidArgumentError(
            f"{argument} is not encodable as UTF-8: {exc}", argument=argument
        ) from exc


def message_encoder(content_type: str) -> Callable[[object], bytes]:
    """The function that encodes one message for a stream of ``content_type``.

    Chosen once per stream type, so a producer pays for no content-type check per message.
    Each raises :class:`InvalidArgumentError` (``argument="data"``) for data the stream
    cannot take, before anything is sent.
    """
    if is_json(content_type):
        return encode_json_message
    return functools.partial(encode_byte_message, content_type=content_type)


# -- many messages at once (IdempotentProducer.extend) -----------------------------------
#
# A *group* is a few consecutive messages encoded together: their encodings joined as they
# will stand in a request body (by "," on a JSON stream, end to end otherwise). Encoding
# Python values as one list costs one call into the C encoder instead of one per value.

GroupEncoder = Callable[[list[object]], tuple[bytes, int]]
"""Encodes a group: ``(joined, message_bytes)``; :class:`InvalidArgumentError` if any fails."""


def _encode_json_group(values: list[object]) -> tuple[bytes, int]:
    if isinstance(values[0], _BYTES_LIKE):
        if FAST_VALIDATOR is None:
            return _encode_each(values)
        # With the fast extra: pre-encoded messages checked in one decode (see _fastjson).
        try:
            joined = b",".join(values)  # type: ignore[arg-type]  # TypeError if not all bytes
        except TypeError:
            pass
        else:
            if fast_valid_group(values, joined):
                return joined, len(joined) - len(values) + 1
    else:
        # With the fast extra: orjson, one result per group (guarded: see _fastjson).
        fast = fast_encode(values)
        if fast is not None:
            return fast[1:-1], len(fast) - len(values) - 1  # less brackets and commas
    if not isinstance(values[0], _BYTES_LIKE) and _c_encode is not None:
        try:
            joined = "".join(_c_encode(values, 0))[1:-1].encode()  # without the brackets
        except (TypeError, ValueError, RecursionError):
            pass  # bytes among the values, or a bad one: per message below
        else:
            return joined, len(joined) - len(values) + 1  # less the commas between
    return _encode_each(values)


def _encode_each(values: list[object]) -> tuple[bytes, int]:
    parts = [encode_json_message(value) for value in values]
    joined = b",".join(parts)
    return joined, len(joined) - len(parts) + 1


def group_encoder(content_type: str) -> GroupEncoder:
    """The function that encodes a group of messages for a stream of ``content_type``.

    Each message is judged exactly as :func:`message_encoder`'s function judges it; the
    error does not say which message failed (encode them one by one to find out).
    """
    if is_json(content_type):
        return _encode_json_group
    encode = message_encoder(content_type)

    def encode_bytes_group(values: list[object]) -> tuple[bytes, int]:
        joined = b"".join([encode(value) for value in values])
        return joined, len(joined)

    return encode_bytes_group


def frame_json_batch(encoded: Iterable[bytes]) -> bytes:
    """Wrap already-encoded messages as the one JSON array the protocol appends."""
    return b"[" + b",".join(encoded) + b"]"


def frame_messages(encoded: Iterable[bytes], *, json_stream: bool) -> bytes:
    """The request body that appends these encoded messages, in order."""
    return frame_json_batch(encoded) if json_stream else b"".join(encoded)


def encode_json_append(data: object, *, argument: str = "data") -> bytes:
    """The body that appends ``data`` to a JSON stream as exactly one message."""
    return b"[" + encode_json_message(data, argument=argument) + b"]"


def encode_append(
    data: object, content_type: str, *, allow_empty: bool = False, argument: str = "data"
) -> bytes:
    """The request body that appends ``data`` as exactly one message (see above).

    ``allow_empty`` (for the initial data of a create) lets empty ``bytes`` (and, on
    non-JSON streams, an empty ``str``) mean "no data": the body is then empty.
    """
    json_stream = is_json(content_type)
    if allow_empty and _is_empty(data, json_stream=json_stream):
        return b""
    if json_stream:
        return encode_json_append(data, argument=argument)
    return encode_byte_message(data, content_type=content_type, argument=argument)


def _is_empty(data: object, *, json_stream: bool) -> bool:
    if isinstance(data, _BYTES_LIKE):
        return len(data) == 0
    return not json_stream and data == ""


def precheck_message(data: object, *, argument: str = "data") -> None:
    """Refuse data that a stream of no content type could take, before its type is known."""
    if isinstance(data, _BYTES_LIKE):
        if not data:
            raise _empty(argument)
    elif isinstance(data, str):
        _utf8(data, argument)  # neither kind of stream can send a lone surrogate
    else:
        # Only a JSON stream takes other values, and only JSON ones.
        encode_json_value(data, argument=argument)


def parse_json_body(body: bytes, *, offset: str | None, url: str | None = None) -> list[Any]:
    """The messages of one JSON read response: a JSON array, or an empty body meaning none.

    With the ``fast`` extra the body is decoded by ``msgspec`` when it can decode it
    exactly; anything else is decoded by the standard parser, as without it (``_fastjson``).
    """
    value = fast_decode(body)
    if value is REFUSED:
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
    """The messages of one SSE data event on a JSON stream, flattened one level.

    Decoded as :func:`parse_json_body` decodes a body (``msgspec`` first, with the extra).
    """
    value = fast_decode(data)
    if value is REFUSED:
        try:
            value = _loads(data)
        except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser
            raise ParseError(
                # surrogatepass: text handed in may hold a lone surrogate (not the SSE
                # parser's, which decodes strictly), and the error must still be this one.
                f"invalid JSON in SSE data event: "
                f"{_preview(data.encode('utf-8', 'surrogatepass'))}",
                offset=offset,
                url=url,
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
