"""The SSE parser and control events: bytes in, events out, no event loop and no server."""

from __future__ import annotations

import itertools
import json
import time
import tracemalloc
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol import sse
from durable_streams._protocol.sse import Control, SSEEvent, SSEParser, parse_control

# Every character str.splitlines() treats as a line break, except CR and LF. SSE lines end
# only at CRLF, LF or CR, so these are payload.
NOT_LINE_BREAKS = "\u0085\u2028\u2029\x0b\x0c\x1c\x1d\x1e"

# One body that mixes everything the parser must cope with; it ends with LF so that every
# event in it is complete whatever the line-end handling of a trailing CR.
BODY = (
    ": a comment, ignored\r\n"
    "event: data\r\n"
    "data: héllo wörld\r\n"
    "data: 日本語 😀\r\n"
    "\r\n"
    "event: control\r"
    'data: {"streamNextOffset":"0_5","upToDate":true}\r'
    "\r"
    "id: 42\n"
    "retry: 1000\n"
    "event: data\n"
    "data:  two spaces\n"
    "data:no space\n"
    "\n"
    "event: future-type\n"
    "data: x\n"
    "\n"
    f"data: a{NOT_LINE_BREAKS}b\n"
    "\n"
).encode()

BODY_EVENTS = [
    SSEEvent("data", "héllo wörld\n日本語 😀"),
    SSEEvent("control", '{"streamNextOffset":"0_5","upToDate":true}'),
    SSEEvent("data", " two spaces\nno space"),
    SSEEvent("future-type", "x"),
    SSEEvent("message", f"a{NOT_LINE_BREAKS}b"),
]


