"""StreamReader: catch-up, then long-poll or SSE, until end of stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    ParseError,
    ReaderConsumedError,
    TransportError,
    UsageError,
)
from ._protocol import headers as h
from ._protocol.errors import Op, error_for
from ._protocol.framing import (
    decode_base64_event,
    is_json,
    parse_json_body,
    parse_json_event,
)
from ._protocol.sse import SSEParser, parse_control
from ._transport import BodyStream, Response
from ._types import Batch

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["LiveMode", "StreamReader"]

log = logging.getLogger("durable_streams")

LiveMode: TypeAlias = bool | Literal["long-poll", "sse"]
_LIVE_MODES = (True, False, "long-poll", "sse")
_FORBIDDEN_IN_OFFSET = frozenset(",&=?/#% \t\r\n")

# An SSE connection that ends sooner than this without closing the stream counts as
# "short"; this many short ones in a row means something between us and the server
# (typically a buffering proxy) breaks SSE, and the reader falls back to long-poll.
SSE_SHORT_CONNECTION = 1.0
SSE_MAX_SHORT_CONNECTIONS = 3


def check_offset(offset: object, *, sentinels: bool = True) -> str:
    """Validate an offset given by a caller; offsets are opaque, but never contain these."""
    if not isinstance(offset, str) or not offset:
        raise InvalidArgumentError(
            f"offset must be a non-empty str, got {offset!r}", argument="offset"
        )
    if not sentinels and offset in ("-1", "now"):
        raise InvalidArgumentError(
            f"offset {offset!r} is a sentinel; pass an offset the server returned",
            argument="offset",
        )
    if any(c in _FORBIDDEN_IN_OFFSET or not c.isprintable() for c in offset):
        raise InvalidArgumentError(
            f"offset {offset!r} contains characters no server offset has", argument="offset"
        )
    return offset


class _BodyRead:
    """A byte-stream response body being delivered piece by piece."""

    __slots__ = ("delivered", "live", "skip", "stream")

    def __init__(self, stream: BodyStream, *, live: bool, skip: int) -> None:
        self.stream = stream
        self.live = live
        self.skip = skip
        self.delivered = skip

    def take(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` not delivered before (after a re-read of the same range)."""
        if self.skip:
            cut = min(self.skip, len(chunk))
            self.skip -= cut
            chunk = chunk[cut:]
        self.delivered += len(chunk)
        return chunk


class _SSEConnection:
    __slots__ = ("base64", "body", "opened", "parser", "pending")

    def __init__(self, body: BodyStream) -> None:
        self.body = body
        self.parser = SSEParser()
        self.base64 = body.headers.get(h.SSE_DATA_ENCODING, "").strip().lower() == "base64"
        self.pending: list[Any] = []
        self.opened = time.monotonic()


