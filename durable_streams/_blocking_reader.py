"""The blocking reader: a plain iterator over a :class:`durable_streams.StreamReader`."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from . import _reader
from ._blocking import LoopThread, Twin, twin
from ._types import Batch

if TYPE_CHECKING:
    from ._blocking_session import Stream

__all__ = ["Batches", "StreamReader"]

_END: Final = object()


async def _next(iterator: Any) -> Any:
    """The iterator's next item, or :data:`_END` (StopAsyncIteration is no task outcome)."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


class StreamReader(Twin[_reader.StreamReader]):
    """Reads a stream from an offset: an iterator of messages, or (:meth:`batches`) batches.

    Get one from :meth:`Stream.read`. It fronts a :class:`durable_streams.StreamReader`,
    whose documentation holds: the same messages, the same positions, the same retries
    and errors, and the styles mix the same way. Each message handed out is one call to
    the loop thread; nothing is read ahead of what was handed out, so :attr:`position`
    is exact. For many small messages, :meth:`batches` is cheaper.

    Use it in a ``with`` block (or call :meth:`close`) to close a live connection
    promptly; a reader dropped mid-iteration closes it too, when it is collected.
    ``KeyboardInterrupt`` (Ctrl-C) while it waits closes its connection and keeps its
    position: iterating again carries on with nothing skipped or repeated.

    One reader belongs to one thread at a time (the session it came from may be shared).
    """

    def __init__(self, stream: Stream, reader: _reader.StreamReader) -> None:
        self._loop: LoopThread = stream._loop
        self._async = reader
        self.stream = stream
        """The stream read (a :class:`Stream`)."""

    # -- state (read on the loop, so each is consistent) --------------------------------

    @property
    def position(self) -> str:
        """Where the reader stands after the last message it handed out; see the async reader."""
        return self._loop.peek(lambda: self._async.position)

    @property
    def offset(self) -> str:
        """The server offset at or before :attr:`position`."""
        return self._loop.peek(lambda: self._async.offset)

    @property
    def cursor(self) -> str | None:
        """The latest cursor the server sent."""
        return self._loop.peek(lambda: self._async.cursor)

    @property
    def up_to_date(self) -> bool:
        """Whether the latest answer received reached the tail of the stream."""
        return self._loop.peek(lambda: self._async.up_to_date)

    @property
    def stream_closed(self) -> bool:
        """Whether the end of a closed stream was received."""
        return self._loop.peek(lambda: self._async.stream_closed)

    @property
    def status(self) -> int | None:
        """The HTTP status of the latest response."""
        return self._loop.peek(lambda: self._async.status)

    @property
    def live(self) -> _reader.LiveMode:
        """The live mode asked for."""
        return self._async.live

    @property
    def mode(self) -> str:
        """The current phase: ``catch-up``, ``long-poll``, ``sse`` or ``done``."""
        return self._loop.peek(lambda: self._async.mode)

    def __repr__(self) -> str:
        return f"<durable_streams.sync.StreamReader position={self.position!r} mode={self.mode}>"

    # -- iteration ------------------------------------------------------------------

    def __iter__(self) -> StreamReader:
        self._loop.call(self._async.__aiter__)
        return self

    def __next__(self) -> Any:
        item = self._loop.run(lambda: _next(self._async))
        if item is _END:
            raise StopIteration
        return item

    def batches(self) -> Batches:
        """Iterate over :class:`durable_streams.Batch` records instead of messages.

        As :meth:`durable_streams.StreamReader.batches`: one batch per response (or SSE
        control span), on first reaching the tail, and at the end of a closed stream.
        """
        return Batches(self, self._loop.call(self._async.batches))

    read_all = twin(_reader.StreamReader.read_all)
    body = twin(_reader.StreamReader.body)
    text = twin(_reader.StreamReader.text)

    # -- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close any open connection. Safe to call twice, and after the session closed.

        Afterwards every method raises :class:`ResourceClosedError`; the properties
        (:attr:`position` among them) still answer.
        """
        if not self._loop.closed:
            self._loop.run(self._async.aclose)

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # The async reader's finalizer closes its connection: on the loop that owns it.
        reader = getattr(self, "_async", None)
        if reader is not None:
            self._loop.release(reader)


class Batches:
    """The batch iterator of one :class:`StreamReader` (see :meth:`StreamReader.batches`)."""

    __slots__ = ("_batches", "_reader")

    def __init__(self, reader: StreamReader, batches: Any) -> None:
        self._reader = reader
        self._batches = batches

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Batch[Any]:
        batch = self._reader._loop.run(lambda: _next(self._batches))
        if batch is _END:
            raise StopIteration
        assert isinstance(batch, Batch)
        return batch

    def close(self) -> None:
        """Close the reader."""
        self._reader.close()

    def __enter__(self) -> Batches:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
