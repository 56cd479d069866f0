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
from ._errors import InvalidAckError as InvalidAckError
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
from ._errors import SubscriptionExistsError as SubscriptionExistsError
from ._errors import SubscriptionFencedError as SubscriptionFencedError
from ._errors import SubscriptionNotFoundError as SubscriptionNotFoundError
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
from ._subscriptions import BatchHandler as BatchHandler
from ._subscriptions import Claim as Claim
from ._subscriptions import ClaimInfo as ClaimInfo
from ._subscriptions import ClaimState as ClaimState
from ._subscriptions import PullWorker as PullWorker
from ._subscriptions import RunnerStatistics as RunnerStatistics
from ._subscriptions import StreamCursor as StreamCursor
from ._subscriptions import Subscription as Subscription
from ._subscriptions import SubscriptionConfig as SubscriptionConfig
from ._subscriptions import SubscriptionInfo as SubscriptionInfo
from ._subscriptions import SubscriptionRunner as SubscriptionRunner
from ._subscriptions import SubscriptionStream as SubscriptionStream
from ._subscriptions import WakeEvent as WakeEvent
from ._subscriptions import WebhookCallback as WebhookCallback
from ._subscriptions import WebhookSigning as WebhookSigning
from ._subscriptions import WebhookVerifier as WebhookVerifier
from ._subscriptions import WebhookVerifierStatistics as WebhookVerifierStatistics
from ._subscriptions import WebhookWake as WebhookWake
from ._subscriptions import WorkerStatistics as WorkerStatistics
from ._subscriptions import webhook_answer as webhook_answer
from ._subscriptions import webhook_dependency as webhook_dependency
from ._subscriptions import webhook_handler as webhook_handler
from ._types import AppendResult as AppendResult
from ._types import Batch as Batch
from ._types import CreateResult as CreateResult
from ._types import StreamInfo as StreamInfo

__version__ = "0.1.0"

__all__ = [
    "AppendResult",
    "BadRequestError",
    "Batch",
    "BatchHandler",
    "BufferFullError",
    "Claim",
    "ClaimInfo",
    "ClaimState",
    "ConflictError",
    "CreateResult",
    "DurableStreamsError",
    "DynamicValue",
    "ForbiddenError",
    "GoneError",
    "IdempotentProducer",
    "InvalidAckError",
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
    "PullWorker",
    "RateLimitedError",
    "ReaderConsumedError",
    "Receipt",
    "RedirectError",
    "RequestTimeoutError",
    "ResourceClosedError",
    "ResponseError",
    "RetryPolicy",
    "RunnerStatistics",
    "SequenceConflictError",
    "SequenceGapError",
    "ServerError",
    "Session",
    "SessionStatistics",
    "StaleEpochError",
    "Stream",
    "StreamClosedError",
    "StreamCursor",
    "StreamExistsError",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamReader",
    "Subscription",
    "SubscriptionConfig",
    "SubscriptionExistsError",
    "SubscriptionFencedError",
    "SubscriptionInfo",
    "SubscriptionNotFoundError",
    "SubscriptionRunner",
    "SubscriptionStream",
    "Timeouts",
    "TransportError",
    "UnauthorizedError",
    "UnexpectedStatusError",
    "UsageError",
    "WakeEvent",
    "WebhookCallback",
    "WebhookSignatureError",
    "WebhookSigning",
    "WebhookVerifier",
    "WebhookVerifierStatistics",
    "WebhookWake",
    "WorkerStatistics",
    "append",
    "create",
    "delete",
    "head",
    "read",
    "read_all",
    "webhook_answer",
    "webhook_dependency",
    "webhook_handler",
]
