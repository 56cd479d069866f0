"""JSON and base64 framing: what goes into an append body and what comes out of a read."""

from __future__ import annotations

import base64
import json
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol.framing import (
    check_json_bytes,
    decode_base64_event,
    encode_append,
    encode_byte_message,
    encode_json_append,
    encode_json_message,
    encode_json_value,
    frame_json_batch,
    frame_messages,
    group_encoder,
    is_json,
    is_text,
    media_type,
    message_encoder,
    parse_json_body,
    parse_json_event,
    precheck_message,
)

# -- media types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", "application/json"),
        ("Application/JSON", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("  TEXT/Plain ;charset=UTF-8 ", "text/plain"),
        ("application/octet-stream", "application/octet-stream"),
        ("", ""),
        (None, ""),
    ],
)
def test_media_type_is_bare_and_lower_case(content_type: str | None, expected: str) -> None:
    assert media_type(content_type) == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "APPLICATION/JSON",
        "Application/Json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        " application/json ",
    ],
)
def test_json_streams_are_detected_whatever_the_case_and_parameters(content_type: str) -> None:
    assert is_json(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/jsonl",
        "application/json-seq",
        "application/x-ndjson",
        "application/problem+json",
        "text/json",
        "text/plain",
        "application/octet-stream",
        "",
        None,
    ],
)
def test_other_types_are_not_json(content_type: str | None) -> None:
    assert not is_json(content_type)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", True),
        ("Text/HTML; charset=utf-8", True),
        ("application/json", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_text_streams_are_detected(content_type: str | None, expected: bool) -> None:
    assert is_text(content_type) is expected


# -- strict JSON encoding -----------------------------------------------------------------


class _Opaque:
    pass


def _circular() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {"nested": [1, math.nan]},
        {1, 2},
        frozenset(),
        _Opaque(),
        object(),
        b"bytes",
        {(1, 2): "tuple key"},
        _circular(),
        "\ud800",
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "nested-nan",
        "set",
        "frozenset",
        "custom-object",
        "object",
        "bytes",
        "tuple-key",
        "circular",
        "lone-surrogate",
    ],
)
def test_values_that_are_not_json_raise_invalid_argument(value: object) -> None:
    with pytest.raises(ds.InvalidArgumentError) as info:
        encode_json_value(value)
    assert isinstance(info.value, ValueError)


def test_non_ascii_text_is_kept_as_utf8() -> None:
    text = "héllo ✓ 日本 😀"
    assert encode_json_value(text) == f'"{text}"'.encode()
    assert b"\\u" not in encode_json_value({"k": text})


def test_encoding_is_compact() -> None:
    # The server stores exactly what is sent; padding would waste space on every message.
    assert encode_json_value({"a": 1, "b": [1, 2, None, True]}) == b'{"a":1,"b":[1,2,null,true]}'


def test_encoded_value_is_valid_strict_json() -> None:
    encoded = encode_json_value({"x": [1.5, -0.0, 10**20, "\u2028"]})
    decoded = json.loads(encoded, parse_constant=_reject_constant)
    assert decoded == {"x": [1.5, -0.0, 10**20, "\u2028"]}


def _reject_constant(name: str) -> object:
    raise AssertionError(f"{name} is not JSON")


# -- append wrapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "body"),
    [
        ({"a": 1}, b'[{"a":1}]'),
        (1, b"[1]"),
        ("s", b'["s"]'),
        (None, b"[null]"),
        ([], b"[[]]"),
        ([1, 2], b"[[1,2]]"),
        ([[1, 2], [3, 4]], b"[[[1,2],[3,4]]]"),
    ],
)
def test_one_value_is_wrapped_so_it_stays_one_message(value: object, body: bytes) -> None:
    assert encode_json_append(value) == body
    # The server flattens the top-level array one level: exactly one message, equal to value.
    assert json.loads(body) == [value]


def test_append_of_a_value_that_is_not_json_raises() -> None:
    with pytest.raises(ds.InvalidArgumentError):
        encode_json_append([1, math.nan])


