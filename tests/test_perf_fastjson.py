"""The ``fast`` extra changes no outcome: the check of pre-encoded JSON (msgspec) accepts
only what the standard parser accepts, groups of values encoded by orjson mean what
the standard encoder's output means, refusing what it refuses (enums and UUIDs aside),
and read bodies and SSE data events decoded by msgspec give exactly the messages, or
the ParseError, that the standard parser gives.

Correctness only, no timing; skipped where msgspec (or orjson) is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import functools
import json
import math
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol import _fastjson
from durable_streams._protocol.framing import (
    check_json_bytes,
    group_encoder,
    parse_json_body,
    parse_json_event,
)
from tests.benchmarks import bench_common

pytest.importorskip("msgspec")


def _standard_accepts(data: bytes) -> bool:
    """The reference: the library's check without the fast path."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.JSONDecoder(parse_constant=refuse).decode(data.decode())
    except (ValueError, RecursionError):
        return False
    return True


CORPUS: list[bytes] = [
    b"1",
    b"-0",
    b"1e400",
    b"-1.5E-7",
    b" [ 3 , 4 ] ",
    b'{"a": [1, {"b": null}]}',
    b'{"a":1,"a":2}',
    b'"\\u00e9\\ud83d\\ude00"',
    '"é😀"'.encode(),
    b"123456789012345678901234567890",
    b"-18446744073709551616",
    b'"\\ud800"',  # a lone surrogate escape: the standard parser takes it
    b"[" * 500 + b"]" * 500,
    # refused
    b"NaN",
    b"[NaN]",
    b"Infinity",
    b"-Infinity",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"1 2",
    b"[1,]",
    b"{'a': 1}",
    b'{"a" 1}',
    b'"\x01"',
    b'"\xff"',
    b'"\xed\xa0\x80"',  # an encoded surrogate: not UTF-8
    b"\xef\xbb\xbf1",  # a byte order mark
    b"tru",
    b"nul",
    b"  ",
    b"[" * 5000 + b"]" * 5000,
    b"1" * (sys.get_int_max_str_digits() + 1),  # too long for the standard int()
    b"[" + b"1" * (sys.get_int_max_str_digits() + 1) + b".5]",  # a float: fine
]


@pytest.mark.parametrize("data", CORPUS, ids=range(len(CORPUS)))
def test_the_fast_check_accepts_only_what_the_standard_one_does(data: bytes) -> None:
    standard = _standard_accepts(data)
    if _fastjson.fast_valid(data):
        assert standard
    try:
        assert check_json_bytes(data) == data
    except ds.InvalidArgumentError:
        assert not standard
    else:
        assert standard


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
).map(lambda value: json.dumps(value, ensure_ascii=False).encode())


@settings(max_examples=300, deadline=None)
@given(JSON_TEXT, st.data())
def test_mutated_json_is_judged_the_same(data: bytes, draw: st.DataObject) -> None:
    """Valid JSON, then a byte changed, dropped or inserted: both checks agree."""
    mutated = bytearray(data)
    if mutated:
        where = draw.draw(st.integers(0, len(mutated) - 1))
        action = draw.draw(st.sampled_from(["replace", "drop", "insert", "keep"]))
        byte = draw.draw(st.sampled_from(list(b'{}[]",:\\ 0-.eEnNtf\x00\xff\xc3u')))
        if action == "replace":
            mutated[where] = byte
        elif action == "drop":
            del mutated[where]
        elif action == "insert":
            mutated.insert(where, byte)
    candidate = bytes(mutated)
    standard = _standard_accepts(candidate)
    if _fastjson.fast_valid(candidate):
        assert standard, candidate


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_are_judged_the_same(data: bytes) -> None:
    if _fastjson.fast_valid(data):
        assert _standard_accepts(data), data


