"""Frozen result records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["AppendResult", "Batch", "CreateResult", "StreamInfo"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What ``Stream.head()`` learned about a stream.

    Attributes:
        content_type: the stream's content type, fixed at creation.
        offset: the tail offset; reading from it returns only data appended later.
        closed: whether the stream is closed (no more data will ever be appended).
        ttl: the sliding time-to-live in seconds, if the stream has one.
        expires_at: the absolute expiry (RFC 3339), if the stream has one.
        etag: the server's entity tag, if it sent one.
    """

    content_type: str | None
    offset: str
    closed: bool
    ttl: int | None = None
    expires_at: str | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The outcome of ``Stream.create()`` or ``Stream.fork()``.

    Attributes:
        created: True for a new stream (201); False when an identical one existed (200).
        offset: the tail offset after any initial data.
        closed: whether the stream is closed.
        content_type: the stream's content type as the server reports it.
        location: the ``Location`` header of a 201, if present.
    """

    created: bool
    offset: str
    closed: bool
    content_type: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of ``Stream.append()``.

    Attributes:
        offset: the stream's tail after this append (``Stream-Next-Offset``).
        closed: whether the stream is now closed (append-and-close).
    """

    offset: str
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """One delivery from a reader: the messages of one response or SSE control span.

    Attributes:
        items: the messages (parsed JSON values on JSON streams, ``bytes`` chunks otherwise).
        offset: where to resume after these items; checkpoint this.
        cursor: the server's cursor to echo on the next request, if any.
        up_to_date: the reader has caught up with the stream's tail.
        closed: the stream is closed and these are its last items: end of stream.
    """

    items: list[T] = field(default_factory=list)
    offset: str = "-1"
    cursor: str | None = None
    up_to_date: bool = False
    closed: bool = False
