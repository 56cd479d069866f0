"""Relay durable streams to browsers as Server-Sent Events, with a tiny live page (FastAPI).

Needs ``fastapi`` and ``uvicorn`` (``pip install -e '.[examples]'``) and a Durable Streams
server. With the repository's reference server (Node.js;
``python -m durable_streams.testing install`` once)::

    python -m tests.with_server python examples/fastapi_relay.py --port 8000

or against a server you run yourself::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/fastapi_relay.py --port 8000

Then open http://127.0.0.1:8000/streams/demo in two browser tabs and type a message in
one: both show it. Each page name ``NAME`` is the durable stream ``/relay/NAME``
(``RELAY_PREFIX`` changes the prefix), so any other program can append to it too.

- One ``ds.Session`` (one connection pool) lives as long as the app: see ``lifespan``.
- ``GET /streams/NAME/events`` catches up, then follows the stream live. Every SSE event
  carries one message and, as its ``id``, the reader's position after exactly that
  message (``StreamReader.position``). When the connection drops, the browser reconnects
  by itself and sends the last id back in ``Last-Event-ID``; the relay resumes from it,
  so nothing is lost or shown twice, even when the connection broke in the middle of a
  large catch-up and the reconnect lands on another instance of the relay.
- At the end of a closed stream the relay sends an ``eof`` event, and the page stops.
- ``POST /streams/NAME/messages`` appends ``{"text": ...}``, creating the stream first if
  needed; the page's form uses it.
- Ctrl-C or SIGTERM ends the open event streams at once and stops the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from types import FrameType
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

import durable_streams as ds

PREFIX = os.environ.get("RELAY_PREFIX", "/relay")
# A comment line this often keeps proxies from cutting a quiet connection.
KEEP_ALIVE_SECONDS = 15.0
# Set when the server is stopping: open event streams end (see Server below).
stopping = asyncio.Event()

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One Session for the whole app, closed when the app shuts down."""
    base_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    async with ds.Session(base_url) as session:
        app.state.session = session
        yield


app = FastAPI(title="durable stream relay", lifespan=lifespan)


def get_session(request: Request) -> ds.Session:
    """The app's shared Session, as a FastAPI dependency."""
    session: ds.Session = request.app.state.session
    return session


SessionDep = Annotated[ds.Session, Depends(get_session)]


def durable_stream(session: ds.Session, name: str) -> ds.Stream:
    """The durable stream behind page ``name``."""
    return session.stream(f"{PREFIX}/{name}", content_type="application/json")


# -- the relay ------------------------------------------------------------------------


# What anext() returns at the end of a reader (None is a JSON message like any other).
END: Any = object()