def test_batch_framing_makes_one_array() -> None:
    encoded = [encode_json_value(v) for v in ({"a": 1}, [1, 2], "x")]
    assert frame_json_batch(encoded) == b'[{"a":1},[1,2],"x"]'
    assert json.loads(frame_json_batch(encoded)) == [{"a": 1}, [1, 2], "x"]


# -- the one encoding path: a message, and the body that appends it -------------------------


@pytest.mark.parametrize(
    ("data", "body"),
    [
        (b"[1,2]", b"[[1,2]]"),
        (b"[]", b"[[]]"),
        (b' {"a": 1} ', b'[ {"a": 1} ]'),
        (bytearray(b"1"), b"[1]"),
        (memoryview(b'"s"'), b'["s"]'),
        ([1, 2], b"[[1,2]]"),
        ("", b'[""]'),
    ],
    ids=["array", "empty-array", "spaced-object", "bytearray", "memoryview", "list", "empty-str"],
)
def test_json_data_is_one_message_whatever_its_type(data: object, body: bytes) -> None:
    assert encode_append(data, "application/json") == body
    assert len(json.loads(body)) == 1


@pytest.mark.parametrize(
    "data",
    [b"", bytearray(), memoryview(b""), b"{", b"1 2", b"[1,]", b"NaN", b"\xff", b"   "],
    ids=["empty", "bytearray", "memoryview", "open", "two", "trailing", "nan", "utf8", "blank"],
)
def test_json_bytes_that_are_not_one_value_are_refused(data: bytes) -> None:
    with pytest.raises(ds.InvalidArgumentError) as caught:
        encode_json_message(data)
    assert caught.value.argument == "data"


def test_empty_data_gets_the_same_error_on_every_kind_of_stream() -> None:
    messages = set()
    for encode in (message_encoder("application/json"), message_encoder("text/plain")):
        with pytest.raises(ds.InvalidArgumentError) as caught:
            encode(b"")
        assert caught.value.argument == "data"
        messages.add(str(caught.value))
    assert len(messages) == 1


@pytest.mark.parametrize(
    ("data", "body"),
    [(b"\x00", b"\x00"), (bytearray(b"ab"), b"ab"), ("héllo", "héllo".encode())],
    ids=["bytes", "bytearray", "str"],
)
def test_byte_stream_data_is_sent_as_it_is(data: object, body: bytes) -> None:
    assert encode_append(data, "application/octet-stream") == body
    assert encode_byte_message(data) == body


@pytest.mark.parametrize("data", ["\ud800", "ok \udfff", 3, None, {"a": 1}, [b"x"], ""], ids=repr)
def test_byte_stream_refuses_what_is_not_bytes_or_utf8_text(data: object) -> None:
    with pytest.raises(ds.InvalidArgumentError) as caught:
        encode_append(data, "text/plain")
    assert caught.value.argument == "data"
    assert not isinstance(caught.value, UnicodeError)


def test_allow_empty_means_no_data_for_a_create() -> None:
    assert encode_append(b"", "application/json", allow_empty=True) == b""
    assert encode_append("", "text/plain", allow_empty=True) == b""
    # On a JSON stream an empty str is a value, not "no data".
    assert encode_append("", "application/json", allow_empty=True) == b'[""]'


def test_the_encoder_is_chosen_once_per_content_type() -> None:
    assert message_encoder("application/json; charset=utf-8") is encode_json_message
    encode = message_encoder("text/plain")
    assert encode("x") == b"x"
    with pytest.raises(ds.InvalidArgumentError, match="text/plain"):
        encode(1)


def test_frame_messages_by_stream_kind() -> None:
    assert frame_messages([b"1", b"[2]"], json_stream=True) == b"[1,[2]]"
    assert frame_messages([b"ab", b"cd"], json_stream=False) == b"abcd"


@pytest.mark.parametrize(
    "data",
    [b"", "\ud800", math.nan, object(), {1, 2}],
    ids=["empty", "surrogate", "nan", "obj", "set"],
)
def test_precheck_refuses_what_no_stream_takes(data: object) -> None:
    with pytest.raises(ds.InvalidArgumentError) as caught:
        precheck_message(data)
    assert caught.value.argument == "data"


