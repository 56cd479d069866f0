"""The blocking producer and its receipts, fronting :class:`durable_streams.IdempotentProducer`."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ._blocking import LoopThread, Twin, forwards_to, twin
from ._producer import IdempotentProducer as _AsyncProducer
from ._producer import ProducerAck, ProducerStatistics
from ._producer import Receipt as _AsyncReceipt

if TYPE_CHECKING:
    from ._blocking_session import Stream

__all__ = ["IdempotentProducer", "Receipt"]


class Receipt:
    """The acknowledgement of one appended message, to wait for with :meth:`result`.

    Waiting is optional, as with the async receipt: a failure also surfaces from the
    producer's next ``append``, ``flush`` and close.
    """

    __slots__ = ("_loop", "_receipt")

    def __init__(self, loop: LoopThread, receipt: _AsyncReceipt) -> None:
        self._loop = loop
        self._receipt = receipt

    def done(self) -> bool:
        """Whether the server has answered (or the batch failed). Never waits."""
        return self._receipt.done()

    def result(self, timeout: float | None = None) -> ProducerAck:
        """Wait (at most ``timeout`` seconds) for the server's acknowledgement.

        Raises:
            TimeoutError: no answer within ``timeout``; the batch is not affected.
            DurableStreamsError: the batch failed (the same error the producer raises).
        """
        if self._receipt.done():
            return self._receipt.result()
        receipt = self._receipt
        return self._loop.run(lambda: _wait(receipt, timeout))

    def __repr__(self) -> str:
        return f"<durable_streams.sync.Receipt {'done' if self.done() else 'pending'}>"


async def _wait(receipt: _AsyncReceipt, timeout: float | None) -> ProducerAck:
    with anyio.fail_after(timeout):
        return await receipt


class IdempotentProducer(Twin[_AsyncProducer]):
    """Writes messages to one stream exactly once, in order, in pipelined batches.

    Get one from :meth:`Stream.producer` and use it as a context manager::

        with stream.producer("billing-1") as producer:
            for event in events:
                producer.append(event)

    It fronts a :class:`durable_streams.IdempotentProducer`, whose documentation holds
    (batching, retries, fencing, errors). Its sender task runs on the session's loop
    thread, so batches go out while the calling thread does other work. Several threads
    may append through one producer; their messages are ordered as they reach the loop.

    Leaving the ``with`` block sends what is buffered and waits for it; leaving it with
    ``KeyboardInterrupt`` stops at once (unsent messages fail). A producer still open
    when its session closes is closed with it.
    """

    def __init__(self, stream: Stream, producer: _AsyncProducer) -> None:
        self._loop: LoopThread = stream._loop
        self._async = producer
        self.stream = stream
        """The stream written to (a :class:`Stream`)."""

    @property
    def producer_id(self) -> str:
        """The producer's id, sent with every batch."""
        return self._async.producer_id

    @property
    def auto_claim(self) -> bool:
        """Whether a stale epoch is taken over."""
        return self._async.auto_claim

    @property
    def epoch(self) -> int:
        """The current epoch (it changes after an auto-claim or :meth:`restart`)."""
        return self._loop.peek(lambda: self._async.epoch)

    def statistics(self) -> ProducerStatistics:
        """A snapshot of the producer's counters; never waits for the network."""
        return self._loop.peek(self._async.statistics)

    def __repr__(self) -> str:
        return f"<durable_streams.sync.IdempotentProducer {self._loop.peek(self._async.__repr__)}>"

    # -- life cycle -----------------------------------------------------------------

    start = twin(_AsyncProducer.start)
    """Blocking :meth:`durable_streams.IdempotentProducer.start`."""

    def close(self) -> None:
        """Send everything buffered, wait for the answers, and stop the sender task.

        Releases the producer; the stream stays open (see :meth:`close_stream`). Safe to
        call twice, and after the session closed.

        Raises:
            DurableStreamsError: the first failure of any batch.
        """
        if not self._loop.closed:
            self._loop.run(self._async.aclose)

    def __enter__(self) -> IdempotentProducer:
        self._loop.run(self._async.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop.closed:
            return
        self._loop.run(lambda: self._async.__aexit__(exc_type, exc, tb))

    # -- writing --------------------------------------------------------------------

    @forwards_to(_AsyncProducer.append)
    def append(self, *args: Any, **kwargs: Any) -> Receipt:
        """Buffer one message, as :meth:`durable_streams.IdempotentProducer.append`.

        Waits only while the buffer is full. Returns a :class:`Receipt`.
        """
        receipt = self._loop.run(lambda: self._async.append(*args, **kwargs))
        return Receipt(self._loop, receipt)

    @forwards_to(_AsyncProducer.append_nowait)
    def append_nowait(self, *args: Any, **kwargs: Any) -> Receipt:
        """Buffer one message without waiting for room, as the async ``append_nowait``.

        Raises:
            BufferFullError: the buffer is full; nothing was buffered.
            UsageError: the producer was not started (``with``, :meth:`start` or one
                :meth:`append`).
        """
        receipt = self._loop.call(lambda: self._async.append_nowait(*args, **kwargs))
        return Receipt(self._loop, receipt)

    @forwards_to(_AsyncProducer.extend)
    def extend(self, *args: Any, **kwargs: Any) -> Receipt | None:
        """Buffer many messages in order, as :meth:`durable_streams.IdempotentProducer.extend`.

        Waits only while the buffer is full. Returns the :class:`Receipt` of the last
        message, or None if there was none. (The iterable is consumed on the session's
        loop thread.)
        """
        receipt = self._loop.run(lambda: self._async.extend(*args, **kwargs))
        return None if receipt is None else Receipt(self._loop, receipt)

    flush = twin(_AsyncProducer.flush)
    """Blocking :meth:`durable_streams.IdempotentProducer.flush`."""
    close_stream = twin(_AsyncProducer.close_stream)
    """Blocking :meth:`durable_streams.IdempotentProducer.close_stream`."""
    restart = twin(_AsyncProducer.restart)
    """Blocking :meth:`durable_streams.IdempotentProducer.restart`."""