@app.get("/streams/{name}/events")
async def events(
    name: Name,
    session: SessionDep,
    last_event_id: Annotated[str | None, Header()] = None,
    offset: str = "-1",
) -> StreamingResponse:
    """Relay the stream as SSE, from ``Last-Event-ID`` (a reconnect) or ``offset``."""
    stream = durable_stream(session, name)
    try:
        catch_up = stream.read(last_event_id or offset, live=False)
    except ds.InvalidArgumentError as exc:  # neither an offset nor a position we gave out
        raise HTTPException(400, str(exc)) from exc
    try:
        # The first message (or the news that there is none yet) comes before the response
        # starts, so a missing stream or a bad offset is an HTTP error status rather than a
        # broken event stream. A catch-up read never waits for new data, so this is quick.
        first = await anext(catch_up, END)
    except BaseException:
        await catch_up.aclose()
        raise
    return StreamingResponse(
        sse(stream, catch_up, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def event(message: object, position: str) -> str:
    """One SSE event: the message (in a one-element array), and where to resume after it."""
    return f"id: {position}\ndata: {json.dumps([message])}\n\n"


async def sse(stream: ds.Stream, catch_up: ds.StreamReader, first: object) -> AsyncIterator[str]:
    """The event stream: the catch-up, then live messages, one event each."""
    # Leaving these blocks (the browser went away, or the app is stopping) closes the
    # readers' connections to the Durable Streams server.
    async with catch_up:
        yield "retry: 1000\n\n"
        message = first
        while message is not END:
            yield event(message, catch_up.position)
            message = await anext(catch_up, END)
        if catch_up.stream_closed:
            yield "event: eof\ndata: {}\n\n"
            return
    # Live from exactly where the catch-up ended: a position resumes after one message.
    async with stream.read(catch_up.position, live=True) as live:
        while True:
            try:
                message = await next_message(live)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message is END:
                break
            yield event(message, live.position)
        if live.stream_closed:
            yield "event: eof\ndata: {}\n\n"


async def next_message(reader: ds.StreamReader) -> object:
    """The next message, or END at the end of the stream or once the app is stopping.

    Raises TimeoutError after ``KEEP_ALIVE_SECONDS`` without one.
    """
    get = asyncio.ensure_future(anext(reader, END))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait(
            {get, stop}, timeout=KEEP_ALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stop.cancel()
        if not get.done():
            # Cancelling a reader's wait is safe: it resumes where it was, losing nothing.
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await get
    if get in done:
        return get.result()
    if stopping.is_set():
        return END
    raise TimeoutError


class Message(BaseModel):
    """What the page sends."""

    text: str = Field(min_length=1, max_length=2000)


@app.post("/streams/{name}/messages", status_code=201)
async def post_message(name: Name, message: Message, session: SessionDep) -> dict[str, str]:
    """Append a message, creating the stream on first use; answers the new tail offset."""
    stream = durable_stream(session, name)
    try:
        result = await stream.append(message.model_dump())
    except ds.StreamNotFoundError:
        await stream.create(content_type="application/json")  # create, or confirm it exists
        result = await stream.append(message.model_dump())
    return {"offset": result.offset}


@app.exception_handler(ds.DurableStreamsError)
async def durable_streams_error(request: Request, exc: ds.DurableStreamsError) -> JSONResponse:
    """Our errors as HTTP statuses: what the browser (or its user) can act on."""
    status = 502  # the Durable Streams server failed us
    if isinstance(exc, ds.StreamNotFoundError):
        status = 404
    elif isinstance(exc, ds.InvalidOffsetError | ds.UsageError):
        status = 400
    elif isinstance(exc, ds.GoneError):
        status = 410
    elif isinstance(exc, ds.StreamClosedError):
        status = 409
    return JSONResponse({"detail": exc.message}, status_code=status)


# -- the page -------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>NAME · durable stream relay</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>NAME</h1>
<p id="status">connecting…</p>
<ul id="messages"></ul>
<form id="send">
  <input name="text" autocomplete="off" placeholder="Say something" required>
  <button>Send</button>
</form>
<script>
const base = "/streams/" + encodeURIComponent(NAME_JSON);
const status = document.getElementById("status");
const list = document.getElementById("messages");
let source = null;
function connect() {
  // EventSource reconnects by itself and sends the last event id back: the stream offset.
  source = new EventSource(base + "/events");
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => {
    status.textContent = source.readyState === EventSource.CLOSED
      ? "not connected: no such stream yet? Send a message to start it."
      : "reconnecting…";
  };
  source.onmessage = (event) => {
    for (const message of JSON.parse(event.data)) {
      const item = document.createElement("li");
      item.textContent = typeof message.text === "string" ? message.text : JSON.stringify(message);
      list.append(item);
    }
  };
  source.addEventListener("eof", () => {
    status.textContent = "the stream is closed";
    source.close();
  });
}
connect();
document.getElementById("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.elements.text;
  const response = await fetch(base + "/messages", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({text: input.value}),
  });
  if (!response.ok) {
    const {detail} = await response.json();
    status.textContent = "not sent: " + (typeof detail === "string" ? detail : "invalid");
    return;
  }
  input.value = "";
  if (source.readyState === EventSource.CLOSED) connect();  // the stream exists now
});
</script>
</body>
</html>
"""


@app.get("/streams/{name}", response_class=HTMLResponse)
async def page(name: Name) -> str:
    """The live page: a list that grows as messages arrive, and a box to send one."""
    # ``name`` matched [A-Za-z0-9_-], so it is safe in HTML; JSON quotes it for the script.
    return PAGE.replace("NAME_JSON", json.dumps(name)).replace("NAME", name)


class Server(uvicorn.Server):
    """uvicorn, ending the open event streams as soon as it is asked to stop.

    Otherwise it would wait for them (they never end by themselves) until
    ``timeout_graceful_shutdown``. Browsers reconnect, to the next instance of the relay,
    with their Last-Event-ID, and lose nothing.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # no loop running: no stream to end
            asyncio.get_running_loop().call_soon_threadsafe(stopping.set)
        super().handle_exit(sig, frame)


def main() -> None:
    """Serve the relay with uvicorn."""
    parser = argparse.ArgumentParser(description="Relay durable streams to browsers (SSE).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    config = uvicorn.Config(app, host=args.host, port=args.port, timeout_graceful_shutdown=5)
    Server(config).run()


if __name__ == "__main__":
    main()
