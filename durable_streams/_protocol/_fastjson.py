r"""Optional fast JSON (the ``fast`` extra: ``msgspec`` and ``orjson``); pure fallbacks.

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

Nesting deeper than the interpreter's recursion limit is refused by both, counted from
the calling stack; ``msgspec`` allows two levels more (see the nesting under decoding),
so a message nested to within two levels of the limit may be accepted here where the
standard check would refuse it.

**Decoding read bodies and SSE data events.** ``msgspec`` decodes (``json.Decoder()``,
to plain Python values, from ``bytes`` as received: no ``body.decode()``); the standard
parser stays the reference. Whatever ``msgspec`` refuses, in any way, is decoded again
by the standard parser, which decides: every error, and every :class:`ParseError`, is
the standard parser's. What ``msgspec`` accepts, it decodes as the standard parser does
(compared by tests, in types, values, key order and float bits):

- integers of any length exactly, as ``int``; it refuses those the standard parser
  refuses for ``sys.get_int_max_str_digits()``, and a few more (about 4,300 digits and
  up, whatever the limit), which the standard parser then decides;
- nesting: both count it against the interpreter's recursion limit, from the calling
  stack, but ``msgspec`` allows one level more, and the standard ``decode`` adds a Python
  frame of its own (which CPython 3.11 counts too): :func:`fast_decode` nests the data two
  levels deeper, which makes the deepest value it accepts the standard parser's
  (measured, CPython 3.11, msgspec 0.23; where Python frames do not count it is one level
  less, left to the standard parser);
- duplicate keys: the last value wins, at the first key's place, in both.

Refused by ``msgspec``, so decided by the standard parser: numbers too large for a float
(``1e400`` is ``inf`` there), lone surrogate escapes (``"\ud800"``), text events holding
lone surrogates, empty and whitespace-only bodies (no messages). Refused by both: NaN and
Infinity (the project's parser refuses them; ``json.loads`` would not), invalid UTF-8, raw
control characters in strings, a byte order mark, whitespace other than JSON's four.

``orjson`` is not used for reading: it reads integers beyond 64 bits as floats (silently
changing the data) and allows nesting to 1,024 levels whatever the recursion limit.
Measured (CPython 3.11, msgspec 0.23, orjson 3.13, 2 shared cores, GC on, medians of
interleaved runs): one 9.8 MB array of 100,000 ~100-byte objects takes the standard parser
113 ms (with ``body.decode()``), ``orjson.loads`` 66 ms, ``msgspec`` 39 ms (41 to 46 ms
nested in the two arrays, which copies the body once); one 100-character SSE data event
(``str``) 1,880 ns, 510 ns, 420 ns (about 780 ns nested).

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

__all__ = [
    "FAST_DECODER",
    "FAST_ENCODER",
    "FAST_VALIDATOR",
    "REFUSED",
    "fast_decode",
    "fast_encode",
    "fast_valid",
    "fast_valid_group",
]


_Decode = Callable[[bytes], Any]


def _msgspec() -> Any:
    """The ``msgspec`` module, or None."""
    try:  # optional, and untyped here (not every environment that type-checks has it)
        return importlib.import_module("msgspec")
    except ImportError:
        return None


def _raw_decoders(msgspec: Any) -> tuple[_Decode | None, _Decode | None]:
    """The decoders of one value and of an array (skipping over values), if msgspec is there."""
    if msgspec is None:
        return None, None
    one = msgspec.json.Decoder(msgspec.Raw).decode
    many = msgspec.json.Decoder(list[msgspec.Raw]).decode
    return one, many


_MSGSPEC = _msgspec()
_decode, _decode_list = _raw_decoders(_MSGSPEC)
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


# -- decoding -------------------------------------------------------------------------------

_decode_value: Callable[[bytes | str], Any] | None = (
    _MSGSPEC.json.Decoder().decode if _MSGSPEC is not None else None
)

FAST_DECODER = "msgspec" if _decode_value is not None else None
"""The name of the fast decoder in use, or None (the standard parser alone)."""

REFUSED: Any = object()
"""What :func:`fast_decode` returns for data it leaves to the standard parser."""


def fast_decode(data: bytes | str) -> Any:
    """``data`` decoded as the standard parser decodes it, or :data:`REFUSED`.

    :data:`REFUSED` means "ask the standard parser": invalid JSON, JSON the fast decoder
    cannot decode exactly, or no ``msgspec``. Never raises for bad input.

    ``data`` is decoded inside two arrays of one element each, so that it is nested two
    levels deeper than the standard parser nests it (see the module docstring); they hold
    exactly one element each only if ``data`` is exactly one value: ``[[1],[2]]`` (from
    ``1],[2``) or ``[[]]`` (from an empty body) are refused.
    """
    if _decode_value is None:
        return REFUSED
    try:
        if isinstance(data, str):
            wrapped = _decode_value("".join(("[[", data, "]]")))
        else:  # one copy (bytes + bytes + bytes copies twice, slowly, for a 10 MB body)
            wrapped = _decode_value(b"".join((b"[[", data, b"]]")))
    except Exception:  # any refusal, of any kind: the standard parser decides  # noqa: BLE001
        return REFUSED
    if len(wrapped) != 1 or len(wrapped[0]) != 1:
        return REFUSED
    return wrapped[0][0]


# -- encoding -------------------------------------------------------------------------------


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
