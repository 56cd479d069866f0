"""Scenario 4: property-based tests (hypothesis) of the pure protocol code and of the reader
fed malformed input.

The promise: whatever bytes and headers arrive, the client gives either the right data or
a typed library error (a ``DurableStreamsError``), never a foreign exception and never a
hang. "Right" is decided by a small model written here from the protocol's rules (the
SSE line rules and event types, JSON framing, base64, the read headers), independent of
the library's code.

- Pure code: the SSE parser on any bytes split anywhere (same events as one feed, or
  ``UnicodeDecodeError`` either way, which the reader turns into ``ParseError``); JSON
  bodies, SSE data and control events that are truncated, corrupted, deeply nested or
  plain garbage; base64 payloads; odd header values; any status.
- The reader, against a scripted HTTP server: catch-up responses with any status, odd
  headers, JSON and byte bodies cut, corrupted, gzipped or not, split and framed in every
  way HTTP allows (and two ways it does not); SSE bodies built from valid event sequences
  with every legal variation of line ends, comments, fields and splits, then mutated.

Examples are derandomised (same inputs every run); ``CHAOS_SCALE=full`` runs more.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import itertools
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol.errors import Op, error_for, is_retryable_status, retry_after
from durable_streams._protocol.framing import (
    check_json_bytes,
    decode_base64_event,
    parse_json_body,
    parse_json_event,
)
from durable_streams._protocol.headers import flag, optional_int, read_meta
from durable_streams._protocol.sse import SSEEvent, SSEParser, parse_control
from tests.chaos._scripted import Framing, Reply, Request, ScriptedServer
from tests.chaos._support import record, scaled

PURE = settings(
    max_examples=scaled(400, 5000),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
READER = settings(
    max_examples=scaled(150, 2000),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# One example's reader must finish (with data or an error) well within this.
HANG_S = 10.0
FAST = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
TIMEOUTS = ds.Timeouts(connect=2.0, request=3.0, live_idle=3.0)


TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_inputs() -> Iterator[None]:
    """Record how many inputs each property was tried on (and at what scale)."""
    yield
    record("4 malformed input", inputs=dict(TRIED), total=sum(TRIED.values()))


class Rejected:
    """The model's verdict that an input must raise a typed error of ``kind``."""

    def __init__(self, kind: type[ds.DurableStreamsError], why: str) -> None:
        self.kind = kind
        self.why = why

    def __repr__(self) -> str:
        return f"Rejected({self.kind.__name__}: {self.why})"


