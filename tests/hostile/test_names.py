"""Stream names address exactly one stream (issue 10, item 3).

``session.stream(name)`` percent-encodes each ``/``-separated segment of ``name``, and
refuses dot segments, empty segments and control characters before anything is sent. The
server records the raw request target, so every assertion is on what went on the wire.
"""

from __future__ import annotations

import asyncio
import string
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_streams as ds
from tests.hostile.servers import HostileServer

FAST = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
BASE_PATH = "/v1/stream"

# name: the raw path it must be sent as, under BASE_PATH.
ENCODED = {
    "q?x=1": "/q%3Fx=1",
    "h#frag": "/h%23frag",
    "a b": "/a%20b",
    "%41": "/%2541",
    "%2e%2e": "/%252e%252e",
    "caf\u00e9": "/caf%C3%A9",
    "\u6d41/\U0001f30a": "/%E6%B5%81/%F0%9F%8C%8A",
    "/x?live=sse": "/x%3Flive=sse",
    "a/b/c": "/a/b/c",
    "/orders": "/orders",
    "...": "/...",
    "a..": "/a..",
    "tab\\back": "/tab%5Cback",
}

REFUSED = {
    "dot": ".",
    "dot-dot": "..",
    "climb": "a/../b",
    "climb-first": "../b",
    "climb-last": "a/..",
    "here": "a/./b",
    "here-first": "./a",
    "leading-slash-dot-dot": "/../a",
    "empty-segment": "a//b",
    "trailing-slash": "a/",
    "only-slash": "/",
    "double-leading-slash": "//a",
    "cr": "a\rb",
    "lf": "a\nb",
    "crlf-header-injection": "a\r\nX-Injected: 1",
    "nul": "a\x00b",
    "del": "a\x7fb",
    "escape": "a\x1bb",
    "tab": "a\tb",
    "c1-nel": "a\x85b",
    "c1-last": "a\x9fb",
    "lone-surrogate": "a\ud800b",
    "empty": "",
}


def _session(server: HostileServer) -> ds.Session:
    return ds.Session(server.url + BASE_PATH, retry=FAST)


@pytest.mark.parametrize("name", ENCODED)
async def test_each_segment_is_percent_encoded(hostile: HostileServer, name: str) -> None:
    async with _session(hostile) as session:
        assert await session.stream(name).exists()
    [seen] = hostile.requests
    assert seen.method == "HEAD"
    assert seen.target == BASE_PATH + ENCODED[name]


@pytest.mark.parametrize("case", REFUSED)
async def test_unsafe_names_are_refused_before_sending(hostile: HostileServer, case: str) -> None:
    async with _session(hostile) as session:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            session.stream(REFUSED[case])
        assert session.statistics().requests == 0
    assert caught.value.argument == "url"
    assert hostile.requests == []


async def test_a_query_in_a_name_never_makes_a_read_live(hostile: HostileServer) -> None:
    # The stub answers any live read with 400 at once, so a name that turned into
    # ``?live=sse`` fails here instead of hanging.
    async with _session(hostile) as session:
        async with asyncio.timeout(10):
            assert await session.stream("/x?live=sse").read_all() == [{"ok": True}]
    [seen] = hostile.requests
    assert seen.raw_path == BASE_PATH + "/x%3Flive=sse"
    assert seen.query == (("offset", "-1"),)


async def test_names_that_differ_address_different_streams(hostile: HostileServer) -> None:
    names = ["a/../b", "b", "q?x=1", "q", "h#frag", "h", "%41", "A"]
    async with _session(hostile) as session:
        for name in names:
            try:
                stream = session.stream(name)
            except ds.InvalidArgumentError:
                continue
            await stream.exists()
    paths = [r.raw_path for r in hostile.requests]
    assert len(paths) == len(set(paths)), paths


ABSOLUTE_REFUSED = {
    "query": "/s?x=1",
    "empty-query": "/s?",
    "fragment": "/s#frag",
    "dot-dot": "/a/../b",
    "dot": "/a/./b",
    "trailing-dot-dot": "/a/..",
    "encoded-dot-dot": "/a/%2e%2e/b",
    "encoded-dot-dot-upper": "/a/%2E%2E/b",
    "mixed-dot-dot": "/a/.%2e/b",
    "encoded-dot": "/a/%2e/b",
    "cr": "/a\r/b",
    "lf": "/a\n/b",
    "nul": "/a\x00b",
}


@pytest.mark.parametrize("case", ABSOLUTE_REFUSED)
async def test_unsafe_absolute_urls_are_refused_before_sending(
    hostile: HostileServer, case: str
) -> None:
    async with _session(hostile) as session:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            session.stream(hostile.url + ABSOLUTE_REFUSED[case])
    assert caught.value.argument == "url"
    assert hostile.requests == []


async def test_a_plain_absolute_url_is_sent_as_given(hostile: HostileServer) -> None:
    async with _session(hostile) as session:
        assert await session.stream(hostile.url + "/plain/path-1").exists()
    [seen] = hostile.requests
    assert seen.target == "/plain/path-1"


# -- any text at all ------------------------------------------------------------------------

# Pieces that make names interesting to a URL, mixed with letters and any character.
_TRICKY = st.sampled_from(
    [*"/.%?#&=+;:@ ~\\\r\n\t\x00\x7f\x85\u2028\ud800", "..", "%2e", "%41", "%%"]
)
NAMES = st.lists(
    st.one_of(_TRICKY, st.sampled_from(string.ascii_letters), st.characters(exclude_categories=())),
    min_size=1,
    max_size=16,
).map("".join)


def _segments(name: str) -> list[str]:
    return name.removeprefix("/").split("/")


@settings(
    max_examples=150,
    deadline=None,
    # One server and session serve every example; each example clears the records.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=NAMES)
async def test_any_name_is_refused_or_reaches_exactly_its_stream(
    hostile: HostileServer, name: str
) -> None:
    hostile.clear()
    async with _session(hostile) as session:
        try:
            stream = session.stream(name)
        except ds.InvalidArgumentError:
            assert hostile.requests == []
            return
        await stream.exists()
    [seen] = hostile.requests
    assert seen.target == seen.raw_path, "a name never adds a query"
    assert seen.raw_path.startswith(BASE_PATH + "/")
    sent = seen.raw_path.removeprefix(BASE_PATH + "/").split("/")
    assert [unquote(segment, errors="strict") for segment in sent] == _segments(name)