def parse(chunks: Iterable[bytes]) -> list[SSEEvent]:
    """Feed ``chunks`` to a fresh parser, then flush it; return every event."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.flush())
    return events


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- splitting ----------------------------------------------------------------------------


def test_whole_body_in_one_chunk() -> None:
    assert parse([BODY]) == BODY_EVENTS


def test_split_at_every_byte_boundary() -> None:
    # Includes cuts inside every multi-byte UTF-8 character and between every CR and LF.
    for cut in range(len(BODY) + 1):
        assert parse(split_at(BODY, [cut])) == BODY_EVENTS, f"cut at byte {cut}"


def test_one_byte_at_a_time() -> None:
    assert parse(BODY[i : i + 1] for i in range(len(BODY))) == BODY_EVENTS


@pytest.mark.parametrize(
    "text",
    ["é", "日", "😀"],
    ids=["2-byte", "3-byte", "4-byte"],
)
def test_multibyte_character_split_inside_its_encoding(text: str) -> None:
    body = f"data: <{text}>\n\n".encode()
    start = body.index(text.encode())
    for cut in range(start + 1, start + len(text.encode())):
        assert parse(split_at(body, [cut])) == [SSEEvent("message", f"<{text}>")]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    # Were the LF taken as a second line end, it would be a blank line and dispatch "a"
    # on its own, splitting one event into two.
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("message", "a\nb")]


def test_event_ending_in_cr_cr_is_not_lost_at_end_of_body() -> None:
    # "\r\r" is a complete line end plus the blank line that dispatches the event.
    assert parse([b"event: control\r", b'data: {"streamNextOffset":"1"}\r\r']) == [
        SSEEvent("control", '{"streamNextOffset":"1"}')
    ]


def test_event_ending_in_cr_cr_is_dispatched_without_waiting_for_more_bytes() -> None:
    # A live server using CR line ends may send nothing more for a long time; the control
    # event (which carries the offset) must not sit in the parser until it does.
    parser = SSEParser()
    assert parser.feed(b'event: control\rdata: {"streamNextOffset":"1"}\r\r') == [
        SSEEvent("control", '{"streamNextOffset":"1"}')
    ]


# -- line endings and fields --------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\r\n", "\r", "\n"], ids=["CRLF", "CR", "LF"])
def test_each_line_ending_gives_the_same_events(eol: str) -> None:
    # A trailing comment keeps a final CR from being the last byte of the body.
    body = eol.join(["event: data", "data: one", "data: two", "", ": end", ""]).encode()
    assert parse([body]) == [SSEEvent("data", "one\ntwo")]


def test_mixed_line_endings_within_one_event() -> None:
    assert parse([b"data: a\rdata: b\ndata: c\r\n\n"]) == [SSEEvent("message", "a\nb\nc")]


def test_multiline_data_is_joined_with_lf() -> None:
    body = b"event: data\ndata: [\ndata: 1,\ndata: 2\ndata: ]\n\n"
    assert parse([body]) == [SSEEvent("data", "[\n1,\n2\n]")]


def test_empty_data_lines_are_kept() -> None:
    assert parse([b"data:\ndata\ndata: \n\n"]) == [SSEEvent("message", "\n\n")]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        ("data:x", "x"),
        ("data: x", "x"),
        ("data:  x", " x"),
        ("data:   x ", "  x "),
        ("data:\tx", "\tx"),
    ],
)
def test_only_one_leading_space_is_stripped(line: str, data: str) -> None:
    assert parse([f"{line}\n\n".encode()]) == [SSEEvent("message", data)]


def test_only_one_leading_space_is_stripped_from_the_event_type() -> None:
    assert parse([b"event:control\ndata: a\n\nevent: control\ndata: b\n\n"]) == [
        SSEEvent("control", "a"),
        SSEEvent("control", "b"),
    ]


@pytest.mark.parametrize("char", list(NOT_LINE_BREAKS), ids=lambda c: f"U+{ord(c):04X}")
def test_unicode_line_breaks_other_than_cr_lf_stay_in_the_data(char: str) -> None:
    body = f"event: data\ndata: left{char}right\n\n".encode()
    assert parse([body]) == [SSEEvent("data", f"left{char}right")]


def test_comments_are_ignored() -> None:
    body = b": keep-alive\n:\ndata: a\n: between\ndata: b\n\n: alone\n\n"
    assert parse([body]) == [SSEEvent("message", "a\nb")]


def test_id_and_retry_are_ignored() -> None:
    # They neither make an event of their own nor change the data of one.
    body = b"id: 7\nretry: 10\n\nid: 8\nevent: data\ndata: x\nretry: 5\n\n"
    assert parse([body]) == [SSEEvent("data", "x")]


def test_unknown_fields_are_ignored() -> None:
    body = b"foo: bar\nData: not a data field\ndata: x\n\n"
    assert parse([body]) == [SSEEvent("message", "x")]


def test_unknown_event_types_are_passed_through() -> None:
    # The parser does not judge types; the reader skips the ones it does not know.
    body = b"event: x-future\ndata: 1\n\nevent: data\ndata: 2\n\n"
    assert parse([body]) == [SSEEvent("x-future", "1"), SSEEvent("data", "2")]


def test_unnamed_event_is_a_message() -> None:
    assert parse([b"data: hi\n\n"]) == [SSEEvent("message", "hi")]


def test_control_event_without_data_is_dispatched_with_empty_data() -> None:
    # Empty control data must reach parse_control, which rejects it, not vanish here.
    assert parse([b"event: control\n\n"]) == [SSEEvent("control", "")]


def test_blank_lines_alone_dispatch_nothing() -> None:
    assert parse([b"\n\n\r\n\r\r\n"]) == []


def test_several_events_in_one_chunk() -> None:
    parser = SSEParser()
    events = parser.feed(
        b"event: data\ndata: 1\n\nevent: data\ndata: 2\n\nevent: control\ndata: {}\n\n"
    )
    assert [e.type for e in events] == ["data", "data", "control"]


@pytest.mark.parametrize(
    "tail",
    [b"event: data\ndata: partial\n", b"data: partial", b"data: partial\r"],
    ids=["no-blank-line", "no-line-end", "cr-only"],
)
def test_event_without_trailing_blank_line_is_dropped_at_flush(tail: bytes) -> None:
    parser = SSEParser()
    assert parser.feed(b"data: whole\n\n" + tail) == [SSEEvent("message", "whole")]
    assert parser.flush() == []


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["ff", "overlong", "surrogate", "5-byte"],
)
def test_invalid_utf8_raises(bad: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        SSEParser().feed(b"data: " + bad + b"\n\n")


def test_invalid_utf8_across_chunks_raises() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: \xe6") == []  # a valid start of a 3-byte character
    with pytest.raises(UnicodeDecodeError):
        parser.feed(b"A\n\n")  # ... that is not continued


# -- arbitrary valid SSE, arbitrarily split -------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12
)


@st.composite
def sse_bodies(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A valid SSE body with random line ends, comments and ignored fields, and its events."""
    events: list[SSEEvent] = []
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            lines.append(":" + draw(_line_text))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["id: 1", "retry: 100", "id:", "retry"])))
        kind = draw(st.one_of(st.none(), st.sampled_from(["data", "control", "x-new"])))
        data = draw(st.lists(_line_text, min_size=0 if kind else 1, max_size=4))
        if kind is not None:
            lines.append(f"event: {kind}")
        for value in data:
            # "data:" + value keeps a value starting with a space only after "data: ".
            spaced = value.startswith(" ") or draw(st.booleans())
            lines.append(("data: " if spaced else "data:") + value)
        lines.append("")
        events.append(SSEEvent(kind or "message", "\n".join(data)))
    # A trailing comment line keeps the body from ending in a lone CR, whose handling at
    # the end of a body is tested on its own above.
    lines.append(": end")
    out: list[str] = []
    previous = ""
    for line in lines:
        # After a CR, an empty line ended by LF would merge with it into one CRLF.
        choices = ["\r\n", "\r"] if previous == "\r" and not line else ["\r\n", "\r", "\n"]
        previous = draw(st.sampled_from(choices))
        out.append(line + previous)
    body = "".join(out).encode()
    return body, events