def test_nan_and_big_integers_are_never_floats() -> None:
    # The bytes are sent as they are: nothing is converted, NaN is refused.
    big = str(2**80).encode()
    assert check_json_bytes(big) is big
    for bad in (b"NaN", b"[1, Infinity]"):
        with pytest.raises(ds.InvalidArgumentError):
            check_json_bytes(bad)
    assert not math.isnan(float(json.loads(big)))


def test_the_extra_is_in_use() -> None:
    assert _fastjson.FAST_VALIDATOR == "msgspec"


# -- encoding groups of Python values with orjson ------------------------------------------


class _Str(str):
    pass


class _Int(int):
    pass


@dataclasses.dataclass
class _Point:
    x: int


ENCODE_CASES: list[object] = [
    None,
    {"a": None},
    [1, None, 2],
    math.nan,
    [1.0, math.inf],
    {"x": -math.inf},
    2**64,
    -(2**63) - 1,
    2**63,
    {1: "int key"},
    {True: "bool key"},
    {None: "none key"},
    {1.5: "float key"},
    _Str("sub"),
    {"n": _Int(5)},
    "\ud800",
    {"k": "\udfff"},
    datetime.datetime(2020, 1, 1),
    _Point(1),
    b"bytes",
    {1, 2},
    (1, 2),
    1e16,
    -0.0,
    "é\u2028😀",
    {"deep": [[[[[]]]]]},
]


def _standard_encoding(values: list[object]) -> bytes | None:
    try:
        return json.dumps(
            values, allow_nan=False, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (TypeError, ValueError):
        return None


@pytest.mark.parametrize("value", ENCODE_CASES, ids=range(len(ENCODE_CASES)))
def test_a_group_with_orjson_means_what_the_standard_encoding_means(value: object) -> None:
    pytest.importorskip("orjson")
    assert _fastjson.FAST_ENCODER == "orjson"
    for values in ([value], [1, value, "x"], [value] * 3):
        standard = _standard_encoding(values)
        try:
            joined, size = group_encoder("application/json")(values)
        except ds.InvalidArgumentError:
            assert standard is None, values
            continue
        assert standard is not None, values
        assert json.loads(b"[" + joined + b"]") == json.loads(standard)
        assert size == len(joined) - len(values) + 1


def test_orjson_takes_enums_and_uuids_the_standard_encoder_refuses() -> None:
    pytest.importorskip("orjson")

    class Colour(enum.Enum):
        RED = "red"

    assert _standard_encoding([Colour.RED]) is None
    ident = uuid.UUID(int=1)
    joined, _ = group_encoder("application/json")([Colour.RED, ident])
    assert json.loads(b"[" + joined + b"]") == ["red", str(ident)]


# -- checking groups of pre-encoded messages in one decode ----------------------------------

GROUP_PARTS: list[bytes] = [
    *CORPUS,
    b'"x',
    b'y",3',  # with the one before: '"x,y",3', two valid elements from two invalid parts
    b"[1",
    b"2]",
    b" 1",
    b"1 ",
    b"{}",
    b"[]",
]


def _each_accepted(parts: list[bytes]) -> bool:
    try:
        for part in parts:
            check_json_bytes(part)
    except ds.InvalidArgumentError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(GROUP_PARTS), min_size=1, max_size=6))
def test_a_group_is_refused_exactly_when_one_of_its_messages_is(parts: list[bytes]) -> None:
    group = group_encoder("application/json")
    if _each_accepted(parts):
        assert group(list(parts)) == (b",".join(parts), sum(map(len, parts)))
    else:
        with pytest.raises(ds.InvalidArgumentError):
            group(list(parts))


def test_halves_of_a_value_are_not_taken_for_values() -> None:
    joined = b'"x,y",3'
    assert _fastjson.fast_valid_group([b'"x', b'y",3'], joined) is False
    assert _fastjson.fast_valid_group([b"[1", b"2]"], b"[1,2]") is False
    assert _fastjson.fast_valid_group([b"1", b"2"], b"1,2") is True