@pytest.mark.parametrize("data", [b"x", "", "text", {"a": 1}, [1], 1, None], ids=repr)
def test_precheck_lets_through_what_some_stream_takes(data: object) -> None:
    precheck_message(data)


def test_check_json_bytes_returns_the_bytes_unchanged() -> None:
    assert check_json_bytes(b" [1, 2] ") == b" [1, 2] "


# -- JSON read bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b" ", b"\n", b" \r\n\t "], ids=repr)
def test_empty_or_whitespace_body_is_no_messages(body: bytes) -> None:
    assert parse_json_body(body, offset="0_1") == []


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        (b"[]", []),
        (b"[1]", [1]),
        (b'[{"a":1},[1,2],"x",null]', [{"a": 1}, [1, 2], "x", None]),
        (b'[\n  {"a": 1},\n  2\n]\n', [{"a": 1}, 2]),
        ('["日本", "😀"]'.encode(), ["日本", "😀"]),
    ],
)
def test_body_is_one_array_whose_elements_are_the_messages(
    body: bytes, messages: list[Any]
) -> None:
    assert parse_json_body(body, offset="0_1") == messages


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1}',
        b"1",
        b'"text"',
        b"null",
        b"true",
    ],
)
def test_body_that_is_not_an_array_raises_parse_error(body: bytes) -> None:
    with pytest.raises(ds.ParseError) as info:
        parse_json_body(body, offset="0_7", url="http://h/s")
    assert info.value.offset == "0_7"
    assert info.value.url == "http://h/s"


@pytest.mark.parametrize(
    "body",
    [
        b"[",
        b'[{"a":1},',
        b'[{"a":1},{"b"',
        b'[{"a":1}]]',
        b"[1,]",
        b"[1 2]",
        b"[NaN]",
        b"[Infinity]",
        b"[-Infinity]",
        b"['single']",
        b"[1][2]",
        b'["\xff"]',
        b'["\xe6\x97"]',
        b"\x00\x00\x00\x00",
    ],
    ids=[
        "open-bracket",
        "truncated-after-comma",
        "truncated-in-object",
        "extra-bracket",
        "trailing-comma",
        "missing-comma",
        "nan",
        "infinity",
        "-infinity",
        "single-quotes",
        "two-bodies-joined",
        "invalid-utf8",
        "truncated-utf8",
        "nul-bytes",
    ],
)
def test_truncated_or_corrupt_body_raises_parse_error_not_an_empty_list(body: bytes) -> None:
    with pytest.raises(ds.ParseError) as info:
        parse_json_body(body, offset="0_7")
    assert info.value.offset == "0_7"


def test_parse_error_message_shows_the_start_of_the_body() -> None:
    with pytest.raises(ds.ParseError, match="oops"):
        parse_json_body(b"[oops", offset=None)


@pytest.mark.parametrize("value", [2**64 + 1, -(2**63) - 1, 10**30 + 7])
def test_integers_beyond_64_bits_are_read_back_exactly(value: int) -> None:
    # JSON numbers have no size limit, the encoder writes them in full and the server
    # stores them as sent; reading one back must not silently round it to a float.
    [message] = parse_json_body(encode_json_append(value), offset=None)
    assert type(message) is int
    assert message == value


# The standard parser's results, with or without the fast extra (tests/test_perf_fastjson.py
# compares the two in depth).


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        (b"[18446744073709551616, -9223372036854775809]", [2**64, -(2**63) - 1]),
        (b"[1e400, -1e400, 1e-400]", [math.inf, -math.inf, 0.0]),
        (b'["\\ud800", "\\udc00x"]', ["\ud800", "\udc00x"]),
        (b'[{"a": 1, "b": 2, "a": 3}]', [{"a": 3, "b": 2}]),
        (b" \t\r\n[ 1 ,\n2 ]\r\n", [1, 2]),
    ],
    ids=[
        "big-integers",
        "huge-exponents",
        "lone-surrogate-escapes",
        "duplicate-keys",
        "whitespace",
    ],
)
def test_a_body_reads_as_the_standard_parser_reads_it(body: bytes, messages: list[Any]) -> None:
    assert parse_json_body(body, offset=None) == messages
    assert parse_json_event(body.decode(), offset=None) == messages