@settings(max_examples=200, deadline=None)
@given(case=sse_bodies(), data=st.data())
def test_arbitrary_splits_give_the_same_events_as_one_feed(
    case: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    body, expected = case
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    assert parse([body]) == expected
    assert parse(split_at(body, cuts)) == expected


class _NotAscii(bytes):
    """A chunk that claims not to be ASCII, which sends it through the UTF-8 decoder."""

    def isascii(self) -> bool:
        return False


_Outcome = tuple[list[SSEEvent], tuple[int, str, str | None] | None]


def _outcome(chunks: list[bytes], *, general: bool, max_line: int, max_event: int) -> _Outcome:
    """The events of ``chunks`` and the error that stopped them: (chunk, type, limit)."""
    parser = SSEParser(max_line=max_line, max_event=max_event)
    events: list[SSEEvent] = []
    for index, chunk in enumerate([*chunks, None]):
        try:
            if chunk is None:
                events.extend(parser.flush())
            else:
                events.extend(parser.feed(_NotAscii(chunk) if general else chunk))
        except (UnicodeDecodeError, ds.LimitExceededError) as exc:
            return events, (index, type(exc).__name__, getattr(exc, "limit", None))
    return events, None


_sse_pieces = st.sampled_from(
    [b"event: data\n", b"event: control\n", b"data:", b"data: ", b"\n", b"\r", b"\r\n"]
)
_utf8_pieces = st.sampled_from([b": c\n", b"xyz", b"\xc3\xa9", b"\xc3", b"\xa9", b"\xff"])
# A chunk: random bytes, random SSE-like text, or pieces of SSE and of UTF-8 sequences.
_sse_chunks = st.one_of(
    st.binary(max_size=40),
    st.text(alphabet="event:dat \r\n:x{}é😀\u2028", max_size=40).map(str.encode),
    st.lists(_sse_pieces | _utf8_pieces | st.just("\u2028".encode()), max_size=6).map(b"".join),
)


@settings(max_examples=500, deadline=None)
@given(
    chunks=st.lists(_sse_chunks, max_size=10),
    max_line=st.integers(1, 40),
    max_event=st.integers(1, 60),
)
def test_fast_path_gives_the_same_events_and_errors_as_the_general_path(
    chunks: list[bytes], max_line: int, max_event: int
) -> None:
    # The fast path (an ASCII chunk skips the UTF-8 decoder, text without CR is split on
    # LF alone) against the general one (every chunk decoded and split by the pattern),
    # on the same chunks, limits included.
    limits = {"max_line": max_line, "max_event": max_event}
    fast = _outcome(chunks, general=False, **limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sse, "_split_lines", sse._LINE_END.split)
        general = _outcome(chunks, general=True, **limits)
    assert fast == general


# -- linear work and bounded memory --------------------------------------------------------

MiB = 1024 * 1024


class _CountingSplit:
    """Wraps the parser's line splitter and counts the characters it is asked to scan."""

    def __init__(self, split: Callable[[str], list[str]]) -> None:
        self.split = split
        self.scanned = 0

    def __call__(self, text: str) -> list[str]:
        self.scanned += len(text)
        return self.split(text)


def _feed_in_pieces(parser: SSEParser, body: bytes, piece: int) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for start in range(0, len(body), piece):
        events.extend(parser.feed(body[start : start + piece]))
    return events


def _feed_all(parser: SSEParser, chunks: Iterable[bytes], fed: list[bytes] | None = None) -> None:
    """Feed every chunk (noting in ``fed`` those taken without an error)."""
    for chunk in chunks:
        parser.feed(chunk)
        if fed is not None:
            fed.append(chunk)


def test_a_long_line_in_small_pieces_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Re-scanning the open line on every feed would scan 8 MiB / 64 KiB / 2 = 64 times it.
    counter = _CountingSplit(sse._split_lines)
    monkeypatch.setattr(sse, "_split_lines", counter)
    body = b"data: " + b"x" * (8 * MiB) + b"\n\n"
    events = _feed_in_pieces(SSEParser(), body, 64 * 1024)
    assert events == [SSEEvent("message", "x" * (8 * MiB))]
    assert counter.scanned == len(body)


def test_an_8_mib_line_in_64_kib_pieces_is_fast() -> None:
    # A sanity guard only (the scan count above is the evidence): the quadratic parser
    # took about 3 s here, the linear one about 0.05 s.
    body = b"data: " + b"x" * (8 * MiB) + b"\n\n"
    start = time.perf_counter()
    events = _feed_in_pieces(SSEParser(), body, 64 * 1024)
    assert time.perf_counter() - start < 2
    assert len(events[0].data) == 8 * MiB


def test_many_short_events_in_pieces_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _CountingSplit(sse._split_lines)
    monkeypatch.setattr(sse, "_split_lines", counter)
    body = b"".join(b"event: data\ndata: %d\n\n" % i for i in range(20000))
    events = _feed_in_pieces(SSEParser(), body, 1000)
    assert [e.data for e in events] == [str(i) for i in range(20000)]
    assert counter.scanned == len(body)


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"], ids=["CRLF", "CR", "LF"])
@pytest.mark.parametrize("cut", [-2, -1, 0, 1, 2])
def test_long_line_whose_line_end_falls_at_a_piece_boundary(eol: bytes, cut: int) -> None:
    line = b"data: " + b"y" * 100_000
    body = line + eol + b"data: z" + eol + eol + b": end\n"
    events = parse(split_at(body, [len(line) + cut, len(line) + cut + 1, 50_000]))
    assert events == [SSEEvent("message", "y" * 100_000 + "\nz")]


@pytest.mark.parametrize("text", ["é", "日", "😀"], ids=["2-byte", "3-byte", "4-byte"])
def test_multibyte_characters_split_across_many_pieces_of_an_open_line(text: str) -> None:
    body = ("data: " + text * 1000 + "\n\n").encode()
    for piece in (1, 2, 3, 5, 7, 64):
        events = _feed_in_pieces(SSEParser(), body, piece)
        assert events == [SSEEvent("message", text * 1000)], f"piece {piece}"


@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "byte-by-byte"])
@pytest.mark.parametrize("text", ["x", "é", "😀"], ids=["1-byte", "2-byte", "4-byte"])
def test_line_limit_is_in_utf8_bytes_and_exact(text: str, split: bool) -> None:
    # max_line counts the bytes of the line without its line end.
    width = len(text.encode())
    line = ("data: " + text * 10).encode()
    fits = SSEParser(max_line=len(line))
    chunks = [line[i : i + 1] for i in range(len(line))] if split else [line]
    for chunk in chunks:
        fits.feed(chunk)
    assert fits.feed(b"\n\n") == [SSEEvent("message", text * 10)]

    too_long = SSEParser(max_line=len(line) - width)
    with pytest.raises(ds.LimitExceededError) as info:
        _feed_all(too_long, [*chunks, b"\n\n"])
    assert isinstance(info.value, ds.ParseError)
    assert info.value.limit == "max_sse_line_bytes"
    assert info.value.maximum == len(line) - width


