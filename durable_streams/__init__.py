"""durable_streams: an asyncio client for the Durable Streams protocol, built on aiohttp.

Start with :class:`Session`::

    async with durable_streams.Session("http://127.0.0.1:4437") as session:
        stream = session.stream("/orders")
        await stream.create(content_type="application/json")
        await stream.append({"id": 1})
        async for message in stream.read(live=False):
            print(message)
"""

from . import _log  # noqa: F401 - installs the redacting filter on the logger
from ._config import Limits as Limits
from ._config import RetryPolicy as RetryPolicy
from ._config import Timeouts as Timeouts
from ._errors import BadRequestError as BadRequestError
from ._errors import BufferFullError as BufferFullError
from ._errors import ConflictError as ConflictError
from ._errors import DurableStreamsError as DurableStreamsError
from ._errors import ForbiddenError as ForbiddenError
from ._errors import GoneError as GoneError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import InvalidOffsetError as InvalidOffsetError
from ._errors import LimitExceededError as LimitExceededError
from ._errors import MissingHeaderError as MissingHeaderError
from ._errors import NetworkError as NetworkError
from ._errors import NotSupportedError as NotSupportedError
from ._errors import ParseError as ParseError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import RateLimitedError as RateLimitedError
from ._errors import ReaderConsumedError as ReaderConsumedError
from ._errors import RedirectError as RedirectError
from ._errors import RequestTimeoutError as RequestTimeoutError
from ._errors import ResourceClosedError as ResourceClosedError
from ._errors import ResponseError as ResponseError
from ._errors import SequenceConflictError as SequenceConflictError
from ._errors import SequenceGapError as SequenceGapError
from ._errors import ServerError as ServerError
from ._errors import StaleEpochError as StaleEpochError
from ._errors import StreamClosedError as StreamClosedError
from ._errors import StreamExistsError as StreamExistsError
from ._errors import StreamNotFoundError as StreamNotFoundError
from ._errors import TransportError as TransportError
from ._errors import UnauthorizedError as UnauthorizedError
from ._errors import UnexpectedStatusError as UnexpectedStatusError
from ._errors import UsageError as UsageError
from ._errors import WebhookSignatureError as WebhookSignatureError
from ._oneshot import append as append
from ._oneshot import create as create
from ._oneshot import delete as delete
from ._oneshot import head as head
from ._oneshot import read as read
from ._oneshot import read_all as read_all
from ._producer import IdempotentProducer as IdempotentProducer
from ._producer import ProducerAck as ProducerAck
from ._producer import ProducerStatistics as ProducerStatistics
from ._producer import Receipt as Receipt
from ._reader import LiveMode as LiveMode
from ._reader import StreamReader as StreamReader
from ._session import DynamicValue as DynamicValue
from ._session import Session as Session
from ._session import SessionStatistics as SessionStatistics
from ._stream import Stream as Stream
from ._types import AppendResult as AppendResult
from ._types import Batch as Batch
from ._types import CreateResult as CreateResult
from ._types import StreamInfo as StreamInfo

__version__ = "0.1.0"

__all__ = [
    "AppendResult",
    "BadRequestError",
    "Batch",
    "BufferFullError",
    "ConflictError",
    "CreateResult",
    "DurableStreamsError",
    "DynamicValue",
    "ForbiddenError",
    "GoneError",
    "IdempotentProducer",
    "InvalidArgumentError",
    "InvalidOffsetError",
    "LimitExceededError",
    "Limits",
    "LiveMode",
    "MissingHeaderError",
    "NetworkError",
    "NotSupportedError",
    "ParseError",
    "PayloadTooLargeError",
    "ProducerAck",
    "ProducerStatistics",
    "RateLimitedError",
    "ReaderConsumedError",
    "Receipt",
    "RedirectError",
    "RequestTimeoutError",
    "ResourceClosedError",
    "ResponseError",
    "RetryPolicy",
    "SequenceConflictError",
    "SequenceGapError",
    "ServerError",
    "Session",
    "SessionStatistics",
    "StaleEpochError",
    "Stream",
    "StreamClosedError",
    "StreamExistsError",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamReader",
    "Timeouts",
    "TransportError",
    "UnauthorizedError",
    "UnexpectedStatusError",
    "UsageError",
    "WebhookSignatureError",
    "append",
    "create",
    "delete",
    "head",
    "read",
    "read_all",
]
