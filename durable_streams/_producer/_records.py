"""What the producer hands out (acknowledgements, receipts, statistics) and its batches."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .._errors import ResourceClosedError

__all__ = ["Batch", "ProducerAck", "ProducerStatistics", "Receipt", "aborted"]


@dataclass(frozen=True, slots=True)
class ProducerAck:
    """The server's acknowledgement of the batch that carried a message.

    Attributes:
        offset: the stream's tail after the batch; None for a duplicate, which the server
            acknowledges without an offset.
        duplicate: the server had this batch already (a retry after a lost answer); it
            was stored exactly once.
        epoch: the producer epoch the batch was written under.
        seq: the batch's sequence number in that epoch.
    """

    offset: str | None
    duplicate: bool
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """A snapshot of a producer's counters (see :meth:`IdempotentProducer.statistics`)."""

    epoch: int
    next_seq: int
    messages_buffered: int
    bytes_buffered: int
    batches_in_flight: int
    batches_sent: int
    messages_sent: int
    bytes_sent: int
    duplicates: int
    retries: int
    last_offset: str | None


class Receipt:
    """Awaitable acknowledgement of one appended message; ``await`` gives a :class:`ProducerAck`.

    Awaiting is optional: failures also surface from the producer's next ``append``,
    ``flush`` or exit. Raises the batch's error if it failed. Cancelling a task that awaits
    a receipt does not cancel the batch.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[ProducerAck]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, ProducerAck]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the server has answered (or the batch failed)."""
        return self._future.done()

    def result(self) -> ProducerAck:
        """The acknowledgement; raises if the batch failed or is not yet answered."""
        return self._future.result()


class Batch:
    """Messages sent in one request, or the close (``close``, with its final message)."""

    __slots__ = (
        "body",
        "close",
        "count",
        "data_bytes",
        "epoch",
        "future",
        "parts",
        "receipt",
        "seq",
        "size",
    )

    def __init__(self, *, framing: int, close: bool = False, body: bytes = b"") -> None:
        self.parts: list[bytes] = []
        # The body's length if sent now: the messages plus, on JSON streams, "[", "]"
        # and the commas between them.
        self.size = framing
        self.data_bytes = 0
        self.count = 0
        self.future: asyncio.Future[ProducerAck] = asyncio.get_running_loop().create_future()
        self.epoch = 0
        self.seq = -1  # numbered when dispatched
        self.close = close
        self.body = body
        # One receipt serves every message of the batch: they share one acknowledgement.
        self.receipt = Receipt(self.future)

    def fail(self, error: BaseException) -> None:
        """Fail the batch's receipts (once; a settled batch stays as it is)."""
        if not self.future.done():
            self.future.set_exception(error)
            # Failures also surface through flush() and exit; unawaited receipts must
            # not log "exception was never retrieved".
            self.future.exception()


def aborted(*, sent: bool = False) -> ResourceClosedError:
    """The error of a batch the producer stopped for (cancellation, or a dropped producer)."""
    if sent:
        return ResourceClosedError(
            "the producer was stopped while this batch was in flight; "
            "the server may or may not have stored it"
        )
    return ResourceClosedError("the producer was stopped before this batch was sent")