@pytest.mark.parametrize("line", [b": a long comment", b"event: long-type", b"id: 1234567890"])
def test_line_limit_applies_to_every_kind_of_line(line: bytes) -> None:
    with pytest.raises(ds.LimitExceededError):
        SSEParser(max_line=len(line) - 1).feed(line + b"\n")
    assert SSEParser(max_line=len(line)).feed(line + b"\n\n") == (
        [SSEEvent("long-type", "")] if line.startswith(b"event") else []
    )


def test_a_line_that_never_ends_is_refused_before_it_grows_past_the_limit() -> None:
    parser = SSEParser(max_line=MiB)
    piece = b"x" * (64 * 1024)
    fed: list[bytes] = []
    with pytest.raises(ds.LimitExceededError) as info:
        _feed_all(parser, itertools.repeat(piece, 1000), fed)
    # The piece that crossed the limit was refused, not kept.
    assert len(fed) * len(piece) == MiB
    assert info.value.maximum == MiB


def test_a_line_that_never_ends_is_held_in_bounded_memory() -> None:
    parser = SSEParser(max_line=4 * MiB)
    piece = b"data: " + b"x" * (256 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ds.LimitExceededError):
            _feed_all(parser, itertools.repeat(piece, 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_event_limit_counts_the_joined_data_in_bytes() -> None:
    # Ten data lines of 9 bytes: 90 bytes of values and 9 LFs joining them.
    lines = b"".join(b"data: \xc3\xa9abcdefg\n" for _ in range(10))  # "éabcdefg": 9 bytes
    events = SSEParser(max_event=99).feed(lines + b"\n")
    assert len(events[0].data.encode()) == 99

    with pytest.raises(ds.LimitExceededError) as info:
        SSEParser(max_event=98).feed(lines + b"\n")
    assert info.value.limit == "max_sse_event_bytes"
    assert info.value.maximum == 98


@pytest.mark.parametrize("text", ["a", "日"], ids=["ascii", "3-byte"])
def test_event_limit_with_many_small_data_lines(text: str) -> None:
    # Past a quarter of the limit the parser counts bytes, not characters.
    limit = 3000
    parser = SSEParser(max_event=limit)
    line = f"data: {text}\n".encode()
    width = len(text.encode())
    fits = limit // (width + 1)  # values and their joining LFs: n * (width + 1) - 1 bytes
    assert parser.feed(line * fits) == []
    with pytest.raises(ds.LimitExceededError):
        parser.feed(line * 2)


def test_event_limit_is_per_event() -> None:
    parser = SSEParser(max_event=10)
    body = b"data: 0123456789\n\n" * 5
    assert parser.feed(body) == [SSEEvent("message", "0123456789")] * 5


def test_comments_and_ignored_fields_do_not_count_towards_the_event() -> None:
    parser = SSEParser(max_event=5, max_line=100)
    body = b"data: ab\n" + b": a comment line\nid: 1\nretry: 5\nfoo: bar\n" * 100 + b"data: c\n\n"
    assert parser.feed(body) == [SSEEvent("message", "ab\nc")]


@pytest.mark.parametrize("kwargs", [{"max_line": 0}, {"max_event": 0}, {"max_line": -1}])
def test_limits_must_be_positive(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEParser(**kwargs)


# -- control events -------------------------------------------------------------------------


def test_control_with_every_field() -> None:
    data = '{"streamNextOffset":"0_10","streamCursor":"c7","upToDate":true}'
    assert parse_control(data, offset="0_5") == Control(
        next_offset="0_10", cursor="c7", up_to_date=True, closed=False
    )


def test_control_without_up_to_date_is_not_up_to_date() -> None:
    control = parse_control('{"streamNextOffset":"0_10","streamCursor":"c7"}', offset="0_5")
    assert control.up_to_date is False
    assert control.closed is False


def test_closed_control_implies_up_to_date_and_needs_no_cursor() -> None:
    control = parse_control('{"streamNextOffset":"0_10","streamClosed":true}', offset="0_5")
    assert control == Control(next_offset="0_10", cursor=None, up_to_date=True, closed=True)


def test_control_without_cursor_is_accepted() -> None:
    control = parse_control('{"streamNextOffset":"0_10","upToDate":true}', offset=None)
    assert control.cursor is None
    assert control.next_offset == "0_10"


def test_control_ignores_unknown_fields() -> None:
    control = parse_control('{"streamNextOffset":"0_1","future":{"x":[1]}}', offset=None)
    assert control.next_offset == "0_1"


def test_control_accepts_whitespace_and_line_breaks_in_its_json() -> None:
    # Multi-line data arrives joined with LF.
    control = parse_control('{\n  "streamNextOffset": "0_1",\n  "upToDate": true\n}', offset=None)
    assert control == Control(next_offset="0_1", cursor=None, up_to_date=True, closed=False)


@pytest.mark.parametrize(
    "data",
    [
        "",
        "   ",
        "{",
        '{"streamNextOffset":"0_1"',
        "not json",
        "{'streamNextOffset': '0_1'}",
        "{}",
        '{"streamCursor":"c1","upToDate":true}',
        '{"streamNextOffset":""}',
        '{"streamNextOffset":12}',
        '{"streamNextOffset":null}',
        '["streamNextOffset","0_1"]',
        '"0_1"',
        "null",
        "17",
    ],
    ids=[
        "empty",
        "whitespace",
        "truncated",
        "unterminated",
        "not-json",
        "single-quotes",
        "empty-object",
        "missing-offset",
        "empty-offset",
        "numeric-offset",
        "null-offset",
        "array",
        "string",
        "null",
        "number",
    ],
)
def test_bad_control_raises_parse_error_with_the_offset(data: str) -> None:
    with pytest.raises(ds.ParseError) as info:
        parse_control(data, offset="0_5", url="http://h/s")
    assert info.value.offset == "0_5"
    assert info.value.url == "http://h/s"


_control_strings = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "0_1", "0000000000000000_0000000000000423", 'a"b', "a\\b", "\x1f"]),
)
_control_values = st.one_of(_control_strings, st.booleans(), st.none(), st.integers(-1, 1))
_control_objects = st.dictionaries(
    st.sampled_from(["streamNextOffset", "streamCursor", "upToDate", "streamClosed", "x"]),
    _control_values,
)


