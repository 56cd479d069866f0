"""Stream: a handle on one stream URL. It holds no connections of its own."""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import urlsplit

from ._errors import (
    DurableStreamsError,
    InvalidArgumentError,
    MissingHeaderError,
    StreamExistsError,
)
from ._protocol import headers as h
from ._protocol.errors import Op, error_for
from ._protocol.framing import DEFAULT_CONTENT_TYPE, encode_append, precheck_message
from ._reader import LiveMode, StreamReader, check_offset
from ._session import session_wire
from ._transport import Response
from ._types import AppendResult, CreateResult, StreamInfo

if TYPE_CHECKING:
    from ._producer import IdempotentProducer, ProducerOptions
    from ._session import Session

__all__ = ["Stream"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class Stream:
    """A handle on the stream at one URL.

    Construction does no I/O; get one from :meth:`Session.stream`. Every method sends
    requests through the session, so the session's headers, timeouts and retry policy
    apply. A handle remembers the stream's content type once it learns it (from
    :meth:`create`, :meth:`head` or a read), because appends are framed by it.
    """

    def __init__(self, session: Session, url: str, *, content_type: str | None = None) -> None:
        if content_type is not None:
            _check_content_type(content_type)
        self.session = session
        self.url = url
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Stream {self.url!r} content_type={self.content_type!r}>"

    # -- create / fork / head / delete ------------------------------------------------

    async def create(
        self,
        *,
        content_type: str = "application/octet-stream",
        ttl: int | None = None,
        expires_at: datetime | str | None = None,
        closed: bool = False,
        data: object = None,
    ) -> CreateResult:
        """Create the stream, or confirm that an identical one exists.

        Args:
            content_type: the stream's type, fixed for its lifetime. ``application/json``
                makes a JSON stream whose messages are JSON values.
            ttl: a sliding time-to-live in seconds, reset by reads and writes.
            expires_at: an absolute expiry (an aware ``datetime`` or an RFC 3339 string).
                Give ``ttl`` or ``expires_at``, not both.
            closed: create the stream already closed (with ``data`` as its whole content).
            data: initial content, one message as for :meth:`append` (empty ``bytes``
                mean no data).

        Returns a :class:`CreateResult` whose ``created`` is False when an identical stream
        already existed (the server ignores ``data`` then). Retried on transient failures:
        a replayed create is answered 200.

        Raises:
            StreamExistsError: a stream with a different configuration (content type, TTL,
                expiry, closed state) is at this URL.
            InvalidArgumentError: bad arguments, before anything is sent.
        """
        _check_content_type(content_type)
        if not isinstance(closed, bool):
            raise InvalidArgumentError(f"closed must be a bool, got {closed!r}", argument="closed")
        headers = {h.CONTENT_TYPE: content_type, **_expiry_headers(ttl, expires_at)}
        if closed:
            headers[h.STREAM_CLOSED] = h.TRUE
        body = None if data is None else encode_body(data, content_type, allow_empty=True)
        response = await session_wire(self.session).fetch(
            "PUT", self.url, headers=headers, body=body, budget=session_wire(self.session).budget()
        )
        try:
            return self._created(response, Op.CREATE, fallback_type=content_type)
        except StreamExistsError as exc:
            raise await self._explain_conflict(exc) from None

    async def fork(
        self,
        source: str | Stream,
        *,
        offset: str | None = None,
        sub_offset: int | None = None,
        content_type: str | None = None,
        ttl: int | None = None,
        expires_at: datetime | str | None = None,
    ) -> CreateResult:
        """Create this stream as a fork of ``source`` on the same server.

        The fork holds the source's data before ``offset`` (an offset the server returned;
        by default the source's tail), moved ``sub_offset`` messages (JSON) or bytes
        further, and then its own appends. The fork headers are sent on this request only.
        A producer writing to a fork starts afresh there (sequence 0).

        Args:
            source: the source stream: a handle, a path (joined to the session's base URL)
                or an absolute URL on the same server.
            offset: where the fork diverges: data strictly before it is inherited.
            sub_offset: a further count of messages (JSON) or bytes past ``offset``.
            content_type: must equal the source's; by default it is inherited.
            ttl: as for :meth:`create`; by default inherited from the source.
            expires_at: as for :meth:`create`; by default inherited from the source.

        Raises:
            StreamNotFoundError: the source does not exist.
            BadRequestError: the offset or sub-offset is beyond the source's data.
            StreamExistsError: a different stream is at this URL, the content type differs
                from the source's, or the source was deleted.
        """
        headers = {
            h.STREAM_FORKED_FROM: self._source_path(source),
            **_expiry_headers(ttl, expires_at),
        }
        if offset is not None:
            headers[h.STREAM_FORK_OFFSET] = check_offset(offset, sentinels=False)
        if sub_offset is not None:
            if isinstance(sub_offset, bool) or not isinstance(sub_offset, int) or sub_offset < 0:
                raise InvalidArgumentError(
                    f"sub_offset must be an integer >= 0, got {sub_offset!r}",
                    argument="sub_offset",
                )
            headers[h.STREAM_FORK_SUB_OFFSET] = str(sub_offset)
        if content_type is not None:
            _check_content_type(content_type)
            headers[h.CONTENT_TYPE] = content_type
        response = await session_wire(self.session).fetch(
            "PUT", self.url, headers=headers, budget=session_wire(self.session).budget()
        )
        return self._created(response, Op.FORK, fallback_type=content_type)

    async def head(self) -> StreamInfo:
        """The stream's metadata: content type, tail offset, closed state, TTL and expiry.

        Never cached: every call asks the server. Does not reset the stream's TTL.

        Raises:
            StreamNotFoundError: no stream here.
            GoneError: the stream was deleted (forks keep its data).
        """
        response = await session_wire(self.session).fetch(
            "HEAD", self.url, budget=session_wire(self.session).budget()
        )
        if response.status != 200:
            raise error_for(response.status, response.headers, op=Op.HEAD, url=self.url)
        hdrs = response.headers
        content_type = hdrs.get(h.CONTENT_TYPE)
        if content_type:
            self.content_type = content_type
        return StreamInfo(
            content_type=content_type,
            offset=self._next_offset(hdrs, "the answer to a HEAD"),
            closed=h.flag(hdrs, h.STREAM_CLOSED),
            ttl=h.optional_int(hdrs, h.STREAM_TTL),
            expires_at=hdrs.get(h.STREAM_EXPIRES_AT),
            etag=hdrs.get(h.ETAG),
        )

    async def exists(self) -> bool:
        """Whether a stream exists at this URL (a HEAD that answers 404 means no)."""
        response = await session_wire(self.session).fetch(
            "HEAD", self.url, budget=session_wire(self.session).budget()
        )
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        raise error_for(response.status, response.headers, op=Op.HEAD, url=self.url)

    async def delete(self) -> None:
        """Delete the stream. Readers still attached get :class:`StreamNotFoundError`.

        Raises:
            StreamNotFoundError: no stream here (also after a retry whose first attempt had
                already deleted it).
            GoneError: already deleted while forks keep its data.
        """
        response = await session_wire(self.session).fetch(
            "DELETE", self.url, budget=session_wire(self.session).budget()
        )
        if response.status not in (200, 204):
            raise error_for(response.status, response.headers, op=Op.DELETE, url=self.url)

    # -- writing ----------------------------------------------------------------------

    async def append(
        self, data: object, *, seq: str | None = None, close: bool = False
    ) -> AppendResult:
        """Append one message (JSON streams) or a chunk of bytes (other streams), in one POST.

        On a JSON stream ``data`` is one message: any JSON value (a list is one message,
        not several), or ``bytes`` holding exactly one already-encoded JSON value (an
        encoded array is one message too; :meth:`append_stream` sends a raw body whose
        array elements become messages). On other streams ``data`` is ``bytes`` or
        ``str`` (sent as UTF-8). Learning the content type costs one HEAD the first time
        if the handle does not know it.

        Args:
            data: the message or bytes to append.
            seq: a ``Stream-Seq`` value; each must sort above the last (byte-wise), so
                zero-pad numbers.
            close: close the stream atomically with this append (see :meth:`close`).

        A plain append is retried on transient failures when ``RetryPolicy.retry_appends``
        is set (the default), which is at-least-once: if the server stored the data but its
        answer was lost, the retry stores it again. Use :meth:`producer` for exactly-once.

        Raises:
            InvalidArgumentError: empty data, a value that is not JSON (NaN included), or a
                type the stream cannot take; nothing is sent.
            StreamClosedError: the stream is closed (``final_offset`` tells where it ended).
            SequenceConflictError: ``seq`` is not above the last one.
        """
        if not isinstance(close, bool):
            raise InvalidArgumentError(f"close must be a bool, got {close!r}", argument="close")
        if self.content_type is None:
            _precheck(data)  # before the HEAD: bad input sends nothing at all
        content_type = await self.resolve_content_type()
        body = encode_body(data, content_type, allow_empty=False)
        return await self._post(body, content_type=content_type, seq=seq, close=close)

    async def append_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        seq: str | None = None,
        close: bool = False,
    ) -> AppendResult:
        """Append the concatenation of ``chunks`` as one chunked request body.

        The chunks are sent as they come, so a large body never sits in memory whole. This
        is the protocol's raw wire form, unlike :meth:`append`: on a JSON stream the chunks
        must together form one JSON value, and an array appends each of its elements as a
        message. A streamed body cannot be replayed, so it is never retried.
        """
        if not hasattr(chunks, "__aiter__"):
            raise InvalidArgumentError(
                "chunks must be an async iterable of bytes", argument="chunks"
            )
        content_type = await self.resolve_content_type()
        return await self._post(
            _checked_chunks(chunks), content_type=content_type, seq=seq, close=close
        )

    async def close(self, *, final: object = _MISSING) -> str:
        """Close the stream: readers see end-of-stream once they reach its last data.

        Without ``final`` this is idempotent: closing a closed stream succeeds and returns
        the same final offset, and it is retried on transient failures. With ``final`` the
        message is appended and the stream closed atomically; that form is not idempotent
        (a stream already closed raises :class:`StreamClosedError`), and is retried only
        under ``RetryPolicy.retry_appends``. For a retry-safe final message, close through
        a producer.

        Returns the final offset. This is the protocol's close, not resource cleanup: a
        ``Stream`` holds no resources.
        """
        if final is not _MISSING:
            result = await self.append(final, close=True)
            return result.offset
        response = await session_wire(self.session).fetch(
            "POST",
            self.url,
            headers={h.STREAM_CLOSED: h.TRUE},
            budget=session_wire(self.session).budget(),
        )
        hdrs = response.headers
        # A plain close of a closed stream may be answered 409 + Stream-Closed: still closed.
        if response.status in (200, 204) or (
            response.status == 409 and h.flag(hdrs, h.STREAM_CLOSED)
        ):
            if not h.flag(hdrs, h.STREAM_CLOSED):  # a success that is no answer to a close
                raise MissingHeaderError(
                    h.STREAM_CLOSED, what="the answer to a close", url=self.url,
                    status=response.status, headers=hdrs,
                )  # fmt: skip
            return self._next_offset(hdrs, "the answer to a close")
        raise error_for(response.status, hdrs, op=Op.CLOSE, url=self.url)

    # -- reading ----------------------------------------------------------------------

    def read(
        self, offset: str = "-1", *, live: LiveMode = True, cursor: str | None = None
    ) -> StreamReader:
        """Read from ``offset``: catch up with plain GETs, then (if ``live``) follow live.

        No I/O until iteration starts. Use the reader in ``async for`` (messages), with
        :meth:`StreamReader.batches`, or with an accumulator (``read_all``, ``body``,
        ``text``); ``async with`` closes a live connection promptly.

        Args:
            offset: ``"-1"`` (the beginning), ``"now"`` (only new data), an offset the
                server returned (for example ``Batch.offset`` saved as a checkpoint), or
                a :attr:`StreamReader.position` (the place after exactly one message).
            live: ``False`` stops once caught up; ``True`` or ``"long-poll"`` then
                long-polls; ``"sse"`` then reads Server-Sent Events (falling back to
                long-poll if SSE connections keep making no progress). Every mode stops
                at the end of a closed stream.
            cursor: a cursor from an earlier read, to echo on the first live request.
        """
        return StreamReader(self, offset=offset, live=live, cursor=cursor)

    async def read_all(self, offset: str = "-1") -> list[Any]:
        """Every message from ``offset`` up to the current tail (catch-up only)."""
        async with self.read(offset, live=False) as reader:
            return await reader.read_all()

    def producer(self, producer_id: str, **options: Unpack[ProducerOptions]) -> IdempotentProducer:
        """An idempotent producer writing to this stream; see :class:`IdempotentProducer`.

        No I/O: the producer starts on ``async with`` (or its first append). The options
        (``epoch``, ``auto_claim``, ``max_batch_bytes``, ``max_batch_items``, ``linger``,
        ``max_in_flight``, ``max_buffer_bytes``) and their defaults are documented on
        :class:`IdempotentProducer`, which validates them.
        """
        from ._producer import IdempotentProducer  # noqa: PLC0415 - import cycle

        return IdempotentProducer(self, producer_id, **options)

    # -- internals --------------------------------------------------------------------

    async def resolve_content_type(self) -> str:
        """The stream's content type: the one the handle knows, else learned by one HEAD.

        Appends and SSE reads need it to frame and decode messages; they call this, so
        the HEAD happens at most once per handle.

        Raises:
            StreamNotFoundError: no stream here (when a HEAD was needed).
        """
        if self.content_type is None:
            info = await self.head()
            self.content_type = info.content_type or DEFAULT_CONTENT_TYPE
        return self.content_type

    async def _post(
        self,
        body: bytes | AsyncIterable[bytes],
        *,
        content_type: str,
        seq: str | None,
        close: bool,
    ) -> AppendResult:
        headers = {h.CONTENT_TYPE: content_type}
        if seq is not None:
            if not isinstance(seq, str) or not seq or not seq.isprintable():
                raise InvalidArgumentError(
                    f"seq must be a non-empty printable str, got {seq!r}", argument="seq"
                )
            headers[h.STREAM_SEQ] = seq
        if close:
            headers[h.STREAM_CLOSED] = h.TRUE
        retry = self.session.retry
        response = await session_wire(self.session).fetch(
            "POST",
            self.url,
            headers=headers,
            body=body,
            budget=retry.budget(retry.max_retries if retry.retry_appends else 0),
        )
        if response.status not in (200, 204):
            raise error_for(
                response.status,
                response.headers,
                op=Op.APPEND,
                url=self.url,
                sent_stream_seq=seq is not None,
            )
        if close and not h.flag(response.headers, h.STREAM_CLOSED):
            raise MissingHeaderError(
                h.STREAM_CLOSED, what="the answer to a closing append", url=self.url,
                status=response.status, headers=response.headers,
            )  # fmt: skip
        return AppendResult(
            offset=self._next_offset(response.headers, "the answer to an append"),
            closed=h.flag(response.headers, h.STREAM_CLOSED),
        )

    async def _explain_conflict(self, error: StreamExistsError) -> StreamExistsError:
        """The 409 of a create, saying what differs when a HEAD can tell (the closed state)."""
        try:
            existing = await self.head()
        except DurableStreamsError:
            return error  # the original answer is all there is to say
        what = "a closed stream" if existing.closed else "a stream with a different configuration"
        hint = (
            " (create(..., closed=True) confirms it, or delete it first)" if existing.closed else ""
        )
        return StreamExistsError(
            f"{what} exists at this URL{hint}",
            existing=existing,
            url=self.url,
            status=error.status,
            headers=error.headers,
        )

    def _created(self, response: Response, op: Op, *, fallback_type: str | None) -> CreateResult:
        if response.status not in (200, 201):
            raise error_for(response.status, response.headers, op=op, url=self.url)
        hdrs = response.headers
        self.content_type = hdrs.get(h.CONTENT_TYPE) or fallback_type or self.content_type
        return CreateResult(
            created=response.status == 201,
            offset=self._next_offset(hdrs, f"the answer to a {op.value}"),
            closed=h.flag(hdrs, h.STREAM_CLOSED),
            content_type=self.content_type,
            location=hdrs.get(h.LOCATION),
        )

    def _next_offset(self, headers: Mapping[str, str], what: str) -> str:
        """The ``Stream-Next-Offset`` every successful answer but a delete carries."""
        offset = headers.get(h.STREAM_NEXT_OFFSET)
        if not offset:
            raise MissingHeaderError(h.STREAM_NEXT_OFFSET, what=what, url=self.url, headers=headers)
        return offset

    def _source_path(self, source: str | Stream) -> str:
        url = source.url if isinstance(source, Stream) else self.session.url_for(source)
        src, dst = urlsplit(url), urlsplit(self.url)
        if (src.scheme, src.netloc) != (dst.scheme, dst.netloc):
            raise InvalidArgumentError(
                f"fork source {url!r} is not on the same server as {self.url!r}"
            )
        return src.path + (f"?{src.query}" if src.query else "")


