"""durable_streams.sync: the blocking API, for scripts, notebooks, and Django or Flask views.

The same client without ``await``: each class fronts its async twin and runs it on an
event loop in a background thread (one per :class:`Session`, through an anyio blocking
portal), so there is one implementation of the protocol, its retries and its parsing::

    import durable_streams.sync as dss

    with dss.Session("http://127.0.0.1:4437/v1/stream") as session:
        stream = session.stream("/orders")
        stream.create(content_type="application/json")
        stream.append({"id": 1})
        for message in stream.read(live=False):
            print(message)

Arguments, results, records and errors are those of the async API (import them from
``durable_streams``). See the "Blocking API" guide for threads, Ctrl-C and what runs where.
"""

from ._blocking_producer import IdempotentProducer, Receipt
from ._blocking_reader import Batches, StreamReader
from ._blocking_session import Session, Stream

__all__ = ["Batches", "IdempotentProducer", "Receipt", "Session", "Stream", "StreamReader"]
