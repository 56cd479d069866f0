"""The ``fast`` extra changes no outcome: the check of pre-encoded JSON (msgspec) accepts
only what the standard parser accepts, and groups of values encoded by orjson mean what
the standard encoder's output means, refusing what it refuses (enums and UUIDs aside).

Correctness only, no timing; skipped where msgspec (or orjson) is not installed.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol import _fastjson
from durable_streams._protocol.framing import check_json_bytes, group_encoder

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