# -- the model ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def model_json(text: str) -> Any | Rejected:
    """Strict JSON (no NaN or Infinity); too deep to decode counts as malformed too."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return Rejected(ds.ParseError, f"not JSON: {type(exc).__name__}")


def model_body(body: bytes) -> list[Any] | Rejected:
    """A JSON read body: an array of messages; an empty (all-whitespace) body is none."""
    if not body.strip():
        return []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(ds.ParseError, "body is not UTF-8")
    value = model_json(text)
    if isinstance(value, Rejected | list):
        return value
    return Rejected(ds.ParseError, "body is not an array")


def model_base64(data: str) -> bytes | Rejected:
    try:
        return base64.b64decode(data.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return Rejected(ds.ParseError, "not base64")


_LINE_END = re.compile(r"\r\n|\r|\n")


def model_sse_events(text: str) -> list[tuple[str, str]]:
    """SSE events completed in ``text``: lines end at CRLF, LF or CR; a blank line ends an
    event that had a ``data`` or ``event`` field; one space after the colon is dropped;
    comments, ``id``, ``retry`` and unknown fields are ignored; an unnamed event is a
    ``message``."""
    lines = _LINE_END.split(text)[:-1]  # the last piece has no line end yet
    events: list[tuple[str, str]] = []
    kind: str | None = None
    data: list[str] = []
    seen = False
    for line in lines:
        if not line:
            if seen:
                events.append((kind or "message", "\n".join(data)))
            kind, data, seen = None, [], False
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
            seen = True
        elif name == "event":
            kind = value
            seen = True
    return events


@dataclass(frozen=True, slots=True)
class SSEVerdict:
    """What a reader must yield for an SSE body: ``items``, or a rejection; ``either`` is
    also acceptable when the body broke (bad UTF-8) right after the stream's closing event
    and network chunking decides which the reader sees first."""

    result: list[Any] | Rejected
    either: list[Any] | None = None


def model_sse(body: bytes, kind: str) -> SSEVerdict:
    """Run the protocol's SSE rules over one response body, from offset ``o1``."""
    try:
        text, broken = body.decode("utf-8"), False
    except UnicodeDecodeError as exc:
        text = body[: exc.start].decode("utf-8")
        # A multi-byte character cut by the end of the body is simply incomplete.
        broken = exc.reason != "unexpected end of data"
    items: list[Any] = []
    pending: list[Any] = []
    for event_type, data in model_sse_events(text):
        if event_type == "data":
            decoded = _model_data(data, kind)
            if isinstance(decoded, Rejected):
                return SSEVerdict(decoded)
            pending.extend(decoded)
        elif event_type == "control":
            control = model_json(data)
            if isinstance(control, Rejected):
                return SSEVerdict(control)
            offset = control.get("streamNextOffset") if isinstance(control, dict) else None
            if not isinstance(offset, str) or not offset:
                return SSEVerdict(Rejected(ds.ParseError, "control without streamNextOffset"))
            items += pending
            pending = []
            if control.get("streamClosed") is True:
                if broken:
                    return SSEVerdict(Rejected(ds.ParseError, "not UTF-8"), either=items)
                return SSEVerdict(items)
    if broken:
        return SSEVerdict(Rejected(ds.ParseError, "not UTF-8"))
    # The body ended without closing the stream: the reader reconnects from its last
    # offset, and the script answers that the stream is closed there.
    return SSEVerdict(items)


def _model_data(data: str, kind: str) -> list[Any] | Rejected:
    if kind == "json":
        value = model_json(data)
        if isinstance(value, Rejected):
            return value
        return value if isinstance(value, list) else [value]
    # A byte payload that decodes to nothing is no item (as an empty body is none).
    if kind == "binary":
        decoded = model_base64(data)
        return decoded if isinstance(decoded, Rejected) else [decoded] if decoded else []
    return [data.encode()] if data else []


# -- strategies -----------------------------------------------------------------------------