# -- decoding read bodies and SSE data events with msgspec ---------------------------------
#
# The reference is the same function with the fast decoder switched off: the library as
# it reads without the extra. An outcome is the exact value (types, float bits, key order)
# or the ParseError's message and cause.


@contextlib.contextmanager
def _standard_parser_only() -> Iterator[None]:
    saved = _fastjson._decode_value
    _fastjson._decode_value = None
    try:
        yield
    finally:
        _fastjson._decode_value = saved


def _exact(value: object) -> list[object]:
    """``value`` as comparable tokens that tell 1 from 1.0 from True, -0.0 from 0.0.

    Iterative: the values compared may be nested as deeply as the parser allows.
    """
    tokens: list[object] = []
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            tokens.append(("list", len(item)))
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            tokens.append(("dict", tuple(item)))  # the keys, in order
            pending.extend(reversed(item.values()))
        elif isinstance(item, float):
            tokens.append(("float", item.hex()))
        else:
            tokens.append((type(item).__name__, item))
    return tokens


Outcome = tuple[str, object]


def _outcome(parse: Callable[[Any], list[Any]], data: bytes | str) -> Outcome:
    try:
        return ("messages", _exact(parse(data)))
    except ds.ParseError as exc:
        return ("error", (str(exc), type(exc.__cause__)))


def _read_body(body: bytes) -> list[Any]:
    return parse_json_body(body, offset="0_1", url="http://h/s")


def _read_event(data: str) -> list[Any]:
    return parse_json_event(data, offset="0_1", url="http://h/s")


def _both_ways(parse: Callable[[Any], list[Any]], data: bytes | str) -> tuple[Outcome, Outcome]:
    fast = _outcome(parse, data)
    with _standard_parser_only():
        standard = _outcome(parse, data)
    return fast, standard


def _assert_read_as_standard(data: bytes | str) -> None:
    """The body, and the same text as an SSE data event, read exactly as without the extra.

    Text is sent as its UTF-8 (a lone surrogate as the 3 bytes that are not UTF-8); bytes
    that are not UTF-8 never reach an SSE event.
    """
    if isinstance(data, str):
        body, text = data.encode("utf-8", "surrogatepass"), data
    else:
        body, text = data, data.decode("utf-8", "replace")
    fast, standard = _both_ways(_read_body, body)
    assert fast == standard, body
    if isinstance(data, bytes) and text.encode() != data:
        return
    fast, standard = _both_ways(_read_event, text)
    assert fast == standard, text


_DIGIT_LIMIT = sys.get_int_max_str_digits()

READ_CORPUS: list[bytes] = [
    *CORPUS,
    b"[18446744073709551615, 18446744073709551616, -9223372036854775809]",
    b"[123456789012345678901234567890, -99999999999999999999]",
    b"[" + b"7" * _DIGIT_LIMIT + b"]",
    b"[" + b"7" * (_DIGIT_LIMIT + 1) + b"]",
    b"[-" + b"7" * _DIGIT_LIMIT + b"]",
    b"[1e400, -1e400, 1e-400, -1e-400, 1e308, 5e-324, 2.4703282292062328e-324]",
    b"[" + b"1" * 5000 + b"e-4990, 0." + b"1" * 800 + b"]",
    b"[-0, -0.0, 0.0, 0e0, -0e-0, 1E+2, 1.0, 10]",
    b"[NaN]",
    b"[Infinity, -Infinity]",
    b'["\\ud800", "\\udc00\\ud800", "\\ud800\\u0041", "\\ud83d\\ude00"]',
    b'{"\\ud800": 1}',
    b'["\xff"]',
    b'["\xc0\xaf"]',  # overlong
    b'["\xf4\x90\x80\x80"]',  # beyond U+10FFFF
    b'["\xed\xa0\x80"]',  # an encoded surrogate
    b'["a\tb"]',
    b'["a\nb"]',
    b'["\x00"]',
    b'["\x7f\xef\xbf\xbf\xe2\x80\xa8"]',
    b'[{"a":1,"b":2,"a":3}]',
    b'[{"b":1,"a":2,"b":{"x":1,"x":[2]}}]',
    b" \t\r\n[ 1 ,\t2 ]\r\n ",
    b"\x0c[1]",
    b"[1]\x0b",
    b"\xc2\xa0[1]",
    b"[1]\xe2\x80\xa8",
    b"\xef\xbb\xbf[1]",
    b"",
    b" \n\t\r ",
    b"[1],[2]",
    b"1],[2",
    b"[1]]",
    b"[[1]",
    b'{"a": 1}',
    b"null",
    b"[1, 2",
    b"[" * 900 + b"]" * 900,
    b"[" * 2000 + b"]" * 2000,
]