@st.composite
def control_texts(draw: st.DrawFn) -> str:
    """Control data: mostly JSON objects written as a server would, sometimes damaged."""
    value = draw(_control_objects)
    compact = draw(st.booleans())
    text = json.dumps(
        value,
        separators=(",", ":") if compact else None,
        ensure_ascii=draw(st.booleans()),
    )
    if draw(st.integers(0, 3)) == 0:  # damaged: a character dropped, changed or added
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "\x00", '"', "\\", " ", "}"])) + text[at + 1 :]
    return text


def _control_outcome(parse: Callable[..., Control], data: str) -> Control | str:
    try:
        return parse(data, offset="0_5", url="http://h/s")
    except ds.ParseError as exc:
        return f"ParseError: {exc}"


# Plain text with at most one character that JSON escapes or forbids in a string.
_raw_strings = st.tuples(
    st.text(alphabet="a_0ué", max_size=4),
    st.sampled_from(["", '"', "\\", "\\u0041", "\x00", "\x1f", "\x7f"]),
    st.text(alphabet="a_0ué", max_size=4),
).map("".join)


@st.composite
def common_looking_controls(draw: st.DrawFn) -> str:
    """Text in the common control's form, its strings put in as they are (unescaped)."""
    tail = draw(st.sampled_from(["", ',"upToDate":true', ',"upToDate":false', ',"x":1']))
    offset, cursor = draw(_raw_strings), draw(_raw_strings)
    return f'{{"streamNextOffset":"{offset}","streamCursor":"{cursor}"{tail}}}'


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(control_texts(), st.text(max_size=40)))
def test_control_shortcut_gives_what_the_json_parser_gives(data: str) -> None:
    assert _control_outcome(parse_control, data) == _control_outcome(sse._parse_control_json, data)


