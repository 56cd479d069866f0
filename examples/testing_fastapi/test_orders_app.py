"""Tests of orders_app.py against the real Durable Streams reference server.

Nothing is copied from the durable_streams repository: the pytest plugin that comes with
``pip install 'durable-streams-aio[testing]'`` gives every test ``durable_streams_server``
(one server for the run, started on first use), ``durable_streams_session`` and
``durable_streams_stream_factory``. The app runs under uvicorn on a free port and is
driven over HTTP, so what is tested is what is deployed. Run ``pytest`` here (the
``pytest.ini`` beside this file sets ``asyncio_mode = auto``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI
from orders_app import create_app  # the application under test, beside this file

import durable_streams as ds
from durable_streams.testing import Fault, ReferenceServer, StreamFactory


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port for the block; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        # Listening before uvicorn starts: early requests wait in the backlog until the
        # app's startup (its lifespan) has finished, so there is nothing to poll for.
        sock.listen()
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await task


@dataclass
class OrdersApp:
    http: aiohttp.ClientSession  # talks to the app
    stream: ds.Stream  # the app's stream, read straight from the server

    async def stored(self) -> list[object]:
        return await self.stream.read_all()


@pytest.fixture
async def orders_app(
    durable_streams_server: ReferenceServer,
    durable_streams_session: ds.Session,
    durable_streams_stream_factory: StreamFactory,
) -> AsyncIterator[OrdersApp]:
    """The app, on a stream of this test's own, started and stopped around the test."""
    path = durable_streams_stream_factory.path("orders")
    app = create_app(durable_streams_server.url, path)
    async with serving(app) as url, aiohttp.ClientSession(url) as http:
        yield OrdersApp(http, durable_streams_session.stream(path))


async def test_an_order_is_stored_once_acknowledged(orders_app: OrdersApp) -> None:
    async with orders_app.http.post("/orders", json={"item": "tea", "quantity": 2}) as r:
        assert r.status == 201
        assert (await r.json())["offset"]
    assert await orders_app.stored() == [{"item": "tea", "quantity": 2}]


async def test_orders_are_listed_in_the_order_they_came(orders_app: OrdersApp) -> None:
    for n in range(1, 4):
        async with orders_app.http.post("/orders", json={"item": "cup", "quantity": n}) as r:
            assert r.status == 201
    async with orders_app.http.get("/orders") as r:
        assert [order["quantity"] for order in await r.json()] == [1, 2, 3]


async def test_a_failing_server_is_retried_and_nothing_is_stored_twice(
    orders_app: OrdersApp, durable_streams_server: ReferenceServer
) -> None:
    # The server's fault injection: the next two appends to the stream get a 503.
    durable_streams_server.inject(orders_app.stream.url, Fault(status=503, count=2, method="POST"))
    async with orders_app.http.post("/orders", json={"item": "pot", "quantity": 1}) as r:
        assert r.status == 201
    assert await orders_app.stored() == [{"item": "pot", "quantity": 1}]


@pytest.mark.parametrize(
    "body", [{"item": "", "quantity": 1}, {"item": "tea", "quantity": 0}, {"item": "tea"}]
)
async def test_invalid_orders_are_refused_and_nothing_is_stored(
    orders_app: OrdersApp, body: dict[str, object]
) -> None:
    async with orders_app.http.post("/orders", json=body) as r:
        assert r.status == 422
    assert await orders_app.stored() == []
