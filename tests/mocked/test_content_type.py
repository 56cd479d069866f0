"""Content-Type and the options every request states explicitly.

aiohttp labels a body-less PUT or POST ``application/octet-stream`` unless told not to;
the protocol decides instead. A mocked transport sees the headers the library passes and,
on a borrowed ``aiohttp.ClientSession``, the options it states on every request (an owned
one carries them as its own defaults, which the mock does not see). That aiohttp honours
them on the wire is shown against a raw server, in tests/hostile (test_wire_shape.py).
"""

from __future__ import annotations

import aiohttp
from aioresponses import aioresponses

import durable_streams as ds
from tests.mocked.conftest import BASE, FAST, OFFSET_1, Answers, Sent, sent, url_pattern


def no_content_type(request: Sent) -> bool:
    """No Content-Type from us, and no body for aiohttp to label."""
    return "content-type" not in request.headers and request.body is None


async def test_create_states_the_streams_type_and_a_fork_inherits_it(
    mock: aioresponses, answers: Answers
) -> None:
    answers.create("/src")
    answers.create("/fork")
    answers.create("/typed-fork")
    answers.create("/bytes", content_type="application/octet-stream")
    async with ds.Session(BASE, retry=FAST) as session:
        await session.stream("/src").create(content_type="application/json")
        await session.stream("/fork").fork("/src")
        await session.stream("/typed-fork").fork("/src", content_type="application/json")
        await session.stream("/bytes").create()
    by_path = {r.path: r for r in sent(mock)}
    assert by_path["/v1/stream/src"].headers["content-type"] == "application/json"
    assert by_path["/v1/stream/src"].body is None
    fork = by_path["/v1/stream/fork"]
    assert no_content_type(fork)  # no octet-stream: the fork takes the source's type
    assert fork.headers["stream-forked-from"] == "/v1/stream/src"
    assert by_path["/v1/stream/typed-fork"].headers["content-type"] == "application/json"
    # Asked for, and so stated: the protocol's default type for a create.
    assert by_path["/v1/stream/bytes"].headers["content-type"] == "application/octet-stream"


async def test_body_less_requests_carry_no_content_type(
    mock: aioresponses, answers: Answers
) -> None:
    answers.head("/s")
    answers.close("/s")
    answers.read("/s", [1])
    answers.delete("/s")
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/s")
        await stream.head()
        await stream.close()
        await stream.read_all()
        await stream.delete()
    requests = sent(mock)
    assert sorted(r.method for r in requests) == ["DELETE", "GET", "HEAD", "POST"]
    assert all(no_content_type(r) for r in requests)
    (close,) = (r for r in requests if r.method == "POST")
    assert close.body is None
    assert close.headers["stream-closed"] == "true"


async def test_appends_are_labelled_with_the_streams_type(mock: aioresponses) -> None:
    mock.head(
        url_pattern("/t"),
        status=200,
        content_type="text/plain; charset=utf-8",
        headers={"Stream-Next-Offset": OFFSET_1},
    )
    mock.post(url_pattern("/t"), status=204, headers={"Stream-Next-Offset": OFFSET_1}, repeat=True)
    async with ds.Session(BASE, retry=FAST) as session:
        stream = session.stream("/t")  # type unknown: one HEAD learns it
        await stream.append("héllo")
        await stream.append(b"raw", seq="0002")
    head, *posts = sent(mock)
    assert head.method == "HEAD"
    assert [r.headers["content-type"] for r in posts] == ["text/plain; charset=utf-8"] * 2
    assert [r.body for r in posts] == ["héllo".encode(), b"raw"]
    assert "stream-seq" not in posts[0].headers
    assert posts[1].headers["stream-seq"] == "0002"


async def test_every_request_states_its_options(mock: aioresponses, answers: Answers) -> None:
    answers.create("/o")
    answers.append("/o")
    answers.read("/o", [1])
    async with (
        aiohttp.ClientSession(raise_for_status=True, auto_decompress=True) as client,
        ds.Session(BASE, retry=FAST, client_session=client) as session,
    ):
        stream = session.stream("/o")
        await stream.create(content_type="application/json")
        await stream.append(1)
        await stream.read_all()
    requests = sent(mock)
    assert sorted(r.method for r in requests) == ["GET", "POST", "PUT"]
    for request in requests:
        # A borrowed aiohttp.ClientSession's defaults can change none of these.
        assert request.options["allow_redirects"] is False
        assert request.options["raise_for_status"] is False
        assert request.options["auto_decompress"] is False
        assert request.options["middlewares"] == ()
        assert request.options["max_line_size"] == ds.Limits().max_header_bytes
        assert request.headers["accept-encoding"] == "gzip, deflate"
        if request.method in ("POST", "PUT"):
            assert "Content-Type" in request.options["skip_auto_headers"]


async def test_an_owned_session_states_only_what_has_no_default(
    mock: aioresponses, answers: Answers
) -> None:
    answers.read("/o", [1])
    async with ds.Session(BASE, retry=FAST) as session:
        await session.stream("/o").read_all()
    (request,) = sent(mock)
    # The rest are the owned aiohttp.ClientSession's own defaults (tests/hostile shows
    # them at work: redirects, statuses, gzip bombs).
    assert request.options == {"allow_redirects": False, "timeout": request.options["timeout"]}
    assert request.headers["accept-encoding"] == "gzip, deflate"