def test_minus_zero_is_an_integer_zero_or_a_negative_float_zero() -> None:
    for read in (
        parse_json_body(b"[-0, -0.0]", offset=None),
        parse_json_event("[-0, -0.0]", offset=None),
    ):
        integer, real = read
        assert type(integer) is int
        assert integer == 0
        assert type(real) is float
        assert math.copysign(1.0, real) == -1.0


def test_duplicate_keys_keep_the_first_place_and_the_last_value() -> None:
    [message] = parse_json_body(b'[{"b": 1, "a": 2, "b": 3}]', offset=None)
    assert list(message.items()) == [("b", 3), ("a", 2)]


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf[1]",
        b"\x0c[1]",
        b"[1]\x0b",
        b'["a\tb"]',
        b'["\x00"]',
        b"[" + b"7" * (sys.get_int_max_str_digits() + 1) + b"]",
        b"[" * 5000 + b"]" * 5000,
        b"1],[2",
    ],
    ids=[
        "byte-order-mark",
        "form-feed",
        "vertical-tab",
        "raw-tab-in-string",
        "raw-nul-in-string",
        "integer-beyond-the-digit-limit",
        "nested-beyond-the-recursion-limit",
        "two-halves",
    ],
)
def test_what_the_standard_parser_refuses_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ds.ParseError):
        parse_json_body(body, offset=None)
    with pytest.raises(ds.ParseError):
        parse_json_event(body.decode(), offset=None)


def test_a_refused_event_holding_a_lone_surrogate_is_a_parse_error() -> None:
    # Not from the SSE parser (it decodes UTF-8 strictly), but the error must be this one.
    with pytest.raises(ds.ParseError, match="SSE data event"):
        parse_json_event('["\ud800", NaN]', offset=None)


# -- JSON SSE data events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        ("[1,2]", [1, 2]),
        ('[{"a":1}]', [{"a": 1}]),
        ("[[1,2]]", [[1, 2]]),
        ("[[[1,2,3]]]", [[[1, 2, 3]]]),
        ("[]", []),
        ('{"a":1}', [{"a": 1}]),
        ('"x"', ["x"]),
        ("3", [3]),
        ("null", [None]),
        ("[\n1,\n2\n]", [1, 2]),
    ],
)
def test_data_event_is_flattened_one_level(data: str, messages: list[Any]) -> None:
    assert parse_json_event(data, offset="0_1") == messages


@pytest.mark.parametrize("data", ["", "[1,", "[1,]", "{", "NaN", "[Infinity]"])
def test_malformed_data_event_raises_parse_error(data: str) -> None:
    with pytest.raises(ds.ParseError) as info:
        parse_json_event(data, offset="0_3", url="http://h/s")
    assert info.value.offset == "0_3"
    assert info.value.url == "http://h/s"


# -- base64 data events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        ("aGVsbG8=", b"hello"),
        ("aGVs\nbG8=", b"hello"),
        ("aGVs\r\nbG8=", b"hello"),
        ("aGVs\rbG8=", b"hello"),
        ("\naGVsbG8=\n", b"hello"),
        ("AAECAw==", b"\x00\x01\x02\x03"),
        ("+/+/", b"\xfb\xff\xbf"),
    ],
)
def test_base64_event_decodes_with_line_breaks_removed(data: str, payload: bytes) -> None:
    assert decode_base64_event(data, offset="0_1") == payload


@pytest.mark.parametrize("data", ["", "\n", "\r\n"], ids=repr)
def test_empty_base64_event_is_zero_bytes(data: str) -> None:
    assert decode_base64_event(data, offset="0_1") == b""


