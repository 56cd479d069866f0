"""The idempotent producer, in three parts.

An accumulator batches (``_accumulator``), a sender sends (``_sender``), and the producer
wires them and owns the life cycle (``_producer``), as aiokafka splits its
``RecordAccumulator`` and ``Sender``.
"""

from ._options import ProducerOptions as ProducerOptions
from ._producer import IdempotentProducer as IdempotentProducer
from ._records import ProducerAck as ProducerAck
from ._records import ProducerStatistics as ProducerStatistics
from ._records import Receipt as Receipt

__all__ = ["IdempotentProducer", "ProducerAck", "ProducerOptions", "ProducerStatistics", "Receipt"]
