#!/usr/bin/env python3
"""Client adapter for the Durable Streams conformance suite, driving ``durable_streams``.

The suite (``packages/client-conformance-tests`` in ``durable-streams/durable-streams``) starts
a reference server, spawns this program once, and talks to it in JSON lines: one command per
line on stdin, exactly one result per line on stdout. Logging goes to stderr. See
``docs/conformance.md`` for how to build the runner and run the suite against this adapter.

Rules this adapter keeps:

* Only the public API of ``durable_streams`` is used, through one long-lived
  :class:`durable_streams.Session` created by ``init``.
* An error result is returned only when the library raised; the error code is chosen by the
  exception's type (:func:`error_result`). The adapter never retries, repairs or second-guesses
  the library: retries, framing, SSE decoding, producer sequencing and auto-claim are the
  library's job.
* The suite's bodies are the protocol's wire form, in which a JSON array appends each of its
  elements, while the library's ``append`` takes ``bytes`` as exactly one message. A body that
  is a JSON array goes to a JSON stream through ``append_stream`` (the library's raw wire form,
  sent once); any other body through ``append`` (:func:`append_wire_body`).
* One status is imitated: the library refuses an empty ``append`` locally, before any request,
  and the adapter reports that refusal with the protocol's status for it, ``400``, marked as
  imitated (:func:`empty_append_result`).
* Bounded reads (``timeoutMs``, ``maxChunks``, ``waitForUpToDate``) iterate the library's
  :meth:`durable_streams.StreamReader.batches` under an :func:`asyncio.timeout`.
* Dynamic headers and parameters are callables stored in ``session.headers`` and
  ``session.params``: the library evaluates them on every request.

The adapter handles one command at a time (the runner never sends a command before the
previous result arrived), which is what makes the per-command header overlay in
:meth:`Adapter.command_headers` safe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import durable_streams as ds

log = logging.getLogger("conformance_adapter")

Command = dict[str, Any]
Result = dict[str, Any]

CLIENT_NAME: Final = "durable-streams-python (aiohttp)"
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
# How long a live read may run when the command gives no timeoutMs (the reference adapters'
# default).
DEFAULT_READ_TIMEOUT_MS: Final = 5000
DEFAULT_MAX_CHUNKS: Final = 100
# The retry policy of the adapter's session. The library's defaults allow up to ten retries
# with delays growing to 10 s; capping the delay at 2 s keeps a read that exhausts its retries
# (consumer-retry-resilience/retry-exhaustion-fails) well inside the runner's 30 s command
# timeout, while every retry the suite expects still happens.
RETRY_POLICY: Final = ds.RetryPolicy(max_retries=10, initial_delay=0.1, max_delay=2.0)

FEATURES: Final = {
    "batching": True,
    "sse": True,
    "longPoll": True,
    "auto": True,
    "streaming": True,
    "dynamicHeaders": True,
    "retryOptions": True,
    "batchItems": True,
    "strictZeroValidation": True,
}

# Exception type -> suite error code, most specific first (see protocol.ts, ErrorCodes).
ERROR_CODES: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (ds.StreamNotFoundError, "NOT_FOUND"),
    (ds.StreamClosedError, "STREAM_CLOSED"),
    (ds.SequenceGapError, "SEQUENCE_CONFLICT"),
    (ds.SequenceConflictError, "SEQUENCE_CONFLICT"),
    (ds.StreamExistsError, "CONFLICT"),
    (ds.ConflictError, "CONFLICT"),
    (ds.InvalidOffsetError, "INVALID_OFFSET"),
    (ds.NotSupportedError, "NOT_SUPPORTED"),
    (ds.ResponseError, "UNEXPECTED_STATUS"),
    (ds.ParseError, "PARSE_ERROR"),
    (ds.InvalidArgumentError, "INVALID_ARGUMENT"),
    (ds.RequestTimeoutError, "TIMEOUT"),
    (ds.TransportError, "NETWORK_ERROR"),
)


# The library's parameter names (InvalidArgumentError.argument) that the suite spells
# differently from plain camelCase: seconds in Python, milliseconds in the suite.
SUITE_ARGUMENTS: Final = {
    "initial_delay": "initialDelayMs",
    "max_delay": "maxDelayMs",
    "linger": "lingerMs",
}

# What the protocol answers to an empty append; see empty_append_result.
EMPTY_APPEND_STATUS: Final = 400


class CommandError(Exception):
    """A command the adapter cannot carry out as sent (unknown type, missing field)."""

    def __init__(self, message: str, *, code: str = "NOT_SUPPORTED") -> None:
        super().__init__(message)
        self.code = code


# -- small helpers ---------------------------------------------------------------------


def suite_argument(argument: str) -> str:
    """The suite's name for a parameter named ``argument`` in the Python signature.

    The suite's names are camelCase, and parameters that the library takes in seconds are
    given in milliseconds with an ``Ms`` suffix (``initial_delay`` -> ``initialDelayMs``).
    """
    known = SUITE_ARGUMENTS.get(argument)
    if known is not None:
        return known
    head, *rest = argument.split("_")
    return head + "".join(part.capitalize() for part in rest)


def error_result(command_type: str, exc: BaseException) -> Result:
    """The suite's error result for an exception raised while handling ``command_type``.

    An :class:`durable_streams.InvalidArgumentError` that names the rejected parameter gets
    the suite's name for it in front of the library's message (the validation tests look for
    ``maxRetries``, ``initialDelayMs``, ... in the message) and in ``details``.
    """
    if isinstance(exc, CommandError):
        code = exc.code
    else:
        code = next((name for cls, name in ERROR_CODES if isinstance(exc, cls)), "INTERNAL_ERROR")
    message = str(exc) or type(exc).__name__
    details: dict[str, Any] = {}
    if isinstance(exc, ds.InvalidArgumentError) and exc.argument is not None:
        name = suite_argument(exc.argument)
        message = f"invalid {name}: {message}"
        details["argument"] = name
    result: Result = {
        "type": "error",
        "success": False,
        "commandType": command_type,
        "errorCode": code,
        "message": message,
    }
    if isinstance(exc, ds.DurableStreamsError) and exc.status is not None:
        result["status"] = exc.status
    if details:
        result["details"] = details
    return result


def empty_append_result(exc: ds.InvalidArgumentError) -> Result:
    """The error result for an empty ``append``, which the library refuses before sending.

    The protocol answers an empty append (without ``Stream-Closed``) with ``400``, and the
    suite checks for that status. The library deliberately raises
    :class:`durable_streams.InvalidArgumentError` instead, without sending a request, so no
    server ever answered: the ``400`` here is imitated by this adapter, as the protocol
    checklist allows ("pass it to the server (or imitate that status)"). ``details`` says so.
    """
    result = error_result("append", exc)
    result["status"] = EMPTY_APPEND_STATUS
    result["message"] += (
        f" (refused by the client before sending; status {EMPTY_APPEND_STATUS} imitated"
        " by the conformance adapter, no request was made)"
    )
    result["details"] = {**result.get("details", {}), "statusImitated": True}
    return result


def field(command: Command, name: str) -> str:
    """The required string field ``name`` of ``command``."""
    value = command.get(name)
    if not isinstance(value, str):
        raise CommandError(f"command field {name!r} must be a string", code="INVALID_ARGUMENT")
    return value


def headers_of(command: Command) -> dict[str, str]:
    """The extra request headers a command carries (``headers``), as strings."""
    value = command.get("headers") or {}
    if not isinstance(value, dict):
        raise CommandError("command field 'headers' must be an object", code="INVALID_ARGUMENT")
    return {str(k): str(v) for k, v in value.items()}


def payload(command: Command) -> bytes:
    """The bytes of an ``append`` command: ``data`` as UTF-8, or base64 when ``binary``."""
    data = field(command, "data")
    if command.get("binary"):
        return base64.b64decode(data, validate=True)
    return data.encode()


def encodes_an_array(body: bytes) -> bool:
    """Whether ``body`` is a valid JSON array, which the wire form appends element by element."""
    if not body.lstrip().startswith(b"["):
        return False
    try:
        return isinstance(json.loads(body), list)
    except ValueError:
        return False  # not JSON: the library refuses it, as before


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def append_wire_body(
    stream: ds.Stream, body: bytes, *, seq: str | None = None, close: bool = False
) -> ds.AppendResult:
    """Append ``body`` as the protocol's wire form means it.

    On a JSON stream an encoded array is several messages: only ``append_stream`` sends it
    so (once, since a streamed body is never retried; no suite test injects faults into
    such an append). Every other body means the same to both, and goes through ``append``
    with its validation and retries.
    """
    if stream.content_type is None and body:
        await stream.head()  # the HEAD append() would make to learn the type
    if is_json(stream.content_type) and encodes_an_array(body):
        return await stream.append_stream(_one_chunk(body), seq=seq, close=close)
    return await stream.append(body, seq=seq, close=close)


def is_json(content_type: str | None) -> bool:
    """Whether ``content_type`` names a JSON stream (its reads yield parsed messages)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def chunk_text(items: list[Any], *, json_stream: bool) -> str:
    """The suite's text for one delivery: a compact JSON array, or bytes decoded as UTF-8."""
    if json_stream:
        return json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    return b"".join(items).decode("utf-8", errors="replace")


