"""Every public member of the async classes has a blocking twin, or is listed here as absent.

A member added to the async API fails this test until the facade has it (or this file
says why not), so the two cannot drift apart. Twins take the same parameters, defaults
included, except where listed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import durable_streams as ds
import durable_streams.sync as dss

# The async name of a member -> the blocking name, where they differ.
RENAMED = {
    "aclose": "close",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "__await__": "result",
}

# Deliberately absent, with the reason. Keys are "Class.member".
ABSENT = {
    "Session.subscription": (
        "subscriptions (Subscription, PullWorker, SubscriptionRunner, Claim) are worker "
        "machinery built on background tasks, heartbeats and signal handling; they are "
        "meant to run in an async program, so the facade leaves them to the async API"
    ),
}

# Parameters that differ on purpose: "Class.member" -> the blocking parameters' names
# whose annotations differ from the async ones (names and defaults still match).
WIDER_PARAMETERS = {
    "Stream.fork": {"source"},  # also a blocking Stream
    "Stream.append_stream": {"chunks"},  # a plain iterable, not an async one
    "Receipt.result": {"timeout"},  # the async Receipt.result() never waits
}

PAIRS = [
    (ds.Session, dss.Session),
    (ds.Stream, dss.Stream),
    (ds.StreamReader, dss.StreamReader),
    (ds.IdempotentProducer, dss.IdempotentProducer),
    (ds.Receipt, dss.Receipt),
]


def _class_members(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        members.update(
            {n: m for n, m in vars(klass).items() if not n.startswith("_") or n in RENAMED}
        )
    return members


@pytest.fixture(scope="module")
def instances() -> Iterator[dict[type, object]]:
    """One object of every class (no I/O), for the attributes set in constructors."""
    session = ds.Session("http://127.0.0.1:9/v1/stream")
    stream = session.stream("/parity")
    blocking = dss.Session("http://127.0.0.1:9/v1/stream")
    blocking_stream = blocking.stream("/parity")
    found: dict[type, object] = {
        ds.Session: session,
        ds.Stream: stream,
        ds.StreamReader: stream.read(),
        dss.Session: blocking,
        dss.Stream: blocking_stream,
        dss.StreamReader: blocking_stream.read(),
        dss.IdempotentProducer: blocking_stream.producer("parity"),
    }
    yield found
    blocking.close()


def _public_attributes(obj: object) -> set[str]:
    return {name for name in vars(obj) if not name.startswith("_")}


@pytest.mark.parametrize(("async_cls", "blocking_cls"), PAIRS, ids=lambda c: c.__name__)
def test_every_async_member_has_a_blocking_twin(
    async_cls: type, blocking_cls: type, instances: dict[type, object]
) -> None:
    wanted = set(_class_members(async_cls))
    if async_cls in instances:
        wanted |= _public_attributes(instances[async_cls])
    have = set(dir(blocking_cls))
    if blocking_cls in instances:
        have |= _public_attributes(instances[blocking_cls])
    missing = {
        name
        for name in wanted
        if RENAMED.get(name, name) not in have and f"{async_cls.__name__}.{name}" not in ABSENT
    }
    assert missing == set()


@pytest.mark.parametrize(("async_cls", "blocking_cls"), PAIRS, ids=lambda c: c.__name__)
def test_twins_take_the_same_parameters(async_cls: type, blocking_cls: type) -> None:
    for name, member in _class_members(async_cls).items():
        twin = getattr(blocking_cls, RENAMED.get(name, name), None)
        if twin is None or not inspect.isfunction(member) or name in ("__aexit__", "__await__"):
            continue
        theirs = inspect.signature(member).parameters
        ours = inspect.signature(twin).parameters
        where = f"{async_cls.__name__}.{name}"
        if where == "Receipt.result":
            continue  # the async one takes nothing; ours takes a timeout
        assert list(ours) == list(theirs), where
        for key, parameter in theirs.items():
            assert ours[key].default == parameter.default, f"{where}({key})"
            assert ours[key].kind == parameter.kind, f"{where}({key})"
            if key not in WIDER_PARAMETERS.get(where, set()) | {"self"}:
                assert ours[key].annotation == parameter.annotation, f"{where}({key})"


def test_the_session_constructor_is_the_async_ones() -> None:
    theirs = inspect.signature(ds.Session.__init__).parameters
    ours = inspect.signature(dss.Session.__init__).parameters
    assert [(p.name, p.default, p.kind) for p in ours.values()] == [
        (p.name, p.default, p.kind) for p in theirs.values()
    ]


def test_absent_members_exist_in_the_async_api() -> None:
    # A stale entry (the async member was removed or renamed) must not linger here.
    for where in ABSENT:
        cls_name, member = where.split(".")
        assert hasattr(getattr(ds, cls_name), member), where


def test_the_facade_exports_only_its_own_classes() -> None:
    assert dss.__all__ == sorted(dss.__all__)
    for name in dss.__all__:
        assert getattr(dss, name).__module__.startswith("durable_streams._blocking"), name
    assert not hasattr(ds, "sync") or ds.sync is dss  # a submodule, not a re-export


@pytest.mark.parametrize("name", dss.__all__)
def test_every_blocking_method_is_documented(name: str) -> None:
    cls = getattr(dss, name)
    assert (inspect.getdoc(cls) or "").strip()
    missing = []
    for member_name, member in vars(cls).items():
        if member_name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        if inspect.isfunction(target) and not (inspect.getdoc(target) or "").strip():
            missing.append(member_name)
    assert missing == []
