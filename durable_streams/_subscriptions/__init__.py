"""Subscriptions (protocol sections 6 and 7): the management handle, pull-wake workers, a runner.

``records`` holds the frozen records, ``wire`` the pure control-API code (URLs, bodies,
answers, errors), ``management`` the :class:`Subscription` handle, ``pull`` the claim and
the worker that follows a wake stream, and ``runner`` the ready-made worker loop.
"""

from .management import Subscription as Subscription
from .pull import Claim as Claim
from .pull import PullWorker as PullWorker
from .records import ClaimInfo as ClaimInfo
from .records import ClaimState as ClaimState
from .records import LinkType as LinkType
from .records import RunnerStatistics as RunnerStatistics
from .records import StreamCursor as StreamCursor
from .records import SubscriptionConfig as SubscriptionConfig
from .records import SubscriptionInfo as SubscriptionInfo
from .records import SubscriptionStream as SubscriptionStream
from .records import SubscriptionType as SubscriptionType
from .records import WakeEvent as WakeEvent
from .records import WebhookSigning as WebhookSigning
from .records import WorkerStatistics as WorkerStatistics
from .runner import BatchHandler as BatchHandler
from .runner import SubscriptionRunner as SubscriptionRunner
from .webhook import WebhookCallback as WebhookCallback
from .webhook import webhook_answer as webhook_answer
from .webhook import webhook_dependency as webhook_dependency
from .webhook import webhook_handler as webhook_handler
from .webhook_verify import WebhookVerifier as WebhookVerifier
from .webhook_verify import WebhookVerifierStatistics as WebhookVerifierStatistics
from .webhook_wire import WebhookWake as WebhookWake

__all__ = [
    "BatchHandler",
    "Claim",
    "ClaimInfo",
    "ClaimState",
    "LinkType",
    "PullWorker",
    "RunnerStatistics",
    "StreamCursor",
    "Subscription",
    "SubscriptionConfig",
    "SubscriptionInfo",
    "SubscriptionRunner",
    "SubscriptionStream",
    "SubscriptionType",
    "WakeEvent",
    "WebhookCallback",
    "WebhookSigning",
    "WebhookVerifier",
    "WebhookVerifierStatistics",
    "WebhookWake",
    "WorkerStatistics",
    "webhook_answer",
    "webhook_dependency",
    "webhook_handler",
]