# Lone surrogates cannot be sent as UTF-8 by any server, so no case holds one.
_chars = st.characters(codec="utf-8")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_chars, max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(_chars, max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _split(data: bytes, cuts: Sequence[int]) -> tuple[bytes, ...]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return tuple(data[a:b] for a, b in itertools.pairwise(points))


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` cut short, corrupted, nested too deep, or replaced by garbage."""
    how = draw(st.sampled_from(["truncate", "corrupt", "splice", "deep", "garbage", "constant"]))
    if how == "truncate" and good:
        return good[: draw(st.integers(0, len(good) - 1))]
    if how == "corrupt" and good:
        out = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "splice" and good:
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.binary(min_size=1, max_size=8)) + good[at:]
    if how == "deep":
        depth = draw(st.integers(1_000, 200_000))
        return b"[" * depth + (b"]" * depth if draw(st.booleans()) else b"")
    if how == "constant":
        return draw(st.sampled_from([b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1,NaN]"]))
    return draw(st.binary(max_size=64))


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A JSON read body: a valid array of messages, or a damaged one."""
    messages = draw(st.lists(json_values, max_size=6))
    good = _compact(messages).encode()
    if draw(st.integers(0, 2)) == 0:
        return good
    return draw(damaged(good))


# -- pure protocol code ---------------------------------------------------------------------


def _feed_all(chunks: Sequence[bytes]) -> list[SSEEvent] | type[UnicodeDecodeError]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
        events += parser.flush()
    except UnicodeDecodeError:
        return UnicodeDecodeError
    return events


@PURE
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(alphabet="event:dat \r\n:x{}", max_size=200).map(str.encode),
    ),
    cuts=st.lists(st.integers(0, 300), max_size=10),
)
def test_sse_parser_gives_the_same_events_however_any_bytes_are_split(
    body: bytes, cuts: list[int]
) -> None:
    TRIED["sse_parser_gives_the_same_events_however_any_bytes_are_split"] += 1
    whole = _feed_all([body])
    assert _feed_all(_split(body, cuts)) == whole
    assert _feed_all([bytes([b]) for b in body]) == whole


@PURE
@given(
    body=st.binary(max_size=300)
    | st.text(alphabet="event:dat \r\n:x", max_size=200).map(str.encode)
)
def test_sse_parser_matches_the_model_on_any_text(body: bytes) -> None:
    TRIED["sse_parser_matches_the_model_on_any_text"] += 1
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return
    events = _feed_all([body])
    assert not isinstance(events, type)
    assert [(e.type, e.data) for e in events] == model_sse_events(text)


@PURE
@given(body=json_bodies())
def test_json_body_is_its_messages_or_a_parse_error(body: bytes) -> None:
    TRIED["json_body_is_its_messages_or_a_parse_error"] += 1
    expected = model_body(body)
    if isinstance(expected, Rejected):
        with pytest.raises(ds.ParseError):
            parse_json_body(body, offset="o")
    else:
        assert parse_json_body(body, offset="o") == expected


@PURE
@given(body=json_bodies() | json_values.map(_compact).map(str.encode))
def test_sse_data_event_is_its_messages_or_a_parse_error(body: bytes) -> None:
    TRIED["sse_data_event_is_its_messages_or_a_parse_error"] += 1
    text = body.decode("utf-8", "replace")
    expected = _model_data(text, "json")
    if isinstance(expected, Rejected):
        with pytest.raises(ds.ParseError):
            parse_json_event(text, offset="o")
    else:
        assert parse_json_event(text, offset="o") == expected


@PURE
@given(body=json_bodies() | json_values.map(_compact).map(str.encode))
def test_encoded_json_given_to_append_is_taken_or_refused_as_invalid(body: bytes) -> None:
    """Bytes appended to a JSON stream must be one JSON value (user input, checked first)."""
    TRIED["encoded_json_given_to_append_is_taken_or_refused_as_invalid"] += 1
    try:
        valid = not isinstance(model_json(body.decode("utf-8")), Rejected)
    except UnicodeDecodeError:
        valid = False
    if valid:
        assert check_json_bytes(body) == body
    else:
        with pytest.raises(ds.InvalidArgumentError):
            check_json_bytes(body)


controls = st.fixed_dictionaries(
    {},
    optional={
        "streamNextOffset": st.text(max_size=6) | st.integers() | st.none(),
        "streamCursor": st.text(max_size=4) | st.integers(),
        "upToDate": st.booleans() | st.just("true"),
        "streamClosed": st.booleans() | st.just("true") | st.just(1),
    },
)


@PURE
@given(
    data=controls.map(_compact).map(str.encode).flatmap(lambda good: st.just(good) | damaged(good))
)
def test_control_event_is_parsed_or_a_parse_error(data: bytes) -> None:
    TRIED["control_event_is_parsed_or_a_parse_error"] += 1
    text = data.decode("utf-8", "replace")
    value = model_json(text)
    offset = value.get("streamNextOffset") if isinstance(value, dict) else None
    if not isinstance(offset, str) or not offset:
        with pytest.raises(ds.ParseError):
            parse_control(text, offset="o")
        return
    assert isinstance(value, dict)
    control = parse_control(text, offset="o")
    assert control.next_offset == offset
    assert control.closed is (value.get("streamClosed") is True)
    assert control.up_to_date is (control.closed or value.get("upToDate") is True)


@PURE
@given(
    data=st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode())
    | st.text(alphabet="ABCab01+/=\r\n -_", max_size=40)
)
def test_base64_event_is_its_bytes_or_a_parse_error(data: str) -> None:
    TRIED["base64_event_is_its_bytes_or_a_parse_error"] += 1
    expected = model_base64(data)
    if isinstance(expected, Rejected):
        with pytest.raises(ds.ParseError):
            decode_base64_event(data, offset="o")
    else:
        assert decode_base64_event(data, offset="o") == expected


odd_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "true",
            "TRUE",
            " true ",
            "false",
            "1",
            "-1",
            "0",
            "1e400",
            "-1e400",
            "inf",
            "NaN",
            "1_000",
            "١٢",
            "²",
            "0x10",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Mon, 01 Jan 0001 00:00:00 -0000",
            "Fri, 31 Dec 9999 23:59:59 +2359",
            "Tue, 99 Foo",
        ]
    ),
)
header_maps = st.dictionaries(
    st.sampled_from(
        [
            "stream-next-offset",
            "stream-up-to-date",
            "stream-closed",
            "stream-cursor",
            "retry-after",
            "producer-epoch",
            "producer-expected-seq",
            "producer-received-seq",
            "content-type",
            "x-other",
        ]
    ),
    odd_values,
)


@PURE
@given(headers=header_maps, status=st.integers(100, 999), op=st.sampled_from(list(Op)))
def test_any_status_and_headers_give_a_typed_error(
    headers: dict[str, str], status: int, op: Op
) -> None:
    TRIED["any_status_and_headers_give_a_typed_error"] += 1
    error = error_for(status, headers, op=op, url="http://x/s")
    assert isinstance(error, ds.ResponseError)
    assert error.status == status
    assert isinstance(str(error), str)
    assert is_retryable_status(status) in (True, False)
    meta = read_meta(headers)
    assert meta.closed is flag(headers, "stream-closed")
    assert meta.up_to_date is (meta.closed or flag(headers, "stream-up-to-date"))
    for name in headers:
        value = optional_int(headers, name)
        assert value is None or value >= 0
    delay = retry_after(headers)
    assert delay is None or 0.0 <= delay <= 3600.0


# -- the reader against a scripted server: catch-up -----------------------------------------


@dataclass(frozen=True, slots=True)
class CatchUp:
    """One fuzzed catch-up response, and what the reader must make of it."""

    reply: Reply
    expected: list[Any] | Rejected | Either | type[ds.DurableStreamsError]
    json: bool


_OFFSETS = [None, "", "o2", "0000000000000000_0000000000000010", "ünï", "a&b=c d", "x" * 300]
_FLAGS = [None, "true", "TRUE", "True", "false", "yes", "1", ""]
_STATUSES = (
    [200] * 12
    + [204] * 3
    + [
        206,
        299,
        300,
        301,
        304,
        400,
        401,
        403,
        404,
        405,
        409,
        410,
        413,
        418,
        429,
        500,
        501,
        502,
        503,
        599,
    ]
)
_RETRY_AFTERS = [None, "", "0", "0.001", "abc", "-5", "NaN", "Wed, 21 Oct 2015 07:28:00 GMT"]
_CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/octet-stream",
    "text/plain",
    "",
    None,
    "garbage",
]


def _is_json_type(value: str | None) -> bool:
    return (
        bool(value)
        and value is not None
        and value.split(";")[0].strip().lower() == "application/json"
    )


@st.composite
def catch_ups(draw: st.DrawFn, *, focus: str) -> CatchUp:
    """A catch-up response: with ``focus="headers"`` any status and odd headers; with
    ``focus="body"`` a 200 whose body is damaged in its content, encoding or framing."""
    body_focus = focus == "body"
    status = 200 if body_focus else draw(st.sampled_from(_STATUSES))
    content_type = draw(st.sampled_from(_CONTENT_TYPES))
    is_json = _is_json_type(content_type)
    body = draw(json_bodies()) if is_json else draw(st.binary(max_size=2000))
    headers: list[tuple[str, str]] = []
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    next_offset = "o2" if body_focus else draw(st.sampled_from(_OFFSETS))
    if next_offset is not None:
        headers.append(("Stream-Next-Offset", next_offset))
        if draw(st.integers(0, 9)) == 0:
            headers.append(("Stream-Next-Offset", "o-second"))  # a repeat: the first counts
    for name in ("Stream-Up-To-Date", "Stream-Closed", "Stream-Cursor"):
        value = draw(st.sampled_from(_FLAGS))
        if value is not None:
            headers.append((name, value))
    retry = None if body_focus else draw(st.sampled_from(_RETRY_AFTERS))
    if retry is not None:
        headers.append(("Retry-After", retry))
    encodings = ["none", "gzip", "identity", "gzip-truncated", "gzip-garbage"]
    encoding = draw(st.sampled_from(encodings if body_focus else ["none", *encodings]))
    wire = body
    if encoding == "identity":
        headers.append(("Content-Encoding", "identity"))
    elif encoding != "none":
        headers.append(("Content-Encoding", "gzip"))
        wire = gzip.compress(body, mtime=0)
        if encoding == "gzip-truncated":
            wire = wire[: draw(st.integers(0, len(wire) - 1))]
        elif encoding == "gzip-garbage":
            wire = draw(st.binary(max_size=40))
    if not body_focus and draw(st.integers(0, 9)) == 0:
        headers.append(("X-Huge", "h" * (70 * 1024)))  # beyond Limits.max_header_bytes
    framing: Framing = draw(
        st.sampled_from(
            ["chunked", "chunked", "length", "close", "truncated-chunked", "short-length"]
        )
    )
    chunks = _split(wire, draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reply = Reply(status, tuple(headers), chunks, framing)
    return CatchUp(reply, _expect_catch_up(reply, body, next_offset), is_json)


@dataclass(frozen=True, slots=True)
class Either:
    """Either ``data`` exactly, or a typed error of ``kind``."""

    data: list[Any]
    kind: type[ds.DurableStreamsError]


def _gzip_intact(wire: bytes, body: bytes) -> bool:
    """Whether ``wire`` is a complete gzip stream of ``body``."""
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        return decoder.decompress(wire) == body and decoder.eof
    except zlib.error:
        return False


def _expect_catch_up(
    reply: Reply, body: bytes, next_offset: str | None
) -> list[Any] | Rejected | Either | type[ds.DurableStreamsError]:
    bodiless = reply.status in (204, 304)
    if any(name == "X-Huge" for name, _ in reply.headers):
        return ds.LimitExceededError
    if not bodiless and reply.framing in ("truncated-chunked", "short-length"):
        if reply.status == 200 and not (next_offset or "").strip():
            # The headers arrived whole and refuse the answer before its body is read.
            return Rejected(ds.ParseError, "no Stream-Next-Offset")
        return ds.TransportError
    expected = _expect_intact(reply, body, next_offset)
    gzipped = dict(reply.headers).get("Content-Encoding") == "gzip"
    if bodiless or not gzipped or _gzip_intact(reply.body, body):
        return expected
    # A gzip body that is cut short or not gzip at all: the client cannot have the data
    # the server sent. It must say so with a typed error, unless what it decoded happens
    # to be the same data (say, only the gzip trailer was lost).
    if isinstance(expected, list):
        return Either(expected, ds.DurableStreamsError)
    return ds.DurableStreamsError


def _expect_intact(
    reply: Reply, body: bytes, next_offset: str | None
) -> list[Any] | Rejected | type[ds.DurableStreamsError]:
    """What the reader must yield if the body arrived as the server meant it."""
    status = reply.status
    if status not in (200, 204):
        return _status_error(status)
    if not (next_offset or "").strip():
        return Rejected(ds.ParseError, "no Stream-Next-Offset")
    if status == 204:
        return []
    if _is_json_type(dict(reply.headers).get("Content-Type")):
        return model_body(body)
    return [body] if body else []


def _status_error(status: int) -> type[ds.DurableStreamsError]:
    table: dict[int, type[ds.DurableStreamsError]] = {
        400: ds.InvalidOffsetError,
        401: ds.UnauthorizedError,
        403: ds.ForbiddenError,
        404: ds.StreamNotFoundError,
        405: ds.NotSupportedError,
        409: ds.ConflictError,
        410: ds.GoneError,
        413: ds.PayloadTooLargeError,
        429: ds.RateLimitedError,
        501: ds.NotSupportedError,
    }
    if status in table:
        return table[status]
    if 300 <= status < 400 and status != 304:
        return ds.RedirectError  # a read follows only 307/308 with a Location, never these
    return ds.ServerError if 500 <= status < 600 else ds.UnexpectedStatusError


def _closing_reply(request: Request, content_type: str | None) -> Reply:
    """The sane end: an empty, closed stream at the offset asked for."""
    headers = [
        ("Stream-Next-Offset", request.params.get("offset", "end")),
        ("Stream-Up-To-Date", "true"),
        ("Stream-Closed", "true"),
    ]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    body = b"[]" if _is_json_type(content_type) else b""
    return Reply(200, tuple(headers), (body,))


async def _read_all(url: str, *, live: ds.LiveMode) -> list[Any] | BaseException:
    """Everything the reader yields, or the error it raised (a foreign one fails here)."""
    async with ds.Session(url, retry=FAST, timeout=TIMEOUTS) as session:
        reader = session.stream("/s").read(live=live)
        try:
            async with asyncio.timeout(HANG_S), reader:
                return await reader.read_all()
        except TimeoutError:
            pytest.fail(f"the reader hung for {HANG_S} s")
        except ds.DurableStreamsError as exc:
            return exc


def _check(outcome: list[Any] | BaseException, expected: object, *, joined: bool) -> None:
    if isinstance(expected, Either):
        if isinstance(outcome, expected.kind):
            return
        expected = expected.data
    if isinstance(expected, Rejected):
        expected = expected.kind
    if isinstance(expected, type):
        assert isinstance(outcome, expected), f"expected {expected.__name__}, got {outcome!r}"
        return
    assert not isinstance(outcome, BaseException), f"expected data {expected!r}, got {outcome!r}"
    if joined:
        assert b"".join(outcome) == b"".join(expected)  # type: ignore[arg-type]
    else:
        assert outcome == expected


def _cut_gzip_case() -> CatchUp:
    """What the reference server's own ``truncateBodyBytes`` fault sends for a byte stream
    over 1 KiB: a complete HTTP body whose gzip stream stops early."""
    body = bytes(range(256)) * 16
    headers = (
        ("Content-Type", "application/octet-stream"),
        ("Stream-Next-Offset", "o2"),
        ("Stream-Up-To-Date", "true"),
        ("Content-Encoding", "gzip"),
    )
    reply = Reply(200, headers, (gzip.compress(body, mtime=0)[:300],))
    return CatchUp(reply, _expect_catch_up(reply, body, "o2"), json=False)


def _deep_json_case() -> CatchUp:
    body = b"[" * 5000 + b"]" * 5000
    headers = (("Content-Type", "application/json"), ("Stream-Next-Offset", "o2"))
    reply = Reply(200, headers, (body,))
    return CatchUp(reply, _expect_catch_up(reply, body, "o2"), json=True)


@pytest.mark.timeout(scaled(120, 1200))
@READER
@given(case=st.one_of(catch_ups(focus="headers"), catch_ups(focus="body")))
@example(case=_cut_gzip_case())
@example(case=_deep_json_case())
async def test_catch_up_reader_gives_the_data_or_a_typed_error(case: CatchUp) -> None:
    TRIED["catch_up_reader_gives_the_data_or_a_typed_error"] += 1
    content_type = dict(case.reply.headers).get("Content-Type")

    def script(request: Request) -> Reply:
        if request.params.get("offset") == "-1":
            return case.reply
        return _closing_reply(request, content_type)

    async with ScriptedServer(script) as server:
        outcome = await _read_all(server.url, live=False)
    _check(outcome, case.expected, joined=not case.json)


# -- the reader against a scripted server: SSE ----------------------------------------------


@dataclass(frozen=True, slots=True)
class SSECase:
    kind: str  # json | text | binary
    chunks: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


_TYPES = {"json": "application/json", "text": "text/plain", "binary": "application/octet-stream"}


@st.composite
def sse_payload_lines(draw: st.DrawFn, kind: str) -> list[str]:
    """The ``data:`` lines of one data event, as a server could send them."""
    if kind == "json":
        value = draw(json_values)
        text = json.dumps(value, ensure_ascii=False, indent=draw(st.sampled_from([None, 1])))
        return text.split("\n")
    if kind == "binary":
        encoded = base64.b64encode(draw(st.binary(max_size=40))).decode()
        width = draw(st.integers(4, 80))
        return [encoded[i : i + width] for i in range(0, len(encoded), width)] or [""]
    chars = st.characters(exclude_characters="\r\n", codec="utf-8")
    text = draw(st.text(alphabet=chars, max_size=20))
    return [text]


@st.composite
def sse_cases(draw: st.DrawFn) -> SSECase:
    kind = draw(st.sampled_from(sorted(_TYPES)))
    lines: list[str] = []
    for n in range(draw(st.integers(0, 6))):
        roll = draw(st.integers(0, 9))
        if roll < 5:
            lines.append("event: data" if draw(st.booleans()) else "event:data")
            lines += [
                ("data: " if draw(st.booleans()) else "data:") + value
                for value in draw(sse_payload_lines(kind))
            ]
        elif roll < 8:
            control = {"streamNextOffset": f"c{n}", "streamCursor": str(n), "upToDate": True}
            lines += ["event: control", "data:" + _compact(control)]
        elif roll == 8:
            lines += [f"event: future-{n}", "data: ignored"]
        else:
            lines.append(draw(st.sampled_from([": comment", "id: 7", "retry: 10", "novalue"])))
            continue  # not an event: no blank line
        lines.append("")
    if draw(st.booleans()):
        lines += ["event: control", 'data:{"streamNextOffset":"end","streamClosed":true}', ""]
    # Line ends: any of LF, CRLF, CR, except that a CR may not precede an LF that ends an
    # empty line (CR LF would then be one line end, merging two lines).
    text_parts: list[str] = []
    previous = ""
    for line in lines:
        choices = ["\r\n", "\r"] if previous == "\r" and not line else ["\n", "\r\n", "\r"]
        previous = draw(st.sampled_from(choices))
        text_parts.append(line + previous)
    body = "".join(text_parts).encode()
    mutation = draw(st.sampled_from(["none", "none", "none", "damage", "garbage-event"]))
    if mutation == "damage" and body:
        body = draw(damaged(body))
    elif mutation == "garbage-event":
        garbage = draw(
            st.sampled_from(
                [
                    "event: control\ndata: {not json\n\n",
                    "event: control\ndata: [1]\n\n",
                    'event: control\ndata: {"streamCursor":"1"}\n\n',
                    "event: control\n\n",
                    "event: data\ndata: {oops\n\n",
                    "event: data\ndata: @@notbase64\n\n",
                    "event: data\ndata: " + "[" * 50_000 + "\n\n",
                    "event: control\ndata: " + '{"a":' * 50_000 + "\n\n",
                ]
            )
        )
        at = draw(st.integers(0, len(body)))
        body = body[:at] + garbage.encode() + body[at:]
    chunks = _split(body, draw(st.lists(st.integers(0, len(body)), max_size=12)))
    return SSECase(kind, chunks)


def _sse_script(case: SSECase) -> Callable[[Request], Reply]:
    served = False
    content_type = _TYPES[case.kind]

    def script(request: Request) -> Reply:
        nonlocal served
        live = request.params.get("live")
        offset = request.params.get("offset", "")
        if live is None:
            headers = [
                ("Content-Type", content_type),
                # Sorts before every offset the cases use ("c0".."c5", "end"): offsets of
                # one stream sort, and the reader ignores positions behind its own.
                ("Stream-Next-Offset", "a0"),
                ("Stream-Up-To-Date", "true"),
            ]
            body = b"[]" if case.kind == "json" else b""
            return Reply(200, tuple(headers), (body,))
        if live == "long-poll":
            return Reply(204, (("Stream-Next-Offset", offset), ("Stream-Closed", "true")))
        headers = [("Content-Type", "text/event-stream")]
        if case.kind == "binary":
            headers.append(("Stream-SSE-Data-Encoding", "base64"))
        if offset == "a0" and not served:
            served = True
            return Reply(200, tuple(headers), case.chunks)
        closed = _compact({"streamNextOffset": offset, "streamClosed": True})
        return Reply(200, tuple(headers), (f"event: control\ndata:{closed}\n\n".encode(),))

    return script


@pytest.mark.timeout(scaled(120, 1200))
@READER
@given(case=sse_cases())
@example(case=SSECase("json", (b"event: data\ndata:" + b"[" * 5000 + b"\n\n",)))
@example(case=SSECase("json", (b"event: control\ndata:" + b'{"a":' * 5000 + b"\n\n",)))
async def test_sse_reader_gives_the_data_or_a_typed_error(case: SSECase) -> None:
    TRIED["sse_reader_gives_the_data_or_a_typed_error"] += 1
    verdict = model_sse(case.body, case.kind)
    async with ScriptedServer(_sse_script(case)) as server:
        outcome = await _read_all(server.url, live="sse")
    if verdict.either is not None and not isinstance(outcome, BaseException):
        assert outcome == verdict.either
        return
    _check(outcome, verdict.result, joined=False)


# -- a server that reports an older offset than the reader holds ---------------------------


def _backward_script(live: str) -> Callable[[Request], Reply]:
    """A reader catches up to ``o2`` (messages 1 and 2); the next live answer reports the
    older offset ``o1`` with no data, as the file-backed reference server does when a read
    races an append (it reads the file past the tail its metadata holds, then answers
    with that tail); from ``o1`` the data after it, message 2, is served again.
    """
    calls: dict[tuple[str | None, str], int] = {}
    json_type = ("Content-Type", "application/json")

    def script(request: Request) -> Reply:
        mode, offset = request.params.get("live"), request.params.get("offset", "")
        calls[mode, offset] = calls.get((mode, offset), 0) + 1
        first = calls[mode, offset] == 1
        if mode is None:  # catch-up
            return Reply(
                200,
                (json_type, ("Stream-Next-Offset", "o2"), ("Stream-Up-To-Date", "true")),
                (b"[1,2]",),
            )
        if mode == "long-poll":
            if offset == "o2" and first:
                return Reply(200, (json_type, ("Stream-Next-Offset", "o1")), (b"[]",))
            if offset == "o1":
                return Reply(200, (json_type, ("Stream-Next-Offset", "o2")), (b"[2]",))
            return Reply(204, (("Stream-Next-Offset", offset), ("Stream-Closed", "true")))
        events = {
            "o2": 'event: control\ndata:{"streamNextOffset":"o1","upToDate":true}\n\n'
            'event: data\ndata:[2]\n\nevent: control\ndata:{"streamNextOffset":"o2"}\n\n',
        }
        body = events.get(offset, "") if first else ""
        closed = _compact({"streamNextOffset": "o2", "streamClosed": True})
        body += f"event: control\ndata:{closed}\n\n"
        return Reply(200, (("Content-Type", "text/event-stream"),), (body.encode(),))

    return script


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_an_offset_reported_backward_repeats_nothing(live: ds.LiveMode) -> None:
    TRIED["offset_reported_backward"] += 1
    async with ScriptedServer(_backward_script(str(live))) as server:
        outcome = await _read_all(server.url, live=live)
    assert outcome == [1, 2], f"a reader moved back to an older offset and read: {outcome!r}"