@pytest.mark.parametrize("data", READ_CORPUS, ids=range(len(READ_CORPUS)))
def test_a_read_decodes_exactly_as_without_the_extra(data: bytes) -> None:
    _assert_read_as_standard(data)


def test_the_extra_decodes_what_it_can_decode_exactly() -> None:
    # Not everything falls back: the common cases, big integers among them, are msgspec's.
    assert _fastjson.FAST_DECODER == "msgspec"
    for data in (b"[1]", b'[{"a": -0.0}]', b"[18446744073709551616]", '["é"]'.encode()):
        assert _fastjson.fast_decode(data) is not _fastjson.REFUSED, data
        assert _fastjson.fast_decode(data.decode()) is not _fastjson.REFUSED, data
    for data in (b"[1e400]", b'["\\ud800"]', b"", b" ", b"1],[2", b"[NaN]"):
        assert _fastjson.fast_decode(data) is _fastjson.REFUSED, data


def test_a_catch_up_body_decodes_exactly_as_without_the_extra() -> None:
    body = json.dumps([bench_common.message(i) for i in range(2000)]).encode()
    _assert_read_as_standard(body)
    assert _fastjson.fast_decode(body) is not _fastjson.REFUSED


@pytest.mark.parametrize("limit", [640, 1000, 4300, 0])
def test_the_integer_digit_limit_is_the_standard_one(limit: int) -> None:
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        for digits in sorted({640, limit - 1, limit, limit + 1, 4299, 4300, 4301, 6000} - {-1}):
            for sign in (b"", b"-"):
                _assert_read_as_standard(b"[" + sign + b"7" * digits + b"]")
    finally:
        sys.set_int_max_str_digits(saved)


def _deeper(frames: int, call: Callable[[], Outcome]) -> Outcome:
    return call() if frames == 0 else _deeper(frames - 1, call)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deepest(parse: Callable[[Any], list[Any]], frames: int, as_text: bool) -> int:
    """The deepest nesting ``parse`` reads, called ``frames`` frames down from here."""

    def reads(depth: int) -> bool:
        data = _nested(depth)
        try:
            _deeper(frames, lambda: ("ok", parse(data.decode() if as_text else data)))
        except ds.ParseError:
            return False
        return True

    low, high = 1, sys.getrecursionlimit() + 10  # reads(low), not reads(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if reads(middle) else (low, middle)
    return low


@pytest.mark.parametrize("extra_limit", [0, 2000])
@pytest.mark.parametrize("frames", [0, 100, 300])
@pytest.mark.parametrize("as_text", [False, True], ids=["body", "event"])
def test_nesting_near_the_recursion_limit_is_decided_as_without_the_extra(
    extra_limit: int, frames: int, as_text: bool
) -> None:
    # The standard parser's limit depends on the calling stack: compared from the same one.
    parse = _read_event if as_text else _read_body
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(saved + extra_limit)
    try:
        fast = _deepest(parse, frames, as_text)
        with _standard_parser_only():
            standard = _deepest(parse, frames, as_text)
        assert fast == standard
        for depth in range(standard - 3, standard + 4):
            data = _nested(depth)
            outcome = functools.partial(_nesting_outcome, parse, data, as_text)
            fast_outcome = _deeper(frames, outcome)
            with _standard_parser_only():
                standard_outcome = _deeper(frames, outcome)
            assert fast_outcome == standard_outcome, depth
    finally:
        sys.setrecursionlimit(saved)