def live_mode(command: Command) -> ds.LiveMode:
    """The reader's live mode for a ``read`` command (absent or false: catch-up only)."""
    live = command.get("live", False)
    if live is True:
        return True
    if live == "long-poll":
        return "long-poll"
    if live == "sse":
        return "sse"
    if live is False or live is None:
        return False
    raise CommandError(f"unknown live mode {live!r}", code="INVALID_ARGUMENT")


class DynamicSource:
    """A dynamic header or parameter value: a callable the library calls per request.

    ``counter`` counts calls (1, 2, 3...), ``timestamp`` is the time in milliseconds and
    ``token`` is a fixed string replaced by setting the header again. :attr:`last` records
    the value most recently handed to the library, which the adapter reports as
    ``headersSent`` / ``paramsSent``.
    """

    def __init__(self, kind: str, token: str | None = None) -> None:
        if kind not in ("counter", "timestamp", "token"):
            raise CommandError(f"unknown dynamic value type {kind!r}", code="INVALID_ARGUMENT")
        self.kind = kind
        self.token = token or ""
        self.count = 0
        self.last: str | None = None

    def __call__(self) -> str:
        if self.kind == "counter":
            self.count += 1
            value = str(self.count)
        elif self.kind == "timestamp":
            value = str(time.time_ns() // 1_000_000)
        else:
            value = self.token
        self.last = value
        return value


# -- the adapter -----------------------------------------------------------------------


class Adapter:
    """Carries out the suite's commands against one :class:`durable_streams.Session`."""

    def __init__(self) -> None:
        self._session: ds.Session | None = None
        self._streams: dict[str, ds.Stream] = {}
        self._producers: dict[tuple[str, str, int], ds.IdempotentProducer] = {}
        self._dynamic_headers: dict[str, DynamicSource] = {}
        self._dynamic_params: dict[str, DynamicSource] = {}
        self._handlers: dict[str, Callable[[Command], Awaitable[Result]]] = {
            "init": self.init,
            "create": self.create,
            "connect": self.connect,
            "append": self.append,
            "read": self.read,
            "head": self.head,
            "delete": self.delete,
            "close": self.close,
            "idempotent-append": self.idempotent_append,
            "idempotent-append-batch": self.idempotent_append_batch,
            "idempotent-close": self.idempotent_close,
            "idempotent-detach": self.idempotent_detach,
            "set-dynamic-header": self.set_dynamic_header,
            "set-dynamic-param": self.set_dynamic_param,
            "clear-dynamic": self.clear_dynamic,
            "validate": self.validate,
            "benchmark": self.benchmark,
            "shutdown": self.shutdown,
        }

    # -- plumbing ---------------------------------------------------------------------

    @property
    def session(self) -> ds.Session:
        """The session created by ``init``."""
        if self._session is None:
            raise CommandError("no 'init' command received yet", code="INTERNAL_ERROR")
        return self._session

    async def handle(self, command: Command) -> Result:
        """Run one command and return its result (an error result if anything raised)."""
        command_type = str(command.get("type"))
        handler = self._handlers.get(command_type)
        try:
            if handler is None:
                raise CommandError(f"unknown command type {command_type!r}")
            return await handler(command)
        except Exception as exc:  # every failure becomes an error result
            if not isinstance(exc, ds.DurableStreamsError | CommandError):
                log.exception("%s failed unexpectedly", command_type)
            return error_result(command_type, exc)

    def stream(self, path: str) -> ds.Stream:
        """The handle for ``path``, kept so that it remembers the stream's content type."""
        handle = self._streams.get(path)
        if handle is None:
            handle = self._streams[path] = self.session.stream(path)
        return handle

    @contextlib.contextmanager
    def command_headers(self, command: Command) -> Iterator[None]:
        """Send the command's ``headers`` with every request made while the block runs.

        The session's header mapping is documented as mutable (changes apply to the next
        request); the command's headers are laid over it, replacing any header of the same
        name (compared case-insensitively), and the previous mapping is restored on exit.
        """
        extra = headers_of(command)
        if not extra:
            yield
            return
        headers = self.session.headers
        saved = dict(headers)
        names = {name.lower() for name in extra}
        headers.clear()
        headers.update({k: v for k, v in saved.items() if k.lower() not in names})
        headers.update(extra)
        try:
            yield
        finally:
            headers.clear()
            headers.update(saved)

    def start_dynamic(self) -> None:
        """Forget the dynamic values recorded by earlier commands."""
        for value in (*self._dynamic_headers.values(), *self._dynamic_params.values()):
            value.last = None

    def dynamic_sent(self, result: Result) -> Result:
        """Add ``headersSent`` / ``paramsSent``: the dynamic values this command used."""
        headers = {k: v.last for k, v in self._dynamic_headers.items() if v.last is not None}
        params = {k: v.last for k, v in self._dynamic_params.items() if v.last is not None}
        if headers:
            result["headersSent"] = headers
        if params:
            result["paramsSent"] = params
        return result

    async def aclose(self) -> None:
        """Detach every producer and close the session."""
        producers = list(self._producers.values())
        self._producers.clear()
        for producer in producers:
            with contextlib.suppress(Exception):
                await producer.aclose()
        if self._session is not None:
            await self._session.aclose()

    # -- lifecycle ----------------------------------------------------------------------

    async def init(self, command: Command) -> Result:
        """Create the session for the reference server and advertise the features."""
        await self.aclose()
        self._streams.clear()
        self._dynamic_headers.clear()
        self._dynamic_params.clear()
        self._session = ds.Session(field(command, "serverUrl"), retry=RETRY_POLICY)
        return {
            "type": "init",
            "success": True,
            "clientName": CLIENT_NAME,
            "clientVersion": ds.__version__,
            "features": dict(FEATURES),
        }

    async def shutdown(self, command: Command) -> Result:
        """Detach producers and close the session; the main loop then exits."""
        del command
        await self.aclose()
        return {"type": "shutdown", "success": True}

    # -- stream operations --------------------------------------------------------------

    async def create(self, command: Command) -> Result:
        """``create``: PUT, reporting 201 for a new stream and 200 for an identical one."""
        stream = self.stream(field(command, "path"))
        data = command.get("data")
        # Initial data is one message to the library (the suite sends none that is a JSON
        # array to a JSON stream, the one case where the wire form would mean several).
        with self.command_headers(command):
            created = await stream.create(
                content_type=command.get("contentType") or DEFAULT_CONTENT_TYPE,
                ttl=command.get("ttlSeconds"),
                expires_at=command.get("expiresAt"),
                closed=bool(command.get("closed", False)),
                data=None if data is None else str(data).encode(),
            )
        return {
            "type": "create",
            "success": True,
            "status": 201 if created.created else 200,
            "offset": created.offset,
        }

    async def connect(self, command: Command) -> Result:
        """``connect``: attach to an existing stream (a HEAD; missing is NOT_FOUND)."""
        stream = self.stream(field(command, "path"))
        with self.command_headers(command):
            info = await stream.head()
        return {"type": "connect", "success": True, "status": 200, "offset": info.offset}

    async def append(self, command: Command) -> Result:
        """``append``: one plain POST of the command's bytes, with an optional ``Stream-Seq``."""
        stream = self.stream(field(command, "path"))
        seq = command.get("seq")
        body = payload(command)
        self.start_dynamic()
        try:
            with self.command_headers(command):
                appended = await append_wire_body(
                    stream, body, seq=None if seq is None else _seq_text(seq)
                )
        except ds.InvalidArgumentError as exc:
            if exc.argument == "data" and not body:
                return empty_append_result(exc)
            raise
        return self.dynamic_sent(
            {"type": "append", "success": True, "status": 200, "offset": appended.offset}
        )

    async def head(self, command: Command) -> Result:
        """``head``: the stream's metadata."""
        stream = self.stream(field(command, "path"))
        with self.command_headers(command):
            info = await stream.head()
        result: Result = {
            "type": "head",
            "success": True,
            "status": 200,
            "offset": info.offset,
            "contentType": info.content_type,
            "streamClosed": info.closed,
        }
        if info.ttl is not None:
            result["ttlSeconds"] = info.ttl
        if info.expires_at is not None:
            result["expiresAt"] = info.expires_at
        return result

    async def delete(self, command: Command) -> Result:
        """``delete``: DELETE the stream and forget its handle."""
        path = field(command, "path")
        stream = self.stream(path)
        with self.command_headers(command):
            await stream.delete()
        self._streams.pop(path, None)
        return {"type": "delete", "success": True, "status": 200}

    async def close(self, command: Command) -> Result:
        """``close``: close the stream, atomically appending ``data`` when given."""
        stream = self.stream(field(command, "path"))
        data = command.get("data")
        with self.command_headers(command):
            if data is None:
                final_offset = await stream.close()
            else:
                final = str(data).encode()
                final_offset = (await append_wire_body(stream, final, close=True)).offset
        return {"type": "close", "success": True, "status": 200, "finalOffset": final_offset}

    # -- reading ------------------------------------------------------------------------

    async def read(self, command: Command) -> Result:
        """``read``: catch-up, long-poll, SSE or auto, bounded as the command asks.

        A catch-up read (``live`` absent or false) runs until the reader is caught up. A live
        read stops at the end of a closed stream, after ``maxChunks`` deliveries with data,
        at the first up-to-date delivery if ``waitForUpToDate``, or when ``timeoutMs`` runs
        out; reaching the time limit is not an error. Each delivery with data becomes one
        chunk. ``status`` is the reader's :attr:`~durable_streams.StreamReader.status`, the
        status of the latest response (``204`` when a long-poll ended without data).
        """
        stream = self.stream(field(command, "path"))
        live = live_mode(command)
        max_chunks = int(command.get("maxChunks") or DEFAULT_MAX_CHUNKS)
        wait_for_up_to_date = bool(command.get("waitForUpToDate", False))
        limit = None if live is False else _seconds(command.get("timeoutMs"))
        chunks: list[Result] = []
        self.start_dynamic()
        with self.command_headers(command):
            reader = stream.read(str(command.get("offset") or "-1"), live=live)
            async with reader:
                deadline = asyncio.timeout(limit)
                try:
                    async with deadline:
                        async for batch in _batches(reader):
                            if batch.items:
                                json_stream = is_json(stream.content_type)
                                text = chunk_text(batch.items, json_stream=json_stream)
                                chunks.append({"data": text, "offset": batch.offset})
                            if len(chunks) >= max_chunks or (
                                wait_for_up_to_date and batch.up_to_date
                            ):
                                break
                except TimeoutError:
                    # Only the read's own time limit ends a read quietly.
                    if not deadline.expired():
                        raise
        result: Result = {
            "type": "read",
            "success": True,
            "chunks": chunks,
            "offset": reader.offset,
            "upToDate": reader.up_to_date,
            "streamClosed": reader.stream_closed,
        }
        if reader.status is not None:
            # The latest response's status: 204 when a long-poll ended without data.
            result["status"] = reader.status
        if reader.cursor is not None:
            result["cursor"] = reader.cursor
        return self.dynamic_sent(result)

    # -- idempotent producers -----------------------------------------------------------

    def producer(self, command: Command) -> ds.IdempotentProducer:
        """The producer kept for (path, producerId, epoch), created on first use.

        Kept producers send one batch at a time with no linger, so each command's messages
        go out at once, and carry their sequence numbers from command to command.
        """
        path, producer_id = field(command, "path"), field(command, "producerId")
        epoch = int(command.get("epoch", 0))
        key = (path, producer_id, epoch)
        producer = self._producers.get(key)
        if producer is None:
            producer = self.stream(path).producer(
                producer_id,
                epoch=epoch,
                auto_claim=bool(command.get("autoClaim", False)),
                max_in_flight=1,
                linger=0.0,
            )
            self._producers[key] = producer
        return producer

    async def drop_producer(self, command: Command) -> None:
        """Detach and forget the producer kept for this command's key (after a failure)."""
        key = (field(command, "path"), field(command, "producerId"), int(command.get("epoch", 0)))
        producer = self._producers.pop(key, None)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.aclose()

    async def idempotent_append(self, command: Command) -> Result:
        """``idempotent-append``: one message through the kept producer, acknowledged."""
        producer = self.producer(command)
        data = field(command, "data").encode()
        try:
            with self.command_headers(command):
                ack = await (await producer.append(data))
        except ds.DurableStreamsError:
            await self.drop_producer(command)
            raise
        result: Result = {
            "type": "idempotent-append",
            "success": True,
            "status": 200,
            "duplicate": ack.duplicate,
            "producerSeq": ack.seq,
        }
        if ack.offset is not None:
            result["offset"] = ack.offset
        return result

    async def idempotent_append_batch(self, command: Command) -> Result:
        """``idempotent-append-batch``: all items through a fresh producer, then flush.

        With ``maxInFlight`` 1 (the default) the items are batched into as few requests as
        the producer's limits allow. With a higher ``maxInFlight`` every item is its own
        batch (``max_batch_items=1``), so that batches really are pipelined, which is what
        those tests exercise.
        """
        path, producer_id = field(command, "path"), field(command, "producerId")
        max_in_flight = int(command.get("maxInFlight") or 1)
        items = command.get("items")
        if not isinstance(items, list):
            raise CommandError("command field 'items' must be a list", code="INVALID_ARGUMENT")
        options: dict[str, Any] = {
            "epoch": int(command.get("epoch", 0)),
            "auto_claim": bool(command.get("autoClaim", False)),
            "max_in_flight": max_in_flight,
        }
        if max_in_flight > 1:
            options.update(max_batch_items=1, linger=0.0)
        with self.command_headers(command):
            async with self.stream(path).producer(producer_id, **options) as producer:
                receipts = [await producer.append(str(item).encode()) for item in items]
                await producer.flush()
            acks = [await receipt for receipt in receipts]
        result: Result = {"type": "idempotent-append-batch", "success": True, "status": 200}
        if acks:
            result["producerSeq"] = acks[-1].seq
        return result

    async def idempotent_close(self, command: Command) -> Result:
        """``idempotent-close``: close the stream through the kept producer.

        Repeating it with the same producer returns the producer's cached final offset.
        """
        producer = self.producer(command)
        data = command.get("data")
        try:
            with self.command_headers(command):
                if data is None:
                    final_offset = await producer.close_stream()
                else:
                    final_offset = await producer.close_stream(str(data).encode())
        except ds.DurableStreamsError:
            await self.drop_producer(command)
            raise
        return {
            "type": "idempotent-close",
            "success": True,
            "status": 200,
            "finalOffset": final_offset,
        }

    async def idempotent_detach(self, command: Command) -> Result:
        """``idempotent-detach``: flush and stop the kept producer without closing the stream."""
        key = (field(command, "path"), field(command, "producerId"), int(command.get("epoch", 0)))
        producer = self._producers.pop(key, None)
        if producer is not None:
            with self.command_headers(command):
                await producer.aclose()
        return {"type": "idempotent-detach", "success": True, "status": 200}

    # -- dynamic headers and parameters -------------------------------------------------

    async def set_dynamic_header(self, command: Command) -> Result:
        """``set-dynamic-header``: a header whose value the library computes per request."""
        name = field(command, "name")
        value = DynamicSource(field(command, "valueType"), command.get("initialValue"))
        for existing in [k for k in self.session.headers if k.lower() == name.lower()]:
            del self.session.headers[existing]
            self._dynamic_headers.pop(existing, None)
        self._dynamic_headers[name] = value
        self.session.headers[name] = value
        return {"type": "set-dynamic-header", "success": True}

    async def set_dynamic_param(self, command: Command) -> Result:
        """``set-dynamic-param``: a query parameter computed per request."""
        name = field(command, "name")
        value = DynamicSource(field(command, "valueType"))
        self._dynamic_params[name] = value
        self.session.params[name] = value
        return {"type": "set-dynamic-param", "success": True}

    async def clear_dynamic(self, command: Command) -> Result:
        """``clear-dynamic``: remove every dynamic header and parameter."""
        del command
        for name in self._dynamic_headers:
            self.session.headers.pop(name, None)
        for name in self._dynamic_params:
            self.session.params.pop(name, None)
        self._dynamic_headers.clear()
        self._dynamic_params.clear()
        return {"type": "clear-dynamic", "success": True}

    # -- validation ---------------------------------------------------------------------

    async def validate(self, command: Command) -> Result:
        """``validate``: construct the object with the given options; no network.

        A rejected value is the library's :class:`durable_streams.InvalidArgumentError`;
        :func:`error_result` puts the suite's name of the parameter in the message.
        """
        target = command.get("target")
        if not isinstance(target, dict):
            raise CommandError("command field 'target' must be an object", code="INVALID_ARGUMENT")
        kind = target.get("target")
        if kind == "retry-options":
            options: dict[str, Any] = {}
            if "maxRetries" in target:
                options["max_retries"] = target["maxRetries"]
            if "initialDelayMs" in target:
                options["initial_delay"] = target["initialDelayMs"] / 1000
            if "maxDelayMs" in target:
                options["max_delay"] = target["maxDelayMs"] / 1000
            if "multiplier" in target:
                options["multiplier"] = target["multiplier"]
            ds.RetryPolicy(**options)
        elif kind == "idempotent-producer":
            options = {}
            if "epoch" in target:
                options["epoch"] = target["epoch"]
            if "maxBatchBytes" in target:
                options["max_batch_bytes"] = target["maxBatchBytes"]
            if "maxBatchItems" in target:
                options["max_batch_items"] = target["maxBatchItems"]
            # Construction validates and does no I/O; the producer is never started.
            self.session.stream("/validate").producer(str(target.get("producerId", "")), **options)
        else:
            raise CommandError(f"unknown validation target {kind!r}")
        return {"type": "validate", "success": True}

    # -- benchmarks ---------------------------------------------------------------------

    async def benchmark(self, command: Command) -> Result:
        """``benchmark``: time one operation with :func:`time.perf_counter_ns`.

        Only the operation itself is timed: payloads are generated, handles prepared and
        content types learned before the clock starts, and the session is reused.
        """
        operation = command.get("operation")
        if not isinstance(operation, dict):
            raise CommandError("command field 'operation' must be an object")
        op = operation.get("op")
        prepare = {
            "append": self._bench_append,
            "read": self._bench_read,
            "roundtrip": self._bench_roundtrip,
            "create": self._bench_create,
            "throughput_append": self._bench_throughput_append,
            "throughput_read": self._bench_throughput_read,
        }.get(str(op))
        if prepare is None:
            raise CommandError(f"unknown benchmark operation {op!r}")
        bench = await prepare(operation)
        start = time.perf_counter_ns()
        metrics = await bench.run()
        duration_ns = time.perf_counter_ns() - start
        if bench.after is not None:
            bench.after(metrics)
        return {
            "type": "benchmark",
            "success": True,
            "iterationId": command.get("iterationId"),
            "durationNs": str(duration_ns),
            "metrics": metrics,
        }

    async def _bench_append(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        if stream.content_type is None:
            await stream.head()
        body = os.urandom(int(operation["size"]))

        async def run() -> Result:
            await stream.append(body)
            return {"bytesTransferred": len(body)}

        return Bench(run)

    async def _bench_read(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        offset = str(operation.get("offset") or "-1")

        async def run() -> Result:
            async with stream.read(offset, live=False) as reader:
                items = await reader.read_all()
            return {"bytesTransferred": sum(len(item) for item in items)}

        return Bench(run)

    async def _bench_roundtrip(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        content_type = str(operation.get("contentType") or DEFAULT_CONTENT_TYPE)
        live: ds.LiveMode = "sse" if operation.get("live") == "sse" else "long-poll"
        size = int(operation["size"])
        json_stream = is_json(content_type)
        # A JSON stream takes a JSON value: here a string of the requested encoded size.
        body = json.dumps("x" * max(size - 2, 0)).encode() if json_stream else os.urandom(size)

        async def first_delivery() -> int:
            async with stream.read("-1", live=live) as reader:
                async for batch in _batches(reader):
                    if batch.items:
                        return len(chunk_text(batch.items, json_stream=json_stream))
            return 0

        async def run() -> Result:
            await stream.create(content_type=content_type)
            reading = asyncio.create_task(first_delivery())
            try:
                await stream.append(body)
                received = await reading
            finally:
                reading.cancel()
            return {"bytesTransferred": len(body) + received}

        return Bench(run)

    async def _bench_create(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        content_type = str(operation.get("contentType") or DEFAULT_CONTENT_TYPE)

        async def run() -> Result:
            await stream.create(content_type=content_type)
            return {}

        return Bench(run)

    async def _bench_throughput_append(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        if stream.content_type is None:
            # The runner does not create this stream; an identical one may exist already.
            await stream.create(content_type=DEFAULT_CONTENT_TYPE)
        count, size = int(operation["count"]), int(operation["size"])
        concurrency = max(1, min(int(operation.get("concurrency") or 5), 1024))
        body = os.urandom(size)
        # A fresh producer id per iteration, so that every iteration stores new data instead
        # of being acknowledged as a duplicate of the previous one.
        producer = stream.producer(f"bench-{uuid.uuid4().hex}", max_in_flight=concurrency)
        await producer.start()

        async def run() -> Result:
            try:
                for _ in range(count):
                    await producer.append(body)
                await producer.flush()
            finally:
                await producer.aclose()
            stats = producer.statistics()
            if stats.duplicates:
                raise CommandError(
                    f"{stats.duplicates} batches were duplicates", code="INTERNAL_ERROR"
                )
            return {"bytesTransferred": stats.bytes_sent, "messagesProcessed": stats.messages_sent}

        return Bench(run)

    async def _bench_throughput_read(self, operation: Command) -> Bench:
        stream = self.stream(field(operation, "path"))
        messages: list[Any] = []

        async def run() -> Result:
            async with stream.read("-1", live=False) as reader:
                messages.extend(await reader.read_all())
            return {"messagesProcessed": len(messages)}

        def after(metrics: Result) -> None:
            # Sized after the clock stopped: re-encoding is not part of reading.
            metrics["bytesTransferred"] = sum(
                len(json.dumps(message, separators=(",", ":")).encode()) for message in messages
            )

        return Bench(run, after)


@dataclass(frozen=True, slots=True)
class Bench:
    """A prepared benchmark operation: ``run`` is timed, ``after`` adds metrics later."""

    run: Callable[[], Awaitable[Result]]
    after: Callable[[Result], None] | None = None


async def _batches(reader: ds.StreamReader) -> AsyncIterator[ds.Batch[Any]]:
    """The reader's batches, as a typed async iterator."""
    async for batch in reader.batches():
        yield batch


def _seconds(timeout_ms: object) -> float:
    """A ``timeoutMs`` value in seconds (absent: the reference adapters' 5 s)."""
    if timeout_ms is None:
        timeout_ms = DEFAULT_READ_TIMEOUT_MS
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
        raise CommandError("command field 'timeoutMs' must be a number", code="INVALID_ARGUMENT")
    return max(float(timeout_ms), 0.0) / 1000


def _seq_text(seq: object) -> str:
    """A ``seq`` number as the decimal ``Stream-Seq`` value."""
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)
    return str(seq)


# -- main loop --------------------------------------------------------------------------


def write_line(result: Result) -> None:
    """Write one result line to stdout (ASCII JSON, so no stray line separators)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


async def main() -> int:
    """Answer commands from stdin until ``shutdown`` or end of input."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    adapter = Adapter()
    try:
        while line := await stdin.readline():
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                if not isinstance(command, dict):
                    raise TypeError("a command must be a JSON object")
            except (ValueError, TypeError) as exc:
                write_line(
                    error_result(
                        "init", CommandError(f"bad command line: {exc}", code="PARSE_ERROR")
                    )
                )
                continue
            write_line(await adapter.handle(command))
            if command.get("type") == "shutdown":
                break
    finally:
        await adapter.aclose()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("CONFORMANCE_LOG_LEVEL", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(main()))
