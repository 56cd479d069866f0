"""Bad input raises a typed error before anything is sent, and leaves everything usable.

"Nothing was sent" is checked, not assumed: the session under test borrows an
``aiohttp.ClientSession`` whose trace hook counts every request aiohttp starts, and sends a
dynamic header whose function counts its calls (headers are resolved once per attempt).
``test_probe_counts_every_request`` shows that both counters move on a real request, so
an unchanged count means something.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

AWARE = datetime(2030, 1, 1, tzinfo=UTC)


def clean_id(value: object) -> str:
    """A deterministic test id that is also safe inside the stream path built from it."""
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", repr(value)).strip("_") or "empty"


class Probe:
    """Counts requests that aiohttp started and calls of a dynamic header function."""

    def __init__(self) -> None:
        self.sent = 0
        self.header_calls = 0

    def header(self) -> str:
        self.header_calls += 1
        return f"call-{self.header_calls}"

    async def on_request_start(
        self,
        client: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.sent += 1

    @contextlib.contextmanager
    def nothing_sent(self) -> Iterator[None]:
        """Assert that the block sends no request."""
        before = self.sent
        yield
        assert self.sent == before, f"{self.sent - before} request(s) were sent"


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def traced_client(probe: Probe) -> AsyncIterator[aiohttp.ClientSession]:
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(probe.on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as client:
        yield client


@pytest.fixture
async def psession(
    server: ReferenceServer,
    probe: Probe,
    traced_client: aiohttp.ClientSession,
    fast_retry: ds.RetryPolicy,
) -> AsyncIterator[ds.Session]:
    async with ds.Session(
        server.url,
        headers={"x-probe": probe.header},
        retry=fast_retry,
        client_session=traced_client,
    ) as session:
        yield session


@pytest.fixture
async def jstream(psession: ds.Session, path: str) -> ds.Stream:
    stream = psession.stream(path)
    await stream.create(content_type="application/json")
    return stream


@pytest.fixture
async def bstream(psession: ds.Session, path: str) -> ds.Stream:
    stream = psession.stream(path)
    await stream.create(content_type="application/octet-stream")
    return stream


async def test_probe_counts_every_request(jstream: ds.Stream, probe: Probe) -> None:
    sent, calls = probe.sent, probe.header_calls
    await jstream.append({"a": 1})
    assert (probe.sent, probe.header_calls) == (sent + 1, calls + 1)
    await jstream.head()
    assert (probe.sent, probe.header_calls) == (sent + 2, calls + 2)


# -- reads ---------------------------------------------------------------------------------------

BAD_OFFSETS: list[Any] = [
    "",
    123,
    None,
    b"-1",
    "0_1/2",
    "0_1?x=1",
    "0_1&live=sse",
    "0_1=2",
    "0_1,2",
    " 0_1",
    "0_1 ",
    "0 1",
    "0_1\t",
    "0_1\n",
    "0_1\r",
]


@pytest.mark.parametrize("offset", BAD_OFFSETS, ids=clean_id)
async def test_bad_read_offset_is_refused(jstream: ds.Stream, probe: Probe, offset: Any) -> None:
    with probe.nothing_sent():
        with pytest.raises(ds.InvalidArgumentError):
            jstream.read(offset)
        with pytest.raises(ds.InvalidArgumentError):
            await jstream.read_all(offset)


async def test_refused_read_reports_no_error_from_the_half_made_reader(
    jstream: ds.Stream,
) -> None:
    # A reader whose constructor refused its arguments must be collected silently, not
    # print "Exception ignored in StreamReader.__del__" (an error under -W error).
    seen: list[sys.UnraisableHookArgs] = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with pytest.raises(ds.InvalidArgumentError):
            jstream.read("0_1/2")
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert [f"{u.exc_type.__name__}: {u.exc_value}" for u in seen] == []


@pytest.mark.parametrize("live", ["auto", "yes", "SSE", "longpoll", 1, 0, None, 2.0], ids=clean_id)
async def test_unknown_live_mode_is_refused(jstream: ds.Stream, probe: Probe, live: Any) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        jstream.read(live=live)


@pytest.mark.parametrize("cursor", ["", 5, b"c"], ids=clean_id)
async def test_bad_cursor_is_refused(jstream: ds.Stream, probe: Probe, cursor: Any) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        jstream.read(cursor=cursor)


async def test_reader_consumed_twice_raises(jstream: ds.Stream, probe: Probe) -> None:
    await jstream.append({"n": 1})
    reader = jstream.read(live=False)
    assert [m async for m in reader] == [{"n": 1}]
    with probe.nothing_sent():
        with pytest.raises(ds.ReaderConsumedError):
            async for _ in reader:
                pass
        with pytest.raises(ds.ReaderConsumedError):
            await reader.read_all()
        with pytest.raises(ds.ReaderConsumedError):
            reader.batches()


async def test_reader_consumed_by_read_all_cannot_be_iterated(jstream: ds.Stream) -> None:
    await jstream.append({"n": 1})
    async with jstream.read(live=False) as reader:
        assert await reader.read_all() == [{"n": 1}]
        with pytest.raises(ds.ReaderConsumedError):
            aiter(reader)
    # A new read() is the way to read again.
    assert await jstream.read_all() == [{"n": 1}]


# -- appends ------------------------------------------------------------------------------------

NOT_JSON = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(object(), id="object"),
    pytest.param({1, 2}, id="set"),
    pytest.param({"a": math.nan}, id="nested-nan"),
    pytest.param([1, math.inf], id="nested-inf"),
    pytest.param({"when": datetime(2030, 1, 1, tzinfo=UTC)}, id="datetime"),
]


@pytest.mark.parametrize("value", NOT_JSON)
async def test_value_that_is_not_json_is_refused(
    jstream: ds.Stream, probe: Probe, value: Any
) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.append(value)


@pytest.mark.parametrize("value", NOT_JSON[:4])
async def test_value_that_is_not_json_is_refused_as_a_final_message(
    jstream: ds.Stream, probe: Probe, value: Any
) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.close(final=value)
    assert not (await jstream.head()).closed


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"", id="bytes"),
        pytest.param("", id="str"),
        pytest.param(bytearray(), id="bytearray"),
        pytest.param(memoryview(b""), id="memoryview"),
    ],
)
async def test_empty_append_to_a_byte_stream_is_refused(
    bstream: ds.Stream, probe: Probe, value: Any
) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await bstream.append(value)


async def test_empty_bytes_to_a_json_stream_are_refused(jstream: ds.Stream, probe: Probe) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.append(b"")


@pytest.mark.parametrize("value", [123, 1.5, None, {"a": 1}, [b"x"]], ids=clean_id)
async def test_non_bytes_append_to_a_byte_stream_is_refused(
    bstream: ds.Stream, probe: Probe, value: Any
) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await bstream.append(value)


@pytest.mark.parametrize("seq", [1, b"1", "", "00\n01", "00\x0001"], ids=clean_id)
async def test_bad_stream_seq_is_refused(jstream: ds.Stream, probe: Probe, seq: Any) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.append({"a": 1}, seq=seq)


@pytest.mark.parametrize("close", ["yes", 1, None], ids=clean_id)
async def test_non_bool_close_flag_is_refused(jstream: ds.Stream, probe: Probe, close: Any) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.append({"a": 1}, close=close)


async def test_append_stream_needs_an_async_iterable(bstream: ds.Stream, probe: Probe) -> None:
    chunks: Any = [b"a", b"b"]
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await bstream.append_stream(chunks)


BAD_FOR_ANY_STREAM = [
    pytest.param(b"", id="empty-bytes"),
    pytest.param(math.nan, id="nan"),
    pytest.param(object(), id="object"),
    pytest.param({1, 2}, id="set"),
]


@pytest.mark.parametrize("value", BAD_FOR_ANY_STREAM)
async def test_bad_append_on_a_handle_that_has_not_learned_the_type_sends_nothing(
    psession: ds.Session, jstream: ds.Stream, probe: Probe, value: Any
) -> None:
    # These values are refused by every kind of stream, so no HEAD is needed to know.
    fresh = psession.stream(jstream.url)
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await fresh.append(value)


@pytest.mark.parametrize("value", BAD_FOR_ANY_STREAM)
async def test_bad_append_to_a_missing_stream_is_reported_as_bad_input(
    psession: ds.Session, path: str, value: Any
) -> None:
    # The caller's mistake is the value; a StreamNotFoundError would send them looking
    # for the wrong problem.
    with pytest.raises(ds.InvalidArgumentError):
        await psession.stream(path).append(value)


@pytest.mark.parametrize("value", BAD_FOR_ANY_STREAM)
async def test_one_shot_append_of_a_bad_value_sends_nothing(
    server: ReferenceServer, path: str, value: Any
) -> None:
    calls = 0

    def counted() -> str:
        nonlocal calls
        calls += 1
        return "x"

    url = server.url + path
    await ds.create(url, content_type="application/json")
    with pytest.raises(ds.InvalidArgumentError):
        await ds.append(url, value, headers={"x-probe": counted})
    assert calls == 0


# -- nothing lost after a refusal --------------------------------------------------------------


async def test_good_json_append_after_refused_ones_keeps_exactly_the_good_data(
    jstream: ds.Stream,
) -> None:
    await jstream.append({"n": 1})
    for bad in ([1, math.nan], {"x": {1}}, math.inf):
        with pytest.raises(ds.InvalidArgumentError):
            await jstream.append(bad)
    with pytest.raises(ds.InvalidArgumentError):
        await jstream.append({"n": 2}, seq="")
    await jstream.append({"n": 2})
    assert await jstream.read_all() == [{"n": 1}, {"n": 2}]


async def test_good_byte_append_after_refused_ones_keeps_exactly_the_good_data(
    bstream: ds.Stream,
) -> None:
    await bstream.append(b"ab")
    for bad in (b"", "", 7):
        with pytest.raises(ds.InvalidArgumentError):
            await bstream.append(bad)
    await bstream.append(b"cd")
    async with bstream.read(live=False) as reader:
        assert await reader.body() == b"abcd"


# -- create and fork -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 60, "expires_at": AWARE},
        {"ttl": 60, "expires_at": "2030-01-01T00:00:00Z"},
        {"ttl": -1},
        {"ttl": True},
        {"ttl": 1.5},
        {"ttl": "60"},
        {"expires_at": datetime(2030, 1, 1)},
        {"expires_at": "2030-01-01T00:00:00"},
        {"expires_at": "tomorrow"},
        {"expires_at": 1_893_456_000},
        {"content_type": ""},
        {"content_type": "json"},
        {"content_type": 123},
        {"content_type": None},
        {"content_type": "text/plain\r\nX-Injected: 1"},
        {"content_type": "application/json\n"},
        {"closed": "yes"},
        {"closed": 1},
        {"content_type": "application/json", "data": math.nan},
        {"content_type": "application/octet-stream", "data": 123},
    ],
    ids=clean_id,
)
async def test_bad_create_options_are_refused_and_nothing_is_created(
    psession: ds.Session, path: str, probe: Probe, options: dict[str, Any]
) -> None:
    stream = psession.stream(path)
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await stream.create(**options)
    assert not await stream.exists()


@pytest.mark.parametrize("content_type", ["", "json", 5, "text/plain\n"], ids=clean_id)
async def test_bad_content_type_on_a_handle_is_refused(
    psession: ds.Session, path: str, content_type: Any
) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        psession.stream(path, content_type=content_type)


@pytest.mark.parametrize(
    "options",
    [
        {"offset": "-1"},
        {"offset": "now"},
        {"offset": ""},
        {"offset": "0_1/2"},
        {"offset": 5},
        {"sub_offset": -1},
        {"sub_offset": True},
        {"sub_offset": 1.5},
        {"sub_offset": "1"},
        {"ttl": 60, "expires_at": AWARE},
        {"ttl": -5},
        {"content_type": "json"},
    ],
    ids=clean_id,
)
async def test_bad_fork_options_are_refused_and_nothing_is_created(
    psession: ds.Session, jstream: ds.Stream, path: str, probe: Probe, options: dict[str, Any]
) -> None:
    fork = psession.stream(path + "-fork")
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await fork.fork(jstream, **options)
    assert not await fork.exists()


async def test_fork_from_another_server_is_refused(
    psession: ds.Session, path: str, probe: Probe
) -> None:
    fork = psession.stream(path + "-fork")
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await fork.fork("http://elsewhere.invalid:4437/source")


# -- sessions and URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["offset", "live", "cursor"])
def test_reserved_query_parameters_are_refused(name: str) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        ds.Session("http://127.0.0.1:1", params={name: "x"})
    with pytest.raises(ds.InvalidArgumentError):
        ds.Session("http://127.0.0.1:1", params={name: lambda: "x"})


@pytest.mark.parametrize("name", ["offset", "live", "cursor"])
async def test_reserved_parameter_added_later_is_refused_before_sending(
    psession: ds.Session, jstream: ds.Stream, probe: Probe, name: str
) -> None:
    psession.params[name] = "x"
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        await jstream.head()
    del psession.params[name]
    assert (await jstream.head()).content_type == "application/json"


async def test_dynamic_header_returning_a_non_string_is_refused_before_sending(
    server: ReferenceServer, traced_client: aiohttp.ClientSession, probe: Probe, path: str
) -> None:
    def token() -> Any:
        return 123

    async with ds.Session(
        server.url, headers={"x-token": token}, client_session=traced_client
    ) as session:
        with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
            await session.stream(path).create()


@pytest.mark.parametrize("url", ["/orders", "orders", "orders/1"])
async def test_relative_url_without_base_url_is_refused(url: str) -> None:
    async with ds.Session() as session:
        with pytest.raises(ds.InvalidArgumentError):
            session.stream(url)


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://example.test/",
        "ws://example.test",
        "file:///tmp/x",
        "localhost:4437",
        "/v1",
        "",
        "http://",
    ],
    ids=clean_id,
)
def test_non_http_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        ds.Session(base_url)


@pytest.mark.parametrize("url", ["ftp://example.test/s", "", "http://", 42], ids=clean_id)
async def test_bad_stream_url_is_refused(psession: ds.Session, probe: Probe, url: Any) -> None:
    with probe.nothing_sent(), pytest.raises(ds.InvalidArgumentError):
        psession.stream(url)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 30},
        {"timeout": {"connect": 1.0}},
        {"retry": 3},
        {"retry": {"max_retries": 1}},
        {"max_connections": 0},
        {"max_connections": True},
        {"max_connections": 1.5},
        {"headers": {"x-token": 1}},
        {"headers": {"": "v"}},
        {"params": {"key": None}},
    ],
    ids=clean_id,
)
def test_bad_session_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        ds.Session("http://127.0.0.1:1", **options)


async def test_closed_session_refuses_requests(
    psession: ds.Session, jstream: ds.Stream, probe: Probe
) -> None:
    await psession.aclose()
    with probe.nothing_sent(), pytest.raises(ds.ResourceClosedError):
        await jstream.head()