def _nesting_outcome(parse: Callable[[Any], list[Any]], data: bytes, as_text: bool) -> Outcome:
    """How deep the messages go (no recursion), or the error."""
    try:
        messages: Any = parse(data.decode() if as_text else data)
    except ds.ParseError as exc:
        return ("error", str(exc))
    depth = 0
    while isinstance(messages, list) and messages:
        messages, depth = messages[0], depth + 1
    return ("depth", depth)


_text_with_surrogates = st.text() | st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"])
READ_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats(allow_nan=False)
    | _text_with_surrogates,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_text_with_surrogates, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(READ_VALUES, max_size=4), st.booleans(), st.sampled_from([None, 0, 2]))
def test_random_values_are_read_exactly_as_without_the_extra(
    values: list[Any], ensure_ascii: bool, indent: int | None
) -> None:
    _assert_read_as_standard(json.dumps(values, ensure_ascii=ensure_ascii, indent=indent))


_NUMBER = st.builds(
    lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
    st.sampled_from(["", "-"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,40})\Z"),
    st.sampled_from([""]) | st.from_regex(r"\A\.[0-9]{1,30}\Z"),
    st.sampled_from([""])
    | st.builds(
        lambda e, sign, n: f"{e}{sign}{n}",
        st.sampled_from("eE"),
        st.sampled_from(["", "+", "-"]),
        st.integers(0, 420),
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_NUMBER, min_size=1, max_size=5))
def test_random_number_literals_are_read_exactly_as_without_the_extra(numbers: list[str]) -> None:
    _assert_read_as_standard(("[" + ",".join(numbers) + "]").encode())


_WHITESPACE = st.sampled_from(
    [" ", "\t", "\n", "\r", "\x0c", "\x0b", "\x00", "\xa0", "\u2028", "\ufeff"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(READ_VALUES, max_size=3), st.data())
def test_whitespace_anywhere_is_read_exactly_as_without_the_extra(
    values: list[Any], draw: st.DataObject
) -> None:
    text = json.dumps(values, ensure_ascii=False)
    where = draw.draw(st.lists(st.integers(0, len(text)), max_size=3))
    for at in sorted(where, reverse=True):
        text = text[:at] + draw.draw(_WHITESPACE) + text[at:]
    _assert_read_as_standard(text)


@settings(max_examples=300, deadline=None)
@given(JSON_TEXT, st.data())
def test_mutated_bodies_are_read_exactly_as_without_the_extra(
    data: bytes, draw: st.DataObject
) -> None:
    body = bytearray(b"[" + data + b"]")
    where = draw.draw(st.integers(0, len(body) - 1))
    action = draw.draw(st.sampled_from(["replace", "drop", "insert"]))
    byte = draw.draw(st.sampled_from(list(b'{}[]",:\\ 0-.eEnNtf\x00\xff\xc3\xed\xa0u')))
    if action == "replace":
        body[where] = byte
    elif action == "drop":
        del body[where]
    else:
        body.insert(where, byte)
    _assert_read_as_standard(bytes(body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_in_a_string_are_read_exactly_as_without_the_extra(data: bytes) -> None:
    _assert_read_as_standard(b'["' + data + b'"]')
    _assert_read_as_standard(data)


def test_an_event_with_lone_surrogates_is_read_as_without_the_extra() -> None:
    # Text the SSE parser hands over may hold lone surrogates: msgspec cannot encode them.
    for text in ('["\ud800"]', '{"\udfff": 1}'):
        assert _fastjson.fast_decode(text) is _fastjson.REFUSED
        fast, standard = _both_ways(_read_event, text)
        assert fast == standard
        assert fast[0] == "messages"
