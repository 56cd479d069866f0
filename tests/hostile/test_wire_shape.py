"""What reaches the wire: no Content-Type the protocol did not ask for, and the query the
library encodes itself (aiohttp is handed a finished URL, no ``params``)."""

from __future__ import annotations

import pytest

import durable_streams as ds
from tests.hostile.servers import JSON, HostileServer


async def test_body_less_requests_reach_the_server_without_content_type(
    hostile: HostileServer,
) -> None:
    async with ds.Session(hostile.url) as session:
        stream = session.stream("s", content_type=JSON)
        await stream.head()
        await stream.read_all()
        await stream.close()
        await stream.delete()
        await session.stream("fork").fork("s")
    methods = sorted(r.method for r in hostile.requests)
    assert methods == ["DELETE", "GET", "HEAD", "POST", "PUT"]
    assert all("content-type" not in r.headers for r in hostile.requests)


@pytest.mark.parametrize(
    "value",
    ["plain-1.0_~", "a b", "a+b", "100%", "x&y=z", "é ü", "/:@?#", ""],
)
async def test_session_params_arrive_exactly(hostile: HostileServer, value: str) -> None:
    async with ds.Session(hostile.url, params={"token": value, "a": "1"}) as session:
        await session.stream("s", content_type=JSON).read_all()
    (request,) = hostile.requests
    # Sorted by name, the protocol's own parameter among them, each decoded to what was set.
    assert request.query == (("a", "1"), ("offset", "-1"), ("token", value))
    # Only unreserved characters go unescaped: a "+" is never taken for a space.
    raw = request.target.partition("?")[2]
    assert all(c.isalnum() or c in "-._~%=&" for c in raw)


async def test_a_param_no_url_can_carry_is_refused_before_sending(
    hostile: HostileServer,
) -> None:
    async with ds.Session(hostile.url, params={"token": "\ud800"}) as session:
        with pytest.raises(ds.InvalidArgumentError) as caught:
            await session.stream("s", content_type=JSON).read_all()
    assert caught.value.argument == "params"
    assert not hostile.requests
