"""The blocking reader: a plain iterator over a :class:`durable_streams.StreamReader`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from . import _reader
from ._blocking import LoopThread, Twin, forwards_to
from ._errors import UsageError
from ._types import Batch

if TYPE_CHECKING:
    from ._blocking_session import Stream

__all__ = ["Batches", "StreamReader"]

_END: Final = object()


@dataclass(frozen=True, slots=True)
class _Taken:
    """What one reading call took, and where the reader stood before it."""

    value: Any
    position: str
    offset: str
    style: str  # the call that took it: "next()", "batches()", "read_all()", "body()"...


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
    position: iterating again carries on with nothing skipped or repeated. If a message
    arrived in the very instant of the interrupt, the reader holds it: :attr:`position`
    does not count it, and the next call of the same style hands it out first.

    One reader belongs to one thread at a time (the session it came from may be shared).
    """

    def __init__(self, stream: Stream, reader: _reader.StreamReader) -> None:
        self._loop: LoopThread = stream._loop
        self._async = reader
        self._held: _Taken | None = None  # taken by a call that Ctrl-C interrupted
        self.stream = stream
        """The stream read (a :class:`Stream`)."""

    # -- state (read on the loop, so each is consistent) --------------------------------

    @property
    def position(self) -> str:
        """Where the reader stands after the last message it handed out; see the async reader."""
        held = self._held
        return held.position if held else self._loop.peek(lambda: self._async.position)

    @property
    def offset(self) -> str:
        """The server offset at or before :attr:`position`."""
        held = self._held
        return held.offset if held else self._loop.peek(lambda: self._async.offset)

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
        item = self._take("next()", lambda: _next(self._async))
        if item is _END:
            raise StopIteration
        return item

    def batches(self) -> Batches:
        """Iterate over :class:`durable_streams.Batch` records instead of messages.

        As :meth:`durable_streams.StreamReader.batches`: one batch per response (or SSE
        control span), on first reaching the tail, and at the end of a closed stream.
        """
        return Batches(self, self._loop.call(self._async.batches))

    def read_all(self) -> list[Any]:
        """Every message until the end, as :meth:`durable_streams.StreamReader.read_all`."""
        items: list[Any] = self._take("read_all()", self._async.read_all)
        return items

    def body(self) -> bytes:
        """The bytes until the end, as :meth:`durable_streams.StreamReader.body`.

        Raises:
            UsageError: the stream is a JSON stream (use :meth:`read_all`).
        """
        data: bytes = self._take("body()", self._async.body)
        return data

    @forwards_to(_reader.StreamReader.text)
    def text(self, *args: Any, **kwargs: Any) -> str:
        """:meth:`body` decoded as text (UTF-8 unless ``encoding`` says otherwise)."""
        text: str = self._take("text()", lambda: self._async.text(*args, **kwargs))
        return text

    def _take(self, style: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """The outcome of one reading call; a value held since an interrupt comes first."""
        held = self._held
        if held is not None:
            if held.style != style:
                raise UsageError(
                    f"Ctrl-C interrupted this reader's {held.style} just as it took data; "
                    f"take that with {held.style} before reading another way"
                )
            self._held = None
            return held.value
        reader = self._async

        async def take() -> _Taken:
            position, offset = reader.position, reader.offset
            return _Taken(await make(), position, offset, style)

        return self._loop.run(take, keep=self._hold).value

    def _hold(self, taken: _Taken) -> None:
        if taken.value is not _END:
            self._held = taken

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
        batch = self._reader._take("batches()", lambda: _next(self._batches))
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
