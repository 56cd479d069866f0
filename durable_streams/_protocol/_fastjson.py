"""Optional fast JSON (the ``fast`` extra: ``msgspec`` and ``orjson``); pure fallbacks.

**Checking pre-encoded messages.** One job is taken from ``msgspec``: deciding that
already-encoded bytes are one valid JSON value without building Python objects from them
(``msgspec.Raw`` skips over the value: a fifth of the cost of ``json.loads`` for a
100-byte message). It is used
only to *accept*: anything it refuses is judged again by the standard parser, which stays
the reference, so the fast check can never refuse what the standard check accepts. What
it accepts, the standard check accepts too, with the guards below:

- ``msgspec`` does not check that strings are UTF-8; :func:`fast_valid` does (ASCII, the
  common case, costs one scan).
- The standard parser refuses integers longer than ``sys.get_int_max_str_digits()`` digits
  (it converts them to ``int``); a message long enough to hold such a run of digits is
  left to it.
- NaN and Infinity are refused by both; integers beyond 64 bits are accepted by both (the
  bytes are sent as they are, never converted).

Nesting deeper than the interpreter's recursion limit is refused by both; the standard
parser's limit shrinks with the depth of the calling stack, ``msgspec``'s does not, so a
deeply nested message may be accepted here where ``json.loads`` deep in a call stack
would fail.

**Encoding Python values.** ``orjson`` encodes; the standard encoder stays the reference
and encodes whatever ``orjson`` refuses or might get wrong:

- ``orjson`` writes NaN and Infinity as ``null``: output that contains ``null`` at all is
  encoded again by the standard encoder, which refuses NaN (and writes real ``None`` as
  ``null`` itself);
- integers beyond 64 bits, keys that are not ``str``, lone surrogates: ``orjson`` refuses
  them, the standard encoder decides (it encodes the integers exactly);
- subclasses of ``str``, ``int``, ``float``, ``dict`` and ``list``, dataclasses and
  datetimes are passed through to a ``default`` that refuses, so the standard encoder
  decides (it takes the subclasses, refuses the rest).

One difference remains: ``orjson`` encodes ``enum.Enum`` members (as their value) and
``uuid.UUID`` values (as their string), which the standard encoder refuses.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["FAST_ENCODER", "FAST_VALIDATOR", "fast_encode", "fast_valid", "fast_valid_group"]


_Decode = Callable[[bytes], Any]


def _raw_decoders() -> tuple[_Decode | None, _Decode | None]:
    """The decoders of one value and of an array (skipping over values), if msgspec is there."""
    try:  # optional, and untyped here (not every environment that type-checks has it)
        msgspec: Any = importlib.import_module("msgspec")
    except ImportError:
        return None, None
    one = msgspec.json.Decoder(msgspec.Raw).decode
    many = msgspec.json.Decoder(list[msgspec.Raw]).decode
    return one, many


_decode, _decode_list = _raw_decoders()
# msgspec.DecodeError is a ValueError; deep nesting raises RecursionError.
_DECODE_ERRORS = (ValueError, RecursionError)

FAST_VALIDATOR = "msgspec" if _decode is not None else None
"""The name of the fast validator in use, or None (the standard parser alone)."""


_MIN_DIGIT_LIMIT = 640  # sys.set_int_max_str_digits refuses smaller limits (except 0)
_DIGITS = b"0123456789"


@functools.lru_cache(maxsize=4)
def _digit_run(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb"[0-9]{%d}" % (limit + 1))


def _plain(data: bytes) -> bool:
    """No guard applies: ``data`` holds no integer too long to convert, and is UTF-8."""
    # The limit is 0 (none) or at least 640 digits, so shorter data cannot reach it, nor
    # data with fewer digits in all (counted in C; the search is slower).
    limit = sys.get_int_max_str_digits() if len(data) > _MIN_DIGIT_LIMIT else 0
    if (
        limit
        and len(data) - len(data.translate(None, _DIGITS)) > limit
        and _digit_run(limit).search(data)
    ):
        return False  # an integer the standard parser may refuse to convert
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def fast_valid_group(parts: list[Any], joined: bytes) -> bool:
    """Whether every one of ``parts`` is certainly one valid JSON value.

    ``joined`` is the parts joined by commas. False means "check them one by one".

    One decode of the whole array: it has as many elements as there are parts, and each
    element is exactly as long as its part, so the array holds no whitespace between its
    elements and each element is its part (parts with surrounding whitespace, valid or not,
    are left to the one-by-one check).
    """
    if _decode_list is None:
        return False
    try:
        elements = _decode_list(b"[" + joined + b"]")
    except _DECODE_ERRORS:
        return False
    return (
        len(elements) == len(parts)
        and list(map(len, elements)) == list(map(len, parts))
        and _plain(joined)
    )


def fast_valid(data: bytes) -> bool:
    """Whether ``data`` is certainly one valid JSON value; False means "ask the standard parser".

    Never raises for bad input. Without ``msgspec`` it is always False.
    """
    if _decode is None:
        return False
    try:
        _decode(data)
    except _DECODE_ERRORS:
        return False
    return _plain(data)


def _dumps() -> Callable[[object], bytes] | None:
    try:  # optional, and untyped here
        orjson: Any = importlib.import_module("orjson")
    except ImportError:
        return None
    option = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    dumps = orjson.dumps
    error = orjson.JSONEncodeError

    def refuse(value: object) -> Any:
        raise TypeError  # let the standard encoder decide

    def encode(value: object) -> bytes:
        try:
            out: bytes = dumps(value, default=refuse, option=option)
        except (error, TypeError, ValueError, RecursionError):
            return b""
        return b"" if b"null" in out else out

    return encode


_encode = _dumps()

FAST_ENCODER = "orjson" if _encode is not None else None
"""The name of the fast encoder in use, or None (the standard encoder alone)."""


def fast_encode(value: object) -> bytes | None:
    """``value`` (a list too) as compact JSON, or None: "ask the standard encoder".

    Never raises.
    """
    if _encode is None:
        return None
    return _encode(value) or None
