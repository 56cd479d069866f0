"""Credentials stay at their origin (issue 10, item 2).

The session's headers and params (an Authorization header, an API key, a query token) go
only to the base URL's origin. An absolute stream URL elsewhere is refused before anything
is sent, unless ``allowed_origins`` names that origin; a redirect to another origin is
never followed, so no credential follows one. The other origin is a capture server on
127.0.0.2, which records whatever reaches it.
"""

from __future__ import annotations

import pytest

import durable_streams as ds
from tests.hostile.servers import JSON, HostileServer, redirect

FAST = ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
HEADERS = {"Authorization": "Bearer SECRET-HEADER", "X-Api-Key": "SECRET-KEY"}
PARAMS = {"token": "SECRET-PARAM"}


def _session(base: str, *, allowed: list[str] | None = None) -> ds.Session:
    if allowed is None:
        return ds.Session(base, headers=HEADERS, params=PARAMS, retry=FAST)
    return ds.Session(base, headers=HEADERS, params=PARAMS, retry=FAST, allowed_origins=allowed)


def _elsewhere(hostile: HostileServer, capture: HostileServer) -> dict[str, str]:
    return {
        "other-host": f"{capture.url}/x",
        "other-host-same-port": f"http://127.0.0.2:{hostile.port}/x",
        "other-port": f"http://127.0.0.1:{capture.port}/x",
        "other-scheme": f"https://127.0.0.1:{hostile.port}/x",
    }


@pytest.mark.parametrize(
    "where", ["other-host", "other-host-same-port", "other-port", "other-scheme"]
)
async def test_an_absolute_url_on_another_origin_is_refused_before_sending(
    hostile: HostileServer, capture: HostileServer, where: str
) -> None:
    url = _elsewhere(hostile, capture)[where]
    async with _session(hostile.url) as session:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            session.stream(url)
        assert session.statistics().requests == 0
    assert caught.value.argument == "url"
    assert capture.requests == []
    assert hostile.requests == []


async def test_an_absolute_url_on_the_base_origin_is_allowed(hostile: HostileServer) -> None:
    async with _session(f"{hostile.url}/v1/stream") as session:
        assert await session.stream(f"{hostile.url}/other/x").exists()
    [seen] = hostile.requests
    assert seen.raw_path == "/other/x"
    assert seen.headers.get("authorization") == HEADERS["Authorization"]
    assert ("token", "SECRET-PARAM") in seen.query


async def test_an_allowed_origin_gets_the_session_credentials(
    hostile: HostileServer, capture: HostileServer
) -> None:
    async with _session(hostile.url, allowed=[capture.url]) as session:
        stream = session.stream(f"{capture.url}/x", content_type=JSON)
        await stream.append({"n": 1})
        assert await stream.read_all() == [{"ok": True}]
    assert [(r.method, r.raw_path) for r in capture.requests] == [("POST", "/x"), ("GET", "/x")]
    for seen in capture.requests:
        assert seen.headers.get("authorization") == HEADERS["Authorization"]
        assert seen.headers.get("x-api-key") == HEADERS["X-Api-Key"]
        assert ("token", "SECRET-PARAM") in seen.query
    assert hostile.requests == []


async def test_allowing_one_origin_does_not_allow_another(
    hostile: HostileServer, capture: HostileServer
) -> None:
    async with _session(hostile.url, allowed=[capture.url]) as session:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            session.stream(f"http://127.0.0.2:{hostile.port}/x")
    assert caught.value.argument == "url"
    assert capture.requests == []


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_no_credential_follows_a_redirect_to_another_origin(
    hostile: HostileServer, capture: HostileServer, code: int
) -> None:
    hostile.routes["/s"] = redirect(code, f"{capture.url}/x")
    async with _session(hostile.url) as session:
        stream = session.stream("/s", content_type=JSON)
        with pytest.raises(ds.RedirectError):
            await stream.read_all()
        with pytest.raises(ds.RedirectError):
            await stream.head()
        with pytest.raises(ds.RedirectError):
            await stream.append({"n": 1})
    assert capture.requests == []
    assert [(r.method, r.raw_path) for r in hostile.requests] == [
        ("GET", "/s"),
        ("HEAD", "/s"),
        ("POST", "/s"),
    ]


async def test_an_allowed_origin_is_still_not_a_redirect_target(
    hostile: HostileServer, capture: HostileServer
) -> None:
    # Opting in to send credentials to an origin is for URLs the caller wrote, not for
    # wherever a server points.
    hostile.routes["/s"] = redirect(307, f"{capture.url}/x")
    async with _session(hostile.url, allowed=[capture.url]) as session:
        with pytest.raises(ds.RedirectError):
            await session.stream("/s", content_type=JSON).read_all()
    assert capture.requests == []