@settings(max_examples=300, deadline=None)
@given(data=common_looking_controls())
def test_control_shortcut_on_text_of_the_common_form(data: str) -> None:
    # Whatever its strings hold (quotes, escapes, control characters), the shortcut
    # gives the JSON parser's result or leaves the text to it.
    assert _control_outcome(parse_control, data) == _control_outcome(sse._parse_control_json, data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            '{"streamNextOffset":"0_1","streamCursor":"c1","upToDate":true}',
            Control(next_offset="0_1", cursor="c1", up_to_date=True, closed=False),
        ),
        (
            '{"streamNextOffset":"0_1","streamCursor":"c1"}',
            Control(next_offset="0_1", cursor="c1", up_to_date=False, closed=False),
        ),
        (
            '{"streamNextOffset":"0_1","streamCursor":""}',
            Control(next_offset="0_1", cursor="", up_to_date=False, closed=False),
        ),
    ],
    ids=["live", "catching-up", "empty-cursor"],
)
def test_the_common_controls_skip_the_json_parser(
    data: str, expected: Control, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forms the reference server writes while live and while catching up.
    def refuse(*_: object, **__: object) -> Control:
        raise AssertionError("the JSON parser was asked")

    monkeypatch.setattr(sse, "_parse_control_json", refuse)
    assert parse_control(data, offset=None) == expected
