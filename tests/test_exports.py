"""The public surface: ``durable_streams.__all__`` changes only on purpose, and is documented."""

from __future__ import annotations

import inspect
import re

import pytest

import durable_streams as ds
from durable_streams import _errors

# Adding or removing a public name means editing this list, in the same change.
EXPECTED_ALL = [
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

PUBLIC = [getattr(ds, name) for name in EXPECTED_ALL]
DOCUMENTED = [
    pytest.param(obj, id=name)
    for name, obj in zip(EXPECTED_ALL, PUBLIC, strict=True)
    if inspect.isclass(obj) or inspect.isfunction(obj)
]
CLASSES = [pytest.param(obj, id=obj.__name__) for obj in PUBLIC if inspect.isclass(obj)]
ERRORS = [
    pytest.param(obj, id=obj.__name__)
    for obj in PUBLIC
    if inspect.isclass(obj) and issubclass(obj, BaseException)
]


def test_all_is_pinned() -> None:
    assert ds.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_unique() -> None:
    assert ds.__all__ == sorted(ds.__all__)
    assert len(set(ds.__all__)) == len(ds.__all__)


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from durable_streams import *", namespace)
    for name in EXPECTED_ALL:
        assert namespace[name] is getattr(ds, name)


def test_nothing_public_is_left_out_of_all() -> None:
    # A public-looking name in the package namespace that is not in __all__ is either an
    # accidental export or a forgotten entry.
    public = {
        name
        for name, obj in vars(ds).items()
        if not name.startswith("_") and not inspect.ismodule(obj)
    }
    assert public - set(ds.__all__) == set()


def test_version_is_a_string() -> None:
    assert isinstance(ds.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", ds.__version__)


@pytest.mark.parametrize("obj", DOCUMENTED)
def test_every_public_class_and_function_has_a_docstring(obj: object) -> None:
    assert (inspect.getdoc(obj) or "").strip()


@pytest.mark.parametrize("cls", CLASSES)
def test_every_public_method_and_property_has_a_docstring(cls: type) -> None:
    missing = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        if not (inspect.isfunction(target) or inspect.ismethoddescriptor(target)):
            continue
        if not (inspect.getdoc(target) or "").strip():
            missing.append(name)
    assert missing == []


def test_public_objects_live_in_private_modules() -> None:
    # Users import from the package; the module layout behind it is free to change.
    for obj in PUBLIC:
        module = getattr(obj, "__module__", None)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert module is not None
            assert module.startswith("durable_streams._"), obj


@pytest.mark.parametrize("cls", ERRORS)
def test_every_public_error_derives_from_the_library_base(cls: type) -> None:
    assert issubclass(cls, ds.DurableStreamsError)


def test_invalid_argument_is_also_a_value_error() -> None:
    assert issubclass(ds.InvalidArgumentError, ValueError)
    assert issubclass(ds.InvalidArgumentError, ds.UsageError)


def test_error_tree_drawing_matches_the_classes() -> None:
    # The tree in the _errors docstring is the documentation users read; it must not drift
    # from the real hierarchy.
    doc = _errors.__doc__ or ""
    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^[\s│]*(?:[├└]── )?([A-Z][A-Za-z]+Error)\b", line)
        if not match or ("── " not in line and line.strip() != "DurableStreamsError"):
            continue
        # The column of the name is its depth in the drawing.
        depth, name = match.start(1), match.group(1)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        if parents:
            drawn[name] = parents[-1][1]
        parents.append((depth, name))
    assert drawn, "no tree found in the _errors docstring"
    for name, parent in drawn.items():
        cls = getattr(ds, name)
        assert cls.__bases__[0] is getattr(ds, parent), f"{name} is drawn under {parent}"
    drawable = {n for n in EXPECTED_ALL if n.endswith("Error")} - {"DurableStreamsError"}
    assert drawable - set(drawn) == set(), "errors missing from the drawing"
