"""Status and headers to error: the one place responses are classified."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from enum import Enum

from .._errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidOffsetError,
    NotSupportedError,
    PayloadTooLargeError,
    RateLimitedError,
    ResponseError,
    SequenceConflictError,
    SequenceGapError,
    ServerError,
    StaleEpochError,
    StreamClosedError,
    StreamExistsError,
    StreamNotFoundError,
    UnauthorizedError,
    UnexpectedStatusError,
)
from . import headers as h

# Never longer than an hour, whatever a skewed clock or a confused server says.
MAX_RETRY_AFTER = 3600.0


class Op(Enum):
    """What a request was for; the same status means different things per operation."""

    CREATE = "create"
    FORK = "fork"
    APPEND = "append"
    CLOSE = "close"
    READ = "read"
    HEAD = "head"
    DELETE = "delete"
    PRODUCE = "produce"


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    value = headers.get(h.RETRY_AFTER)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def is_retryable_status(status: int) -> bool:
    """Transient statuses: 429 and 5xx, except 501 (the server will never support it)."""
    return status == 429 or (500 <= status < 600 and status != 501)


def error_for(
    status: int,
    headers: Mapping[str, str],
    *,
    op: Op,
    url: str,
    sent_stream_seq: bool = False,
) -> ResponseError:
    """The error a failed response means, judged by status and headers only (never the body)."""

    def make(cls: type[ResponseError], message: str) -> ResponseError:
        return cls(message, url=url, status=status, headers=headers)

    if status == 400:
        if op is Op.READ:
            return make(InvalidOffsetError, "the server rejected the read offset or parameters")
        return make(BadRequestError, "the server rejected the request as malformed")
    if status == 401:
        return make(UnauthorizedError, "authentication required or refused")
    if status == 403:
        if op is Op.PRODUCE:
            epoch = h.optional_int(headers, h.PRODUCER_EPOCH)
            return StaleEpochError(
                f"producer fenced: the server holds epoch {epoch}",
                current_epoch=epoch,
                url=url,
                status=status,
                headers=headers,
            )
        return make(ForbiddenError, "forbidden")
    if status == 404:
        return make(
            StreamNotFoundError, f"{'fork source ' if op is Op.FORK else ''}stream not found"
        )
    if status in (405, 501):
        return make(NotSupportedError, "the server does not support this operation")
    if status == 409:
        return _conflict(status, headers, op=op, url=url, sent_stream_seq=sent_stream_seq)
    if status == 410:
        return make(GoneError, "stream gone (deleted, or offset older than retained data)")
    if status == 413:
        return make(PayloadTooLargeError, "request body too large for the server")
    if status == 429:
        return RateLimitedError(
            "rate limited",
            retry_after=retry_after(headers),
            url=url,
            status=status,
            headers=headers,
        )
    if 500 <= status < 600:
        return make(ServerError, "server error")
    return make(UnexpectedStatusError, f"unexpected status {status}")


def _conflict(
    status: int, headers: Mapping[str, str], *, op: Op, url: str, sent_stream_seq: bool
) -> ResponseError:
    if h.flag(headers, h.STREAM_CLOSED):
        return StreamClosedError(
            "stream is closed",
            final_offset=headers.get(h.STREAM_NEXT_OFFSET),
            url=url,
            status=status,
            headers=headers,
        )
    expected = h.optional_int(headers, h.PRODUCER_EXPECTED_SEQ)
    if expected is not None:
        received = h.optional_int(headers, h.PRODUCER_RECEIVED_SEQ)
        return SequenceGapError(
            f"producer sequence gap: expected {expected}, received {received}",
            expected_seq=expected,
            received_seq=received,
            url=url,
            status=status,
            headers=headers,
        )
    if op in (Op.CREATE, Op.FORK):
        cls: type[ConflictError] = StreamExistsError
        message = "a stream with a different configuration exists at this URL"
    elif sent_stream_seq:
        cls, message = SequenceConflictError, "Stream-Seq is not above the last value stored"
    else:
        cls, message = ConflictError, "conflict with the stream's state (content type?)"
    return cls(message, url=url, status=status, headers=headers)
