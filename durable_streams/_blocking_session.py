"""The blocking session and stream handle, fronting :class:`durable_streams.Session`."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from . import _producer, _reader, _session, _stream
from ._blocking import (
    LoopDict,
    LoopThread,
    Twin,
    forwards_rest_to,
    forwards_to,
    refuse_in_event_loop,
    twin,
)
from ._blocking_producer import IdempotentProducer
from ._blocking_reader import StreamReader
from ._config import Limits, RetryPolicy, Timeouts
from ._errors import UsageError
from ._types import AppendResult, CreateResult

__all__ = ["Session", "Stream"]


class Session(Twin[_session.Session]):
    """A blocking client for one Durable Streams server.

    Takes exactly the arguments of :class:`durable_streams.Session` (the async session it
    fronts) except ``client_session``: an ``aiohttp.ClientSession`` belongs to one event
    loop, and this session runs its own. Construction does no I/O and starts no thread;
    the first call that needs the network starts one background thread with an event
    loop (an anyio blocking portal), and :meth:`close` stops it. Use ``with
    Session(...) as session:`` or call :meth:`close`; a session dropped while its thread
    runs warns with ``ResourceWarning`` and is closed (at the latest at interpreter exit,
    which it never holds up for more than a few seconds).

    **Threads.** One session may be shared by any number of threads: every call runs as
    a task of its own on the session's one loop, so calls from different threads proceed
    concurrently, sharing its connection pool, headers, parameters and retry policy. A
    reader belongs to one thread at a time. Header and parameter functions run on the
    loop thread (a slow synchronous one holds up every thread's requests).

    **Where it refuses.** Every blocking method raises :class:`UsageError` when called
    from a thread that runs an event loop (an ``async def`` function, or a header
    function of this session): use the async API there.

    Raises:
        InvalidArgumentError: an argument is refused, as by the async session.
        UsageError: ``client_session`` was given.
    """

    @forwards_to(_session.Session.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("client_session") is not None:
            raise UsageError(
                "a blocking Session cannot borrow an aiohttp.ClientSession: that belongs to "
                "another event loop; use durable_streams.Session to share one"
            )
        self._async = _session.Session(*args, **kwargs)
        self._loop = LoopThread(self._async.aclose)
        self.headers = LoopDict(self._loop, self._async.headers)
        """Headers sent with every request; changes apply to the next request."""
        self.params = LoopDict(self._loop, self._async.params)
        """Query parameters sent with every request; changes apply to the next request."""

    # -- configuration ----------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        """The server's stream root."""
        return self._async.base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy; assigning a new one applies to operations started after."""
        return self._async.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._async.retry = policy

    @property
    def timeout(self) -> Timeouts:
        """The timeouts (read-only)."""
        return self._async.timeout

    @property
    def limits(self) -> Limits:
        """The limits on responses (read-only)."""
        return self._async.limits

    def statistics(self) -> _session.SessionStatistics:
        """A snapshot of this session's counters: HTTP requests sent and retries made."""
        return self._loop.peek(self._async.statistics)

    def url_for(self, url: str) -> str:
        """The absolute URL of a stream name (joined to ``base_url``) or absolute URL."""
        return self._async.url_for(url)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<durable_streams.sync.Session base_url={self.base_url!r} {state}>"

    # -- life cycle -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._loop.closed

    def close(self) -> None:
        """Close what this session handed out, its connection pool, and its thread.

        Safe to call twice. Readers still open are closed; producers still open are
        closed too (sending what they buffered). Calls still waiting in other threads
        raise :class:`ResourceClosedError`. Afterwards no thread, task or connection of
        this session is left.

        Raises:
            DurableStreamsError: a producer closed here failed to send what it held (the
                rest is closed all the same).
        """
        refuse_in_event_loop()
        self._loop.close()

    def __enter__(self) -> Session:
        refuse_in_event_loop()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Interrupted (Ctrl-C): producers still open stop at once rather than drain.
        abort = exc_type is not None and not issubclass(exc_type, Exception)
        self._loop.close(abort=abort)

    def __del__(self) -> None:
        loop: LoopThread | None = getattr(self, "_loop", None)
        if loop is None or not loop.started:
            return
        warnings.warn(
            "durable_streams.sync.Session was never closed; use 'with' or close()",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )
        loop.abandon()

    # -- handles --------------------------------------------------------------------

    @forwards_to(_session.Session.stream)
    def stream(self, *args: Any, **kwargs: Any) -> Stream:
        """A handle on the stream named ``url`` under ``base_url`` (or at an absolute URL).

        No I/O, as :meth:`durable_streams.Session.stream`.
        """
        return Stream(self, self._async.stream(*args, **kwargs))


class Stream(Twin[_stream.Stream]):
    """A handle on the stream at one URL; get one from :meth:`Session.stream`.

    Every method is the blocking form of the :class:`durable_streams.Stream` method of
    the same name, with its arguments, results and errors. A handle holds no resources.
    """

    def __init__(self, session: Session, stream: _stream.Stream) -> None:
        self._loop: LoopThread = session._loop
        self._async = stream
        self.session = session
        """The session the handle sends through (a :class:`Session`)."""

    @property
    def url(self) -> str:
        """The stream's absolute URL."""
        return self._async.url

    @property
    def content_type(self) -> str | None:
        """The stream's content type, once known (from create, head or a read)."""
        return self._async.content_type

    @content_type.setter
    def content_type(self, value: str | None) -> None:
        self._async.content_type = value

    def __repr__(self) -> str:
        return f"<durable_streams.sync.Stream {self.url!r} content_type={self.content_type!r}>"

    create = twin(_stream.Stream.create)
    """Blocking :meth:`durable_streams.Stream.create`."""
    head = twin(_stream.Stream.head)
    """Blocking :meth:`durable_streams.Stream.head`."""
    exists = twin(_stream.Stream.exists)
    """Blocking :meth:`durable_streams.Stream.exists`."""
    resolve_content_type = twin(_stream.Stream.resolve_content_type)
    """Blocking :meth:`durable_streams.Stream.resolve_content_type`."""
    delete = twin(_stream.Stream.delete)
    """Blocking :meth:`durable_streams.Stream.delete`."""
    append = twin(_stream.Stream.append)
    """Blocking :meth:`durable_streams.Stream.append`."""
    close = twin(_stream.Stream.close)
    """Blocking :meth:`durable_streams.Stream.close`."""
    read_all = twin(_stream.Stream.read_all)
    """Blocking :meth:`durable_streams.Stream.read_all`."""

    @forwards_rest_to(_stream.Stream.fork)
    def fork(
        self, source: str | Stream | _stream.Stream, *args: Any, **kwargs: Any
    ) -> CreateResult:
        """Create this stream as a fork of ``source``, as :meth:`durable_streams.Stream.fork`.

        ``source`` may also be a blocking :class:`Stream`.
        """
        origin = source._async if isinstance(source, Stream) else source
        return self._loop.run(lambda: self._async.fork(origin, *args, **kwargs))

    @forwards_rest_to(_stream.Stream.append_stream)
    def append_stream(self, chunks: Iterable[bytes], *args: Any, **kwargs: Any) -> AppendResult:
        """Append the concatenation of ``chunks`` (bytes) as one chunked request body.

        As :meth:`durable_streams.Stream.append_stream`, but ``chunks`` is a plain
        iterable (a generator, or ``iter(lambda: file.read(65536), b"")``). It is pulled
        in a worker thread of the session's loop, one chunk at a time, so a slow source
        holds up nothing else. Never retried.
        """
        source = _Chunks(iter(chunks))
        return self._loop.run(lambda: self._async.append_stream(source, *args, **kwargs))

    @forwards_to(_stream.Stream.read)
    def read(self, *args: Any, **kwargs: Any) -> StreamReader:
        """A reader from ``offset``, as :meth:`durable_streams.Stream.read`: no I/O yet.

        Iterate it for messages (``for message in stream.read(): ...``), or use
        :meth:`StreamReader.batches`, :meth:`StreamReader.read_all`,
        :meth:`StreamReader.body` or :meth:`StreamReader.text`.
        """

        def make() -> _reader.StreamReader:
            reader = self._async.read(*args, **kwargs)
            self._loop.track(reader)
            return reader

        return StreamReader(self, self._loop.call(make))

    @forwards_to(_stream.Stream.producer)
    def producer(self, *args: Any, **kwargs: Any) -> IdempotentProducer:
        """An idempotent producer writing to this stream; see :class:`IdempotentProducer`.

        No I/O: it starts on ``with`` (or its first append). The options are those of
        :meth:`durable_streams.Stream.producer`.
        """

        def make() -> _producer.IdempotentProducer:
            producer = self._async.producer(*args, **kwargs)
            self._loop.track(producer)
            return producer

        return IdempotentProducer(self, self._loop.call(make))


class _Chunks:
    """An async iterator over a blocking one, pulled in a worker thread of the loop."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        # The loop's default executor, not anyio's worker threads: the loop joins its
        # threads when it stops, so none outlives the session's close().
        loop = asyncio.get_running_loop()
        chunk = await loop.run_in_executor(None, next, self._chunks, None)
        if chunk is None:
            raise StopAsyncIteration
        return chunk
