"""The error tree of ``durable_streams``.

Every exception the library raises on purpose derives from :class:`DurableStreamsError`::

    DurableStreamsError
    ├── UsageError                      bad input or misuse, raised before anything is sent
    │   ├── InvalidArgumentError        (also a ValueError)
    │   ├── ReaderConsumedError         a StreamReader consumed again after its end
    │   ├── ResourceClosedError         a Session, reader or producer used after aclose()
    │   └── BufferFullError             IdempotentProducer.append_nowait() with a full buffer
    ├── TransportError                  the request did not produce an HTTP response
    │   ├── NetworkError                connection refused / reset / dropped mid-body
    │   └── RequestTimeoutError         a connect, request or live-idle timeout fired
    ├── ParseError                      a response the protocol does not allow
    │   ├── MissingHeaderError          a header this kind of answer must carry is absent
    │   └── LimitExceededError          a response exceeded one of the session's Limits
    ├── WebhookSignatureError           a webhook request refused: its signature does not hold
    └── ResponseError                   the server answered with an error status
        ├── RedirectError               3xx not followed (writes never follow redirects)
        ├── BadRequestError             400
        │   └── InvalidOffsetError      400 on a read; an offset past the tail
        ├── UnauthorizedError           401
        ├── ForbiddenError              403 (not a producer fence)
        ├── StaleEpochError             403 on a producer request: fenced by a newer epoch
        ├── StreamNotFoundError         404
        ├── SubscriptionNotFoundError   404 from the subscription API: no such subscription
        ├── NotSupportedError           405, 501
        ├── ConflictError               409
        │   ├── StreamExistsError       409 on create/fork: a different stream is there
        │   ├── StreamClosedError       409 with Stream-Closed: the stream is closed
        │   ├── SequenceConflictError   409 after sending Stream-Seq
        │   ├── SequenceGapError        409 with Producer-Expected-Seq
        │   ├── SubscriptionExistsError 409 on a subscription create: another configuration
        │   ├── SubscriptionFencedError 409 FENCED: a newer wake generation took the work
        │   └── InvalidAckError         409 INVALID_OFFSET: an ack the cursor refuses
        ├── GoneError                   410
        ├── PayloadTooLargeError        413
        ├── RateLimitedError            429
        ├── ServerError                 5xx (except 501)
        └── UnexpectedStatusError       anything else

``StaleEpochError`` deliberately does not derive from ``ForbiddenError``: a producer fenced
by a newer epoch is a protocol event with a remedy (a new epoch), not an authorisation
failure, and code that handles one must not catch the other by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._protocol.headers import lower_keys
from ._protocol.redact import redact_text, redact_url

if TYPE_CHECKING:
    from ._types import StreamInfo

__all__ = [
    "BadRequestError",
    "BufferFullError",
    "ConflictError",
    "DurableStreamsError",
    "ForbiddenError",
    "GoneError",
    "InvalidAckError",
    "InvalidArgumentError",
    "InvalidOffsetError",
    "LimitExceededError",
    "MissingHeaderError",
    "NetworkError",
    "NotSupportedError",
    "ParseError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ReaderConsumedError",
    "RedirectError",
    "RequestTimeoutError",
    "ResourceClosedError",
    "ResponseError",
    "SequenceConflictError",
    "SequenceGapError",
    "ServerError",
    "StaleEpochError",
    "StreamClosedError",
    "StreamExistsError",
    "StreamNotFoundError",
    "SubscriptionExistsError",
    "SubscriptionFencedError",
    "SubscriptionNotFoundError",
    "TransportError",
    "UnauthorizedError",
    "UnexpectedStatusError",
    "UsageError",
    "WebhookSignatureError",
]

_NO_HEADERS: Mapping[str, str] = {}


class DurableStreamsError(Exception):
    """Base class of every error raised by ``durable_streams``.

    Attributes:
        url: the stream URL the failed operation addressed, if any.
        status: the HTTP status of the response that explains the error, if any.
        headers: the response headers that explain the error (lower-case names).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # No secret leaves in text: query values and userinfo passwords are redacted.
        message = redact_text(message)
        super().__init__(message)
        self.message = message
        self.url = url if url is None else redact_url(url)
        self.status = status
        # A plain dict with lower-case names, whatever mapping the answer came in.
        self.headers: Mapping[str, str] = lower_keys(headers) if headers else _NO_HEADERS

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.url is not None:
            parts.append(f"url={self.url}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


# -- usage -----------------------------------------------------------------------------


class UsageError(DurableStreamsError):
    """The library was called wrongly; nothing was sent."""


class InvalidArgumentError(UsageError, ValueError):
    """An argument failed validation before any request was sent.

    Attributes:
        argument: the name of the rejected parameter (as in the signature), if one was.
    """

    def __init__(
        self, message: str, *, argument: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.argument = argument


class ReaderConsumedError(UsageError):
    """A :class:`StreamReader` that reached its end was consumed again; start a new ``read()``."""


class ResourceClosedError(UsageError):
    """A session, reader or producer was used after ``aclose()``."""


class BufferFullError(UsageError):
    """``append_nowait()`` found the producer's buffer full; ``await append()`` waits instead."""


# -- transport -------------------------------------------------------------------------


class TransportError(DurableStreamsError):
    """No usable HTTP response arrived. The aiohttp exception is kept as ``__cause__``."""


class NetworkError(TransportError):
    """The connection failed: refused, reset, or dropped before the body was complete."""


class RequestTimeoutError(TransportError):
    """A connect, request or live-idle timeout expired."""


# -- malformed responses ---------------------------------------------------------------


class ParseError(DurableStreamsError):
    """The server sent a body the protocol does not allow (bad JSON, SSE or base64).

    Attributes:
        offset: the stream offset of the request whose response could not be parsed;
            reading again from it is safe.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: str | None = None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.offset = offset


class MissingHeaderError(ParseError):
    """An answer lacks a header that answers of its kind must carry.

    Attributes:
        header: the missing header's name, lower case (``stream-next-offset``, ...).
    """

    def __init__(
        self,
        header: str,
        *,
        what: str,
        offset: str | None = None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            f"{what} has no {header} header", offset=offset, url=url, status=status, headers=headers
        )
        self.header = header


class LimitExceededError(ParseError):
    """A response was larger than one of the session's :class:`Limits` allows.

    Raised instead of buffering without bound (a decompression bomb, an endless body or
    SSE line). A reader's offset does not move, so raising the limit and reading again
    from ``offset`` loses nothing.

    Attributes:
        limit: the name of the :class:`Limits` field that was exceeded.
        maximum: that field's value.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        maximum: int,
        offset: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(f"{message} (Limits.{limit}={maximum})", offset=offset, url=url)
        self.limit = limit
        self.maximum = maximum


class WebhookSignatureError(DurableStreamsError):
    """A webhook request was refused: its signature does not prove the server sent it.

    Answer such a request with 401 and do nothing it asks. The server retries a delivery
    that was not answered with a 2xx, so a genuine wake refused by mistake (a clock far
    off, say) comes again.

    Attributes:
        reason: why, one of ``"missing"`` (no header), ``"malformed"`` (not a signature
            header), ``"stale"`` (signed before the replay window), ``"future"`` (signed
            after it: the clocks disagree), ``"unknown_key"`` (its ``kid`` is not in the
            server's key set, even after fetching it again) and ``"bad_signature"`` (the
            body was changed, or another key signed it).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- status errors ---------------------------------------------------------------------


class ResponseError(DurableStreamsError):
    """The server answered with a status that means the operation failed."""

    status: int


class RedirectError(ResponseError):
    """A 3xx answer that was not followed.

    Writes (PUT, POST, DELETE) never follow redirects: an HTTP client would replay a POST
    as a GET and report success while nothing was stored. Reads follow at most a few
    same-origin 307 and 308 redirects; anything else ends here.

    Attributes:
        location: the ``Location`` header, if any (with query values redacted in
            messages, but kept whole here).
    """

    def __init__(
        self,
        message: str,
        *,
        location: str | None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.location = location


class BadRequestError(ResponseError):
    """400: the server rejected the request as malformed."""


class InvalidOffsetError(BadRequestError):
    """400 on a read (the offset is malformed or out of range), or an offset past the tail.

    A reader raises it itself when answers keep placing the stream's tail before the
    offset (or position) it reads from, such as a corrupt checkpoint; ``status`` is then
    that of the answer that did.
    """


class UnauthorizedError(ResponseError):
    """401: credentials are missing or were refused."""


class ForbiddenError(ResponseError):
    """403 on a request that carried no producer headers."""


class StaleEpochError(ResponseError):
    """403 on a producer request: a producer with a newer epoch has fenced this one.

    Attributes:
        current_epoch: the epoch the server holds (``Producer-Epoch``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        current_epoch: int | None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.current_epoch = current_epoch


class StreamNotFoundError(ResponseError):
    """404: no stream at this URL (or, for a fork, no source stream)."""


class SubscriptionNotFoundError(ResponseError):
    """404 from the subscription control API: no subscription with this id."""


class NotSupportedError(ResponseError):
    """405 or 501: this server does not offer the operation. Never retried."""


class ConflictError(ResponseError):
    """409: the request conflicts with the stream's state (for example its content type)."""


class StreamExistsError(ConflictError):
    """409 on create or fork: a stream with a different configuration is at this URL.

    Attributes:
        existing: what a HEAD found at the URL after a refused ``create`` (its content
            type, closed state, TTL, expiry), or ``None`` when it was not asked. A
            closed stream is the usual case: ``existing.closed`` is then true and the
            message says so.
    """

    def __init__(
        self,
        message: str,
        *,
        existing: StreamInfo | None = None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.existing = existing


class StreamClosedError(ConflictError):
    """409 with ``Stream-Closed``: the stream is closed and accepts no more data.

    Attributes:
        final_offset: the stream's final offset, if the server sent it.
    """

    def __init__(
        self,
        message: str,
        *,
        final_offset: str | None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.final_offset = final_offset


class SequenceConflictError(ConflictError):
    """409 after sending ``Stream-Seq``: the value was not above the last one stored."""


class SequenceGapError(ConflictError):
    """409 with ``Producer-Expected-Seq``: the producer's sequence has a gap.

    Attributes:
        expected_seq: the sequence number the server expected next.
        received_seq: the sequence number that was sent.
    """

    def __init__(
        self,
        message: str,
        *,
        expected_seq: int | None,
        received_seq: int | None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.expected_seq = expected_seq
        self.received_seq = received_seq


class SubscriptionExistsError(ConflictError):
    """409 on a subscription create: one with this id has a different configuration."""


class SubscriptionFencedError(ConflictError):
    """409 ``FENCED``: the claim (or webhook wake) is no longer the current one.

    Its lease expired, or it was finished or released, and the server moved on to a newer
    generation; nothing this claim sends is applied any more. The work is (or will be)
    someone else's: stop, and do not treat unacknowledged work as done.

    Attributes:
        generation: the generation the fenced claim held, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        generation: int | None = None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.generation = generation


class InvalidAckError(ConflictError):
    """409 ``INVALID_OFFSET``: an ack for an unknown stream, behind the cursor or past the tail."""


class GoneError(ResponseError):
    """410: the offset is older than retained data, or the stream was soft-deleted."""


class PayloadTooLargeError(ResponseError):
    """413: the body is larger than the server accepts."""


class RateLimitedError(ResponseError):
    """429: too many requests. Retried automatically while the retry policy allows.

    Attributes:
        retry_after: the server's ``Retry-After`` in seconds, if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        url: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status, headers=headers)
        self.retry_after = retry_after


class ServerError(ResponseError):
    """A 5xx status other than 501. Retried automatically while the retry policy allows."""


class UnexpectedStatusError(ResponseError):
    """A status the protocol does not define for this operation."""
