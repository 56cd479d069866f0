"""Unit-testing your own code with aioresponses (shown in docs/testing.md).

The code under test takes a ``durable_streams.Session``; the test gives it one whose
requests aioresponses answers, then checks what was sent and how the code handled the
answers. No server, no network.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

import durable_streams as ds

BASE = "http://ds.test"


# -- the code under test: an application's own function --------------------------------


async def record_signup(session: ds.Session, user: str) -> str | None:
    """Append a signup event; the offset it was stored at, or None if the server is down."""
    stream = session.stream("/signups", content_type="application/json")
    try:
        result = await stream.append({"type": "signup", "user": user})
    except ds.TransportError:  # network errors and timeouts
        return None
    return result.offset


# -- its tests --------------------------------------------------------------------------


async def test_a_signup_is_one_append_with_the_token() -> None:
    with aioresponses() as mock:
        mock.post(f"{BASE}/signups", status=204, headers={"Stream-Next-Offset": "0_42"})
        async with ds.Session(BASE, headers={"Authorization": "Bearer t0k"}) as session:
            assert await record_signup(session, "ada") == "0_42"
    (call,) = mock.requests[("POST", URL(f"{BASE}/signups"))]
    headers = call.kwargs["headers"]
    assert headers["authorization"] == "Bearer t0k"
    assert headers["content-type"] == "application/json"
    assert json.loads(call.kwargs["data"]) == [{"type": "signup", "user": "ada"}]


async def test_a_server_that_cannot_be_reached_is_reported_as_none() -> None:
    with aioresponses() as mock:
        mock.post(f"{BASE}/signups", exception=aiohttp.ClientConnectionError("refused"))
        # No retries in a unit test: each would need an answer of its own.
        policy = ds.RetryPolicy(max_retries=0)
        async with ds.Session(BASE, retry=policy) as session:
            assert await record_signup(session, "ada") is None


async def test_a_refused_append_is_not_hidden() -> None:
    with aioresponses() as mock:
        mock.post(f"{BASE}/signups", status=409, headers={"Stream-Closed": "true"})
        async with ds.Session(BASE) as session:
            with pytest.raises(ds.StreamClosedError):
                await record_signup(session, "ada")
