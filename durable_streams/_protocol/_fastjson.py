"""Optional fast JSON checks (the ``fast`` extra: ``msgspec``); a pure fallback without it.

Only one job is taken from ``msgspec``: deciding that already-encoded bytes are one valid
JSON value without building Python objects from them (``msgspec.Raw`` skips over the
value; about a tenth of the cost of ``json.loads`` for a 100-byte message). It is used
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
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["FAST_VALIDATOR", "fast_valid"]


def _raw_decoder() -> tuple[Callable[[bytes], Any] | None, tuple[type[BaseException], ...]]:
    """The skipping decoder of msgspec and the errors it raises for bad input, if installed."""
    try:  # optional, and untyped here (not every environment that type-checks has it)
        msgspec: Any = importlib.import_module("msgspec")
    except ImportError:
        return None, ()
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(msgspec.Raw).decode
    return decode, (ValueError, RecursionError)  # msgspec.DecodeError is a ValueError


_decode, _DECODE_ERRORS = _raw_decoder()

FAST_VALIDATOR = "msgspec" if _decode is not None else None
"""The name of the fast validator in use, or None (the standard parser alone)."""


@functools.lru_cache(maxsize=4)
def _digit_run(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb"[0-9]{%d}" % (limit + 1))


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
    limit = sys.get_int_max_str_digits()
    if limit and len(data) > limit and _digit_run(limit).search(data):
        return False  # an integer the standard parser may refuse to convert
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