def encode_body(data: object, content_type: str, *, allow_empty: bool) -> bytes:
    """The request body that appends ``data`` as one message (see framing.encode_append)."""
    return encode_append(data, content_type, allow_empty=allow_empty)


def _precheck(data: object) -> None:
    """Refuse data that no stream of any content type could take."""
    precheck_message(data)


async def _checked_chunks(chunks: AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    async for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidArgumentError(
                f"append_stream chunks must be bytes, got {type(chunk).__name__}"
            )
        yield bytes(chunk)


def _check_content_type(content_type: object) -> None:
    if (
        not isinstance(content_type, str)
        or "/" not in content_type
        or not content_type.isprintable()
    ):
        raise InvalidArgumentError(
            f"content_type must be a MIME type like 'application/json', got {content_type!r}",
            argument="content_type",
        )


def _expiry_headers(ttl: int | None, expires_at: datetime | str | None) -> dict[str, str]:
    if ttl is not None and expires_at is not None:
        raise InvalidArgumentError("give ttl or expires_at, not both", argument="expires_at")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise InvalidArgumentError(
                f"ttl must be an integer number of seconds >= 0, got {ttl!r}",
                argument="ttl",
            )
        return {h.STREAM_TTL: str(ttl)}
    if expires_at is not None:
        return {h.STREAM_EXPIRES_AT: _rfc3339(expires_at)}
    return {}


def _rfc3339(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidArgumentError("expires_at must be timezone-aware", argument="expires_at")
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise InvalidArgumentError(
                f"expires_at must be an RFC 3339 timestamp, got {value!r}", argument="expires_at"
            )
        return value
    raise InvalidArgumentError(
        f"expires_at must be a datetime or str, got {type(value).__name__}", argument="expires_at"
    )
