"""Bad input is refused before anything is sent: not one request reaches aiohttp.

No answer is registered in these tests, so a request that did go out would fail with a
connection error instead of the usage error asserted; the recorded list is checked too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aioresponses import aioresponses

import durable_streams as ds
from tests.mocked.conftest import BASE, sent

Call = Callable[[ds.Session], Awaitable[object]]
EXPIRY = "2030-01-01T00:00:00Z"


def json_stream(session: ds.Session) -> ds.Stream:
    return session.stream("/bad", content_type="application/json")


async def read_all_live(session: ds.Session, live: object) -> object:
    return await json_stream(session).read(live=live).read_all()  # type: ignore[arg-type]


async def produce(session: ds.Session, **options: object) -> None:
    async with json_stream(session).producer("p", **options) as producer:  # type: ignore[arg-type]
        await producer.append(1)


CASES: dict[str, Call] = {
    "NaN in a JSON append": lambda s: json_stream(s).append(float("nan")),
    "an empty append": lambda s: s.stream("/bad", content_type="text/plain").append(b""),
    "an object that is not JSON": lambda s: json_stream(s).append({1, 2}),
    "bad JSON before the content type is known": lambda s: s.stream("/b").append(float("inf")),
    "a dot segment in the name": lambda s: s.stream("/a/../b").head(),
    "an empty segment in the name": lambda s: s.stream("/a//b").head(),
    "a control character in the name": lambda s: s.stream("/a\nb").head(),
    "an absolute URL on another origin": lambda s: s.stream("http://evil.test/x").head(),
    "the same host under another scheme": lambda s: s.stream("https://ds.test/x").head(),
    "both ttl and expires_at": lambda s: json_stream(s).create(ttl=5, expires_at=EXPIRY),
    "a negative ttl": lambda s: json_stream(s).create(ttl=-1),
    "closed that is not a bool": lambda s: json_stream(s).create(closed="yes"),  # type: ignore[arg-type]
    "an empty content type": lambda s: json_stream(s).create(content_type=""),
    "a negative fork sub-offset": lambda s: json_stream(s).fork("/src", sub_offset=-1),
    "a bad read offset": lambda s: json_stream(s).read(offset="not an offset").read_all(),
    "an unknown live mode": lambda s: read_all_live(s, "websocket"),
    "a negative producer epoch": lambda s: produce(s, epoch=-1),
    "a zero producer batch size": lambda s: produce(s, max_batch_bytes=0),
    "a producer with no id": lambda s: json_stream(s).producer("").start(),
}


@pytest.mark.parametrize("call", CASES.values(), ids=CASES.keys())
async def test_bad_input_sends_no_request(mock: aioresponses, call: Call) -> None:
    async with ds.Session(BASE) as session:
        with pytest.raises(ds.InvalidArgumentError):
            await call(session)
    assert sent(mock) == []


def test_a_refused_base_url_sends_nothing(mock: aioresponses) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        ds.Session("ftp://ds.test/")
    assert sent(mock) == []
