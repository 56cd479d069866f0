"""The accumulator: buffers encoded messages into batches, bounded in bytes. No I/O.

It owns the buffer (the open batch and the sealed ones waiting to be sent), decides when a
batch is ready (full, lingered long enough, or wanted by a flush) and applies
backpressure. The sender takes ready batches from :meth:`Accumulator.next_batch` and
settles each one when it is answered, which gives its room back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .._errors import InvalidArgumentError
from .._protocol.framing import (
    DEFAULT_CONTENT_TYPE,
    GroupEncoder,
    encode_append,
    frame_messages,
    group_encoder,
    is_json,
    message_encoder,
)
from ._options import ProducerConfig
from ._records import Batch, Receipt

__all__ = ["Accumulator"]


class Accumulator:
    """Batches of encoded messages, from :meth:`add` to :meth:`settle`.

    Args:
        config: the batch limits (``max_batch_bytes``, ``max_batch_items``, ``linger``)
            and the buffer's bound (``max_buffer_bytes``).
    """

    __slots__ = (
        "_content_type",
        "_ended",
        "_flushes",
        "_framing",
        "_linger",
        "_max_batch_bytes",
        "_max_batch_items",
        "_max_buffer_bytes",
        "_open",
        "_ready",
        "_room",
        "_unfinished",
        "_wakeup",
        "buffered_bytes",
        "buffered_messages",
        "encode",
        "encode_group",
    )

    def __init__(self, config: ProducerConfig) -> None:
        self._linger = config.linger
        # The limits read on every add, as plain attributes (the hot path).
        self._max_batch_bytes = config.max_batch_bytes
        self._max_batch_items = config.max_batch_items
        self._max_buffer_bytes = config.max_buffer_bytes
        self._content_type = DEFAULT_CONTENT_TYPE
        self.encode: Callable[[object], bytes] = message_encoder(DEFAULT_CONTENT_TYPE)
        """Encode one message for this stream (:class:`InvalidArgumentError` if it cannot)."""
        self.encode_group: GroupEncoder = group_encoder(DEFAULT_CONTENT_TYPE)
        """Encode consecutive messages together (see ``framing.group_encoder``)."""
        self._framing = 0
        self._open: Batch | None = None
        self._ready: deque[Batch] = deque()
        # Batches made and not yet settled: open, ready, waiting for a slot or in flight.
        self._unfinished: set[Batch] = set()
        self.buffered_bytes = 0
        self.buffered_messages = 0
        self._flushes = 0  # callers waiting for batches: send without linger
        self._ended = False  # no more batches will come: next_batch() ends when drained
        # asyncio primitives bind to a loop only when first awaited, so creating them here
        # does no I/O and needs no running loop.
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()

    def begin(self, content_type: str) -> None:
        """Frame for a stream of ``content_type`` (called once, before the first message)."""
        self._content_type = content_type
        self.encode = message_encoder(content_type)
        self.encode_group = group_encoder(content_type)
        # A JSON body is "[" + the messages joined by "," + "]".
        self._framing = 2 if is_json(content_type) else 0

    # -- adding ---------------------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` encoded bytes fits in the buffer now."""
        maximum = self._max_buffer_bytes
        if size > maximum:
            raise InvalidArgumentError(
                f"data of {size} bytes exceeds max_buffer_bytes ({maximum})", argument="data"
            )
        return self.buffered_bytes + size <= maximum

    async def wait_for_room(self) -> None:
        """Wait until room is given back (a batch settled) or waiters must look again."""
        self._room.clear()
        await self._room.wait()

    def wake_waiters(self) -> None:
        """Make appenders waiting for room check again (the producer failed or closed)."""
        self._room.set()

    def add(self, data: bytes) -> Receipt:
        """Buffer one encoded message (it must fit); the receipt of its batch."""
        return self.add_group(data, 1, len(data))

    def holds_group(self, size: int, count: int) -> bool:
        """Whether one batch (and the buffer) may hold a group of ``count`` messages whole."""
        limit = self._max_batch_items
        return (
            size + self._framing <= self._max_batch_bytes
            and size <= self._max_buffer_bytes
            and (limit is None or count <= limit)
        )

    def add_group(self, joined: bytes, count: int, size: int) -> Receipt:
        """Buffer ``count`` encoded messages joined as in a body, in one batch.

        They must fit (:meth:`holds_group`, :meth:`fits`). ``size`` is the bytes of the
        messages themselves, without the commas between them.
        """
        limit = self._max_batch_items
        batch = self._open
        length = len(joined)
        # On JSON streams every message after the first adds a comma.
        added = length + 1 if self._framing and batch is not None and batch.count else length
        if batch is not None and (
            batch.size + added > self._max_batch_bytes
            or (limit is not None and batch.count + count > limit)
        ):
            self.seal()
            batch = None
        if batch is None:
            batch = self._open = self._new_batch()
            added = length
            self._wakeup.set()
        batch.parts.append(joined)
        batch.size += added
        batch.data_bytes += size
        batch.count += count
        self.buffered_bytes += size
        self.buffered_messages += count
        return batch.receipt

    def close_body(self, final: object) -> bytes:
        """The body of the close: empty, or ``final`` as one message (validated)."""
        return encode_append(final, self._content_type)

    def add_close(self, body: bytes) -> Batch:
        """Queue the close after everything buffered; nothing may be added after it."""
        self.seal()
        batch = self._new_batch(close=True, body=body)
        self._ready.append(batch)
        self._wakeup.set()
        return batch

    def _new_batch(self, *, close: bool = False, body: bytes = b"") -> Batch:
        batch = Batch(framing=self._framing, close=close, body=body)
        self._unfinished.add(batch)
        return batch

    def seal(self) -> None:
        """Close the open batch to new messages: it is ready to be sent."""
        if self._open is not None:
            self._ready.append(self._open)
            self._open = None
            self._wakeup.set()

    def frame(self, batch: Batch) -> bytes:
        """The request body of a batch of messages (its parts are let go)."""
        body = frame_messages(batch.parts, json_stream=self._framing > 0)
        batch.parts = []
        return body

    # -- taking ---------------------------------------------------------------------------

    async def next_batch(self) -> Batch | None:
        """The next batch to send, once ready; None after :meth:`end`, once all are taken."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._open is not None and (self._ended or self._flushes):
                self.seal()
                continue
            if self._ended:
                return None
            self._wakeup.clear()
            if self._open is None:
                await self._wakeup.wait()
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._linger)
            except TimeoutError:
                self.seal()

    def end(self) -> None:
        """No more batches: what is buffered is sent without linger, then next_batch() ends."""
        self._ended = True
        self._wakeup.set()

    def pending(self) -> list[Batch]:
        """The batches not yet settled (a snapshot)."""
        return list(self._unfinished)

    async def wait_settled(self, batches: list[Batch]) -> None:
        """Wait until these batches are settled, sending them without linger meanwhile."""
        if not batches:
            return
        self._flushes += 1
        self._wakeup.set()
        try:
            await asyncio.wait([batch.future for batch in batches])
        finally:
            self._flushes -= 1

    # -- settling -------------------------------------------------------------------------

    def settle(self, batch: Batch) -> None:
        """A batch was answered (or failed): give its room back."""
        if batch in self._unfinished:
            self._unfinished.discard(batch)
            self.buffered_messages -= batch.count
            self.buffered_bytes -= batch.data_bytes
            self._room.set()

    def fail(self, batch: Batch, error: BaseException) -> None:
        """Settle a batch as failed: its receipts raise ``error``."""
        self.settle(batch)
        batch.fail(error)

    def fail_unsent(self, error: BaseException) -> None:
        """Fail every batch not yet taken by the sender."""
        batches = [*self._ready, *([self._open] if self._open is not None else [])]
        self._ready.clear()
        self._open = None
        for batch in batches:
            self.fail(batch, error)

    def fail_all(self, error: BaseException) -> None:
        """Fail every batch not yet settled, wherever it is (the last resort of a stop)."""
        self.fail_unsent(error)
        for batch in list(self._unfinished):
            self.fail(batch, error)
