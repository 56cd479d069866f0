"""Accept events over HTTP and append them to a durable stream through one shared producer.

An aiohttp web service. With the repository's reference server (Node.js,
``python -m durable_streams.testing install``)::

    python -m tests.with_server python examples/aiohttp_service.py --port 8080

or against a server you run yourself::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/aiohttp_service.py --port 8080

then send it events::

    curl -X POST -H 'Content-Type: application/json' -d '{"type": "signup", "user": "ada"}' \\
        http://127.0.0.1:8080/events

- ``POST /events`` takes one JSON value and answers ``201`` once the Durable Streams
  server has stored it, with the stream's offset after the batch that carried it;
  ``POST /events?wait=false`` answers ``202`` as soon as the event is buffered.
- ``GET /stats`` shows the producer's counters.
- Requests arriving together share batches: one producer serves the whole process, so
  many small events become few large, pipelined, exactly-once appends.
- Ctrl-C or SIGTERM stops the service cleanly: buffered events are sent before it exits.

Settings: ``EVENTS_STREAM`` (default ``/events``), ``PRODUCER_ID`` (default
``aiohttp-service``; give every running instance its own).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import AsyncIterator

from aiohttp import web

import durable_streams as ds

PRODUCER = web.AppKey("producer", ds.IdempotentProducer)


async def durable_streams_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the session and the producer at startup; flush and close them at cleanup."""
    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    path = os.environ.get("EVENTS_STREAM", "/events")
    producer_id = os.environ.get("PRODUCER_ID", "aiohttp-service")
    async with ds.Session(base_url) as session:
        stream = session.stream(path)
        await stream.create(content_type="application/json")  # create, or confirm it exists
        # auto_claim: a restarted service takes over from its previous run (a new epoch)
        # without having to store the epoch anywhere.
        async with stream.producer(producer_id, auto_claim=True) as producer:
            app[PRODUCER] = producer
            yield
        # Leaving the producer block sent everything buffered; a failure is raised here.


async def post_event(request: web.Request) -> web.Response:
    """Append one JSON value to the stream."""
    try:
        event = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    producer = request.app[PRODUCER]
    try:
        receipt = await producer.append(event)  # buffered; waits only if the buffer is full
        if request.query.get("wait") == "false":
            return web.json_response({"accepted": True}, status=202)
        ack = await receipt  # the server stored the batch that carried this event
    except ds.InvalidArgumentError as exc:  # not JSON the stream can take (NaN, say)
        raise web.HTTPBadRequest(text=str(exc)) from None
    except ds.DurableStreamsError as exc:
        # The producer stopped (fenced by a newer instance, the stream was closed, the
        # server kept failing...): it refuses all further work, so report it plainly.
        raise web.HTTPServiceUnavailable(text=f"cannot store events: {exc}") from None
    return web.json_response({"offset": ack.offset, "duplicate": ack.duplicate}, status=201)


async def stats(request: web.Request) -> web.Response:
    """The producer's counters: buffered and sent messages, batches, retries."""
    return web.json_response(dataclasses.asdict(request.app[PRODUCER].statistics()))


def make_app() -> web.Application:
    """The web application."""
    app = web.Application()
    app.cleanup_ctx.append(durable_streams_ctx)
    app.router.add_post("/events", post_event)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    """Serve the application; Ctrl-C or SIGTERM stops it cleanly."""
    parser = argparse.ArgumentParser(description="Accept events and append them to a stream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
