"""A small FastAPI service that records orders in a durable stream (the application under
test in docs/testing.md).

- ``POST /orders`` takes ``{"item": ..., "quantity": ...}`` and answers ``201`` with the
  stream offset once the Durable Streams server has stored the order, exactly once (one
  idempotent producer serves the whole process, so its retries are deduplicated).
- ``GET /orders`` lists the orders stored so far.

Run it against a server of your own::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 uvicorn orders_app:app --port 8000

Settings: ``DURABLE_STREAMS_URL``, ``ORDERS_STREAM`` (default ``/orders``),
``PRODUCER_ID`` (default ``orders-app``; one per running instance).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import durable_streams as ds


class Order(BaseModel):
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=1000)


class Stored(BaseModel):
    offset: str | None


def get_producer(request: Request) -> ds.IdempotentProducer:
    """The process's one producer (a dependency of the routes)."""
    producer: ds.IdempotentProducer = request.app.state.producer
    return producer


def get_stream(request: Request) -> ds.Stream:
    """The orders stream (a dependency of the routes)."""
    stream: ds.Stream = request.app.state.stream
    return stream


def create_app(base_url: str, stream_path: str, producer_id: str = "orders-app") -> FastAPI:
    """The application, writing to ``stream_path`` on the server at ``base_url``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with ds.Session(base_url) as session:
            stream = session.stream(stream_path)
            await stream.create(content_type="application/json")  # or confirm it exists
            # auto_claim: a restarted instance takes over from its previous run.
            async with stream.producer(producer_id, auto_claim=True) as producer:
                app.state.stream = stream
                app.state.producer = producer
                yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(
        order: Order, producer: Annotated[ds.IdempotentProducer, Depends(get_producer)]
    ) -> Stored:
        try:
            ack = await (await producer.append(order.model_dump()))
        except ds.DurableStreamsError as exc:
            raise HTTPException(503, f"cannot store orders: {exc}") from None
        return Stored(offset=ack.offset)

    @app.get("/orders")
    async def list_orders(stream: Annotated[ds.Stream, Depends(get_stream)]) -> list[Order]:
        return [Order.model_validate(item) for item in await stream.read_all()]

    return app


def _from_environment() -> FastAPI:
    return create_app(
        os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437"),
        os.environ.get("ORDERS_STREAM", "/orders"),
        os.environ.get("PRODUCER_ID", "orders-app"),
    )


app = _from_environment()  # for `uvicorn orders_app:app`: building it does no I/O