@pytest.mark.parametrize(
    "data",
    [
        "aGVsbG8",
        "aGVsbG8==",
        "a",
        "abcde",
        "aGV$bG8=",
        "aGVs bG8=",
        "aGVs\tbG8=",
        "-_-_",
        "aG==bG8=",
        "aGVsbG8=aGVsbG8=",
        "aGVsbG8é",
    ],
    ids=[
        "bad-length-7",
        "bad-padding",
        "length-1",
        "length-5",
        "dollar",
        "space",
        "tab",
        "urlsafe-alphabet",
        "padding-in-middle",
        "two-events-joined",
        "non-ascii",
    ],
)
def test_invalid_base64_raises_parse_error(data: str) -> None:
    with pytest.raises(ds.ParseError) as info:
        decode_base64_event(data, offset="0_9", url="http://h/s")
    assert info.value.offset == "0_9"
    assert info.value.url == "http://h/s"


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=300),
    width=st.integers(1, 80),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_arbitrary_bytes_survive_base64_events(payload: bytes, width: int, eol: str) -> None:
    text = base64.b64encode(payload).decode()
    # A server may spread one event over several data: lines, which arrive joined by LF.
    wrapped = eol.join(text[i : i + width] for i in range(0, len(text), width))
    assert decode_base64_event(wrapped, offset=None) == payload


# -- JSON round trips ------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=_json_values)
def test_any_json_value_survives_append_then_read(value: object) -> None:
    body = encode_json_append(value)
    messages = parse_json_body(body, offset=None)
    assert messages == [value]
    # Equal is not enough (1e19 == 10**19): the message must encode exactly as it was sent.
    assert encode_json_append(messages[0]) == body


@settings(max_examples=100, deadline=None)
@given(values=st.lists(_json_values, min_size=1, max_size=5))
def test_any_batch_survives_framing_then_read(values: list[object]) -> None:
    body = frame_json_batch(encode_json_value(v) for v in values)
    assert parse_json_body(body, offset=None) == values
    # The same array delivered as one SSE data event gives the same messages.
    assert parse_json_event(body.decode(), offset=None) == values


@settings(max_examples=100, deadline=None)
@given(value=_json_values)
def test_a_value_and_its_encoding_append_the_same_message(value: object) -> None:
    encoded = encode_json_value(value)
    assert encode_append(encoded, "application/json") == encode_append(value, "application/json")


# -- groups: many messages encoded together (IdempotentProducer.extend) ---------------------


GROUP_VALUES: list[object] = [
    {"a": 1, "b": [1.5, -0.0, None, True]},
    "x\u2028y",
    10**30,
    [],
    {"k": "é"},
    b'{"pre": "encoded"}',
    bytearray(b"[1, 2]"),
    0.1,
]


def test_a_json_group_is_its_messages_joined() -> None:
    group = group_encoder("application/json")
    for values in (GROUP_VALUES, GROUP_VALUES[:5], GROUP_VALUES[5:], [1]):
        joined, size = group(list(values))
        parts = [encode_json_message(v) for v in values]
        assert joined == b",".join(parts)
        assert size == sum(map(len, parts))
        assert json.loads(b"[" + joined + b"]") == json.loads(b"[" + b",".join(parts) + b"]")


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, "\ud800", object(), b"{bad", b"", b"1 2", {1j: 2}],
    ids=["nan", "inf", "surrogate", "object", "bad-bytes", "empty", "two", "complex-key"],
)
def test_a_json_group_refuses_what_one_message_refuses(bad: object) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        encode_json_message(bad)
    for values in ([bad], [1, bad], [b"1", bad, 2]):
        with pytest.raises(ds.InvalidArgumentError) as caught:
            group_encoder("application/json")(values)
        assert not isinstance(caught.value, UnicodeError)


def test_a_byte_group_is_its_messages_end_to_end() -> None:
    group = group_encoder("text/plain")
    assert group([b"ab", "cd", bytearray(b"e"), memoryview(b"f")]) == (b"abcdef", 6)
    for bad in (b"", 5, "\udfff"):
        with pytest.raises(ds.InvalidArgumentError):
            group([b"a", bad])