class StreamReader:
    """Reads a stream from an offset: an async iterator of messages, or of batches.

    Get one from :meth:`Stream.read`. Iterating it yields messages: parsed JSON values on
    ``application/json`` streams (each response's array flattened one level), and ``bytes``
    chunks on other streams. :meth:`batches` yields :class:`Batch` records instead, which
    carry the offset to checkpoint. A reader is consumed once.

    ``async with`` guarantees that an open connection is closed on exit; so does
    :meth:`aclose`, after which iteration ends. Cancelling a task that is waiting in the
    reader closes its connection but keeps its position: calling ``anext()`` on the same
    reader again (or starting ``read(reader.offset)``) carries on with nothing skipped or
    repeated. (A second ``async for`` over one reader is refused: a reader is consumed
    once.)

    Transient failures (network errors, 429, 5xx) are retried with backoff, forever by
    default while live (see :attr:`RetryPolicy.live_max_retries`). A malformed response
    raises :class:`ParseError` without moving the offset, so iterating again retries it.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        offset: str = "-1",
        live: LiveMode = True,
        cursor: str | None = None,
    ) -> None:
        # Set first: __del__ looks at them even when validation below fails.
        self._sse: _SSEConnection | None = None
        self._body: _BodyRead | None = None
        check_offset(offset)
        if not any(
            live is mode or (isinstance(mode, str) and live == mode) for mode in _LIVE_MODES
        ):
            raise InvalidArgumentError(
                f"live must be True, False, 'long-poll' or 'sse', got {live!r}",
                argument="live",
            )
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            raise InvalidArgumentError(
                f"cursor must be a non-empty str, got {cursor!r}", argument="cursor"
            )
        self._stream = stream
        self._offset = offset
        self._cursor = cursor
        self._live: LiveMode = live
        self._phase: Literal["catch-up", "long-poll", "sse", "done"] = "catch-up"
        if offset == "now" and live is not False:
            # Nothing to catch up on: a live request at "now" waits for new data at once.
            self._phase = self._live_phase()
        self._status: int | None = None
        self._up_to_date = False
        self._stream_closed = False
        self._reported_up_to_date = False
        self._consumed = False
        self._closed = False
        self._items: deque[Any] = deque()
        # Deliveries waiting to be taken, as (batch, partial): a partial batch is a piece of
        # a byte-stream body still arriving; its offset is the offset the body started at.
        self._ready: deque[tuple[Batch[Any], bool]] = deque()
        self._partial: list[Any] = []
        self._resume_skip = 0
        self._sse_short = 0
        self._failures = 0

    # -- state ------------------------------------------------------------------------

    @property
    def offset(self) -> str:
        """The offset after the latest batch received: a new reader resumes from here.

        Messages of that batch may still be waiting to be yielded; to checkpoint exactly,
        iterate :meth:`batches` and save each ``Batch.offset`` once it is handled.
        """
        return self._offset

    @property
    def cursor(self) -> str | None:
        """The latest cursor the server sent."""
        return self._cursor

    @property
    def up_to_date(self) -> bool:
        """Whether the last delivery reached the tail of the stream."""
        return self._up_to_date

    @property
    def stream_closed(self) -> bool:
        """Whether the end of a closed stream was reached (iteration is over)."""
        return self._stream_closed

    @property
    def status(self) -> int | None:
        """The HTTP status of the latest response (204: a long-poll ended with no data)."""
        return self._status

    @property
    def live(self) -> LiveMode:
        """The live mode asked for."""
        return self._live

    @property
    def mode(self) -> str:
        """The current phase: ``catch-up``, ``long-poll``, ``sse`` or ``done``."""
        return self._phase

    def __repr__(self) -> str:
        return f"<StreamReader {self._stream.url!r} offset={self._offset!r} phase={self._phase}>"

    # -- life cycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close any open connection and end iteration. Safe to call twice."""
        self._closed = True
        self._drop_sse()
        self._drop_body()

    async def __aenter__(self) -> StreamReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A reader abandoned mid-iteration (a ``break`` without ``async with``) must not
        # keep its SSE connection; close() is synchronous, so this is safe here.
        if self._sse is not None:
            self._sse.body.close()
        if self._body is not None:
            self._body.stream.close()

    # -- iteration --------------------------------------------------------------------

    def __aiter__(self) -> StreamReader:
        self._consume()
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            batch = await self._next_piece()
            if batch is None:
                raise StopAsyncIteration
            self._items.extend(batch.items)
        return self._items.popleft()

    def batches(self) -> _Batches:
        """Iterate over :class:`Batch` records instead of messages.

        A batch is yielded for every response (or SSE control span) that carried messages,
        on first reaching the tail (``up_to_date``, possibly with no items), and at the end
        of a closed stream (``closed``).
        """
        self._consume()
        return _Batches(self)

    async def read_all(self) -> list[Any]:
        """Every message until iteration ends (caught up if ``live=False``, else end of stream)."""
        self._consume()
        items: list[Any] = []
        while (batch := await self._next_piece()) is not None:
            items.extend(batch.items)
        return items

    async def body(self) -> bytes:
        """The bytes until iteration ends, joined. Not for JSON streams (use ``read_all``)."""
        items = await self.read_all()
        if self._stream.content_type is not None and is_json(self._stream.content_type):
            raise UsageError(
                "body() is for byte streams; a JSON stream's read_all() returns its messages"
            )
        return b"".join(items)

    async def text(self, encoding: str = "utf-8") -> str:
        """:meth:`body` decoded as text."""
        return (await self.body()).decode(encoding)

    def _consume(self) -> None:
        if self._consumed:
            raise ReaderConsumedError("this reader was already consumed; call read() again")
        self._consumed = True

    # -- the state machine ------------------------------------------------------------

    async def _next_batch(self) -> Batch[Any] | None:
        """The next whole batch: pieces of a streamed body are joined."""
        return await self._next_piece(whole=True)

    async def _next_piece(self, *, whole: bool = False) -> Batch[Any] | None:
        """The next delivery; without ``whole``, pieces of a byte body come as they arrive.

        Streaming the pieces keeps memory flat however large a response is: the
        reference server answers a catch-up read with everything up to the tail at once.
        """
        while True:
            while self._ready:
                batch, partial = self._ready.popleft()
                if partial:
                    if not whole:
                        return batch
                    self._partial.extend(batch.items)
                    continue
                if self._partial:
                    batch = Batch(
                        [b"".join(self._partial), *batch.items],
                        batch.offset,
                        batch.cursor,
                        batch.up_to_date,
                        batch.closed,
                    )
                    self._partial = []
                if self._worth_yielding(batch):
                    return batch
            if self._closed or self._phase == "done":
                return None
            if self._body is not None:
                await self._body_step(self._body)
            elif self._phase == "sse":
                await self._sse_step()
            else:
                await self._poll_step(live=self._phase == "long-poll")

    def _worth_yielding(self, batch: Batch[Any]) -> bool:
        first_up_to_date = batch.up_to_date and not self._reported_up_to_date
        self._reported_up_to_date = batch.up_to_date
        return bool(batch.items) or batch.closed or first_up_to_date

    def _advance(self, batch: Batch[Any]) -> Batch[Any]:
        if not self._advances(batch.offset) and (batch.items or batch.offset != self._offset):
            batch = self._behind(batch)
        self._offset = batch.offset
        if batch.cursor is not None:
            self._cursor = batch.cursor
        self._up_to_date = batch.up_to_date
        if batch.closed:
            self._stream_closed = True
            self._phase = "done"
            self._drop_sse()
        elif batch.up_to_date and self._phase == "catch-up":
            self._phase = self._live_phase()
        return batch

    def _live_phase(self) -> Literal["long-poll", "sse", "done"]:
        if self._live is False:
            return "done"
        return "sse" if self._live == "sse" else "long-poll"

    def _retries(self) -> int | None:
        retry = self._stream.session.retry
        return retry.max_retries if self._live is False else retry.live_max_retries

    # -- catch-up and long-poll -------------------------------------------------------

    async def _poll_step(self, *, live: bool) -> None:
        params = {h.PARAM_OFFSET: self._offset}
        if self._cursor is not None:
            params[h.PARAM_CURSOR] = self._cursor
        if live:
            params[h.PARAM_LIVE] = "long-poll"
        session, url = self._stream.session, self._stream.url
        result = await session._request(
            "GET", url, params=params, retries=self._retries(), live=live, stream=True
        )
        self._status = result.status
        if isinstance(result, Response):
            if result.status != 204:
                raise error_for(result.status, result.headers, op=Op.READ, url=url)
            if self._resume_skip:
                raise self._shrunk()
            self._deliver(self._batch(result.headers, []))
            return
        content_type = result.headers.get(h.CONTENT_TYPE)
        if content_type:
            self._stream.content_type = content_type
        if is_json(self._stream.content_type):
            try:
                body = await result.read_all()
            except TransportError as exc:
                # Nothing of this body was delivered: count the failure and poll again.
                await self._read_failed(exc)
                return
            finally:
                result.close()
            items = parse_json_body(body, offset=self._offset, url=url)
            batch = self._batch(result.headers, items)
            if items and not self._advances(batch.offset):
                await self._read_failed(self._not_advancing(batch.offset))
                return
            self._deliver(batch)
        else:
            # The count of bytes already delivered from this offset stays saved until
            # now, so a cancellation while the request was on its way loses nothing.
            self._body = _BodyRead(result, live=live, skip=self._resume_skip)
            self._resume_skip = 0

    async def _body_step(self, body: _BodyRead) -> None:
        """Deliver the next piece of a byte-stream body, or finish it."""
        try:
            chunk = await body.stream.read_chunk()
        except BaseException as exc:
            # Data at an offset never changes: the next read asks for the same offset and
            # skips what this body already delivered, so nothing is lost or repeated.
            self._drop_body()
            self._resume_skip = body.delivered
            if not isinstance(exc, TransportError):
                raise
            await self._read_failed(exc)
            return
        if chunk:
            chunk = body.take(chunk)
            if chunk:
                self._ready.append((Batch([chunk], self._offset), True))
            return
        self._drop_body()
        if body.skip:
            raise self._shrunk()
        batch = self._batch(body.stream.headers, [])
        if body.delivered and not self._advances(batch.offset):
            self._resume_skip = body.delivered
            await self._read_failed(self._not_advancing(batch.offset))
            return
        self._deliver(batch)

    def _behind(self, batch: Batch[Any]) -> Batch[Any]:
        """A delivery that ends at or before the reader's offset: it repeats old data.

        Offsets of one stream sort, so data ending there was delivered already, and a
        position behind the reader's would make it read that data again. (Seen on the
        file-backed reference server while its metadata lags its log.) Keep the reader's
        offset and drop the items; the flags and cursor still count.
        """
        log.warning(
            "%s: a response placed the reader at %s, behind %s; ignoring its position",
            self._stream.url,
            batch.offset,
            self._offset,
        )
        return Batch([], self._offset, batch.cursor, batch.up_to_date, batch.closed)

    def _advances(self, next_offset: str) -> bool:
        """Whether ``next_offset`` lies past the offset read (offsets of one stream sort)."""
        return self._offset in ("-1", "now") or next_offset > self._offset

    def _shrunk(self) -> ParseError:
        return ParseError(
            "a re-read of the same offset returned less data than before",
            offset=self._offset,
            url=self._stream.url,
        )

    def _not_advancing(self, next_offset: str) -> ParseError:
        # Seen on the file-backed reference server when a read races an append: the
        # body has the new data but the header still has the old tail. Delivering it
        # and reading on from that offset would repeat the data, so read it again.
        log.warning(
            "read of %s at %s returned data but Stream-Next-Offset %s; reading it again",
            self._stream.url,
            self._offset,
            next_offset,
        )
        return ParseError(
            f"response carried data but its Stream-Next-Offset {next_offset!r} does not "
            "advance past the offset read",
            offset=self._offset,
            url=self._stream.url,
        )

    def _batch(self, headers: Mapping[str, str], items: list[Any]) -> Batch[Any]:
        meta = h.read_meta(headers)
        if not meta.next_offset:
            raise ParseError(
                "read response has no Stream-Next-Offset", offset=self._offset, url=self._stream.url
            )
        return Batch(items, meta.next_offset, meta.cursor, meta.up_to_date, meta.closed)

    def _deliver(self, batch: Batch[Any]) -> None:
        self._failures = 0
        self._ready.append((self._advance(batch), False))

    async def _read_failed(self, exc: DurableStreamsError) -> None:
        """A live or catch-up read broke mid-body: count it, back off, or give up."""
        self._failures += 1
        retry = self._stream.session.retry
        limit = self._retries()
        if limit is not None and self._failures > limit:
            raise exc
        delay = retry.delay(self._failures - 1)
        log.debug("read from %s failed (%s); retrying in %.3fs", self._stream.url, exc, delay)
        await asyncio.sleep(delay)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.stream.close()

    # -- SSE --------------------------------------------------------------------------

    async def _sse_step(self) -> None:
        if self._sse is None:
            self._sse = await self._sse_open()
        connection = self._sse
        try:
            chunk = await connection.body.read_chunk()
            if not chunk:
                await self._sse_ended(connection)
                return
            self._sse_feed(connection, chunk)
        except asyncio.CancelledError:
            # Undelivered data is dropped with the connection; the next read resumes
            # from the last control event's offset, so nothing is lost or repeated.
            self._drop_sse()
            raise
        except TransportError as exc:
            self._drop_sse()
            await self._read_failed(exc)
            return
        except ParseError:
            self._drop_sse()
            raise
        self._failures = 0

    async def _sse_open(self) -> _SSEConnection:
        if self._stream.content_type is None:
            await self._stream._known_content_type()  # how to decode data events
        params = {h.PARAM_OFFSET: self._offset, h.PARAM_LIVE: "sse"}
        if self._cursor is not None:
            params[h.PARAM_CURSOR] = self._cursor
        session, url = self._stream.session, self._stream.url
        result = await session._request(
            "GET", url, params=params, retries=self._retries(), live=True, stream=True
        )
        self._status = result.status
        if isinstance(result, Response):
            raise error_for(result.status, result.headers, op=Op.READ, url=url)
        return _SSEConnection(result)

    def _sse_feed(self, connection: _SSEConnection, chunk: bytes) -> None:
        url = self._stream.url
        try:
            events = connection.parser.feed(chunk)
        except UnicodeDecodeError as exc:
            raise ParseError("SSE body is not UTF-8", offset=self._offset, url=url) from exc
        decode = self._sse_decoder(connection)
        for event in events:
            if event.type == "data":
                connection.pending.extend(decode(event.data))
            elif event.type == "control":
                control = parse_control(event.data, offset=self._offset, url=url)
                items, connection.pending = connection.pending, []
                batch = Batch(
                    items, control.next_offset, control.cursor, control.up_to_date, control.closed
                )
                self._ready.append((self._advance(batch), False))
                if control.closed:
                    return
            # Unknown event types are skipped: the protocol may grow new ones.

    def _sse_decoder(self, connection: _SSEConnection) -> Callable[[str], list[Any]]:
        offset, url = self._offset, self._stream.url
        # A byte payload that decodes to nothing is no item, as an empty body is none.
        if connection.base64:
            return lambda data: (
                [b] if (b := decode_base64_event(data, offset=offset, url=url)) else []
            )
        if is_json(self._stream.content_type):
            return lambda data: parse_json_event(data, offset=offset, url=url)
        return lambda data: [data.encode()] if data else []

    async def _sse_ended(self, connection: _SSEConnection) -> None:
        """The server ended the connection without closing the stream: reconnect."""
        lasted = time.monotonic() - connection.opened
        self._drop_sse()
        if lasted >= SSE_SHORT_CONNECTION:
            self._sse_short = 0
            return
        self._sse_short += 1
        if self._sse_short >= SSE_MAX_SHORT_CONNECTIONS:
            log.warning(
                "SSE connections to %s keep closing at once (a buffering proxy?); "
                "falling back to long-poll",
                self._stream.url,
            )
            self._phase = "long-poll"
            return
        await asyncio.sleep(self._stream.session.retry.delay(self._sse_short - 1))

    def _drop_sse(self) -> None:
        connection, self._sse = self._sse, None
        if connection is not None:
            connection.body.close()


class _Batches:
    """The batch iterator of one reader (an object, not a generator, so nothing leaks)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> Batch[Any]:
        batch = await self._reader._next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def aclose(self) -> None:
        """Close the reader."""
        await self._reader.aclose()
