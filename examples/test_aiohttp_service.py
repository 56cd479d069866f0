"""Testing an application against the real Durable Streams reference server (pytest).

The application under test is ``examples/aiohttp_service.py``. Run from the repository
root::

    python -m pytest examples/test_aiohttp_service.py

Needs ``pytest`` and ``pytest-asyncio`` (``asyncio_mode = "auto"``, as this repository's
``pyproject.toml`` sets it). The reference server comes from the shipped testing kit
(``pip install durable-streams-aio[testing]``; Node.js installs it on first use); in
your own project nothing needs copying.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_service import make_app  # the application under test, beside this file

import durable_streams as ds
from durable_streams.testing import ReferenceServer


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    """A reference server (in memory) for this module's tests."""
    with ReferenceServer() as srv:
        yield srv


@pytest.fixture
def events_path() -> str:
    """A stream of this test's own."""
    return f"/test-events/{uuid.uuid4().hex}"


@pytest.fixture
async def client(
    server: ReferenceServer, events_path: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The service, started on a free port, talking to the reference server."""
    monkeypatch.setenv("DURABLE_STREAMS_URL", server.url)
    monkeypatch.setenv("EVENTS_STREAM", events_path)
    async with TestClient(TestServer(make_app())) as test_client:
        yield test_client


async def stored(server: ReferenceServer, path: str) -> list[object]:
    """Everything the stream holds, read straight from the server."""
    return await ds.read_all(server.stream_url(path))


async def test_events_are_stored_in_order(
    client: TestClient[web.Request, web.Application], server: ReferenceServer, events_path: str
) -> None:
    for n in range(3):
        response = await client.post("/events", json={"n": n})
        assert response.status == 201
        assert (await response.json())["duplicate"] is False
    assert await stored(server, events_path) == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_failing_server_is_retried_and_nothing_is_stored_twice(
    client: TestClient[web.Request, web.Application], server: ReferenceServer, events_path: str
) -> None:
    # The reference server's fault injection: the next two POSTs to the stream get a 503.
    server.inject_error(events_path, status=503, count=2, method="POST")
    response = await client.post("/events", json={"type": "signup"})
    assert response.status == 201
    assert await stored(server, events_path) == [{"type": "signup"}]


async def test_bad_input_is_refused_before_anything_is_sent(
    client: TestClient[web.Request, web.Application], server: ReferenceServer, events_path: str
) -> None:
    response = await client.post("/events", data=b"{not json")
    assert response.status == 400
    response = await client.post("/events", data=b'{"x": NaN}')  # Python parses it, JSON has no NaN
    assert response.status == 400
    assert await stored(server, events_path) == []
