"""One-shot helpers for scripts: each call opens a short-lived session and closes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._config import RetryPolicy, Timeouts
from ._protocol.framing import DEFAULT_CONTENT_TYPE
from ._reader import LiveMode
from ._session import DynamicValue, Session
from ._types import AppendResult, CreateResult, StreamInfo

__all__ = ["append", "create", "delete", "head", "read", "read_all"]

Headers = dict[str, DynamicValue] | None


def _session(headers: Headers, timeout: Timeouts | None, retry: RetryPolicy | None) -> Session:
    return Session(headers=headers, timeout=timeout, retry=retry)


async def create(
    url: str,
    *,
    content_type: str = DEFAULT_CONTENT_TYPE,
    ttl: int | None = None,
    expires_at: datetime | str | None = None,
    closed: bool = False,
    data: object = None,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> CreateResult:
    """Create the stream at ``url`` (see :meth:`Stream.create`) with a short-lived session."""
    async with _session(headers, timeout, retry) as session:
        return await session.stream(url).create(
            content_type=content_type, ttl=ttl, expires_at=expires_at, closed=closed, data=data
        )


async def append(
    url: str,
    data: object,
    *,
    seq: str | None = None,
    close: bool = False,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> AppendResult:
    """Append one message to ``url`` (see :meth:`Stream.append`) with a short-lived session.

    Costs a HEAD first, to learn the stream's content type; in a loop, use a
    :class:`Session` instead.
    """
    async with _session(headers, timeout, retry) as session:
        return await session.stream(url).append(data, seq=seq, close=close)


async def head(
    url: str,
    *,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> StreamInfo:
    """The metadata of the stream at ``url`` (see :meth:`Stream.head`)."""
    async with _session(headers, timeout, retry) as session:
        return await session.stream(url).head()


async def delete(
    url: str,
    *,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Delete the stream at ``url`` (see :meth:`Stream.delete`)."""
    async with _session(headers, timeout, retry) as session:
        await session.stream(url).delete()


async def read_all(
    url: str,
    offset: str = "-1",
    *,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> list[Any]:
    """Every message of the stream at ``url`` from ``offset`` to its current tail."""
    async with _session(headers, timeout, retry) as session:
        return await session.stream(url).read_all(offset)


async def read(
    url: str,
    offset: str = "-1",
    *,
    live: LiveMode = False,
    headers: Headers = None,
    timeout: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> list[Any]:
    """The messages of the stream at ``url`` from ``offset``.

    With ``live=False`` (the default) this stops at the current tail; with a live mode it
    waits for the end of a closed stream. For an open-ended tail, use
    ``Session.stream(url).read()`` as an async iterator.
    """
    async with (
        _session(headers, timeout, retry) as session,
        session.stream(url).read(offset, live=live) as reader,
    ):
        return await reader.read_all()
