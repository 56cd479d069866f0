"""Header and query-parameter names, and the reading of protocol response headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Names are lower case: responses are read through lower-cased mappings, and HTTP header
# names are case-insensitive on the wire.
CONTENT_TYPE = "content-type"
LOCATION = "location"
ETAG = "etag"
RETRY_AFTER = "retry-after"
STREAM_NEXT_OFFSET = "stream-next-offset"
STREAM_UP_TO_DATE = "stream-up-to-date"
STREAM_CLOSED = "stream-closed"
STREAM_CURSOR = "stream-cursor"
STREAM_TTL = "stream-ttl"
STREAM_EXPIRES_AT = "stream-expires-at"
STREAM_SEQ = "stream-seq"
STREAM_FORKED_FROM = "stream-forked-from"
STREAM_FORK_OFFSET = "stream-fork-offset"
STREAM_FORK_SUB_OFFSET = "stream-fork-sub-offset"
SSE_DATA_ENCODING = "stream-sse-data-encoding"
PRODUCER_ID = "producer-id"
PRODUCER_EPOCH = "producer-epoch"
PRODUCER_SEQ = "producer-seq"
PRODUCER_EXPECTED_SEQ = "producer-expected-seq"
PRODUCER_RECEIVED_SEQ = "producer-received-seq"

# Query parameters the protocol owns; callers' params may never replace them.
PARAM_OFFSET = "offset"
PARAM_LIVE = "live"
PARAM_CURSOR = "cursor"
RESERVED_PARAMS = frozenset({PARAM_OFFSET, PARAM_LIVE, PARAM_CURSOR})

TRUE = "true"


def flag(headers: Mapping[str, str], name: str) -> bool:
    """Whether a boolean protocol header is set: only ``true``, in any case, counts."""
    value = headers.get(name)
    return value is not None and value.strip().lower() == TRUE


def optional_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when it is absent or not a plain decimal."""
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    # isdigit() alone accepts superscripts and other scripts' digits.
    return int(value) if value.isascii() and value.isdigit() else None


@dataclass(frozen=True, slots=True)
class ReadMeta:
    """The position headers of one read response (catch-up or long-poll)."""

    next_offset: str | None
    cursor: str | None
    up_to_date: bool
    closed: bool


def read_meta(headers: Mapping[str, str]) -> ReadMeta:
    """Extract the position headers of a read response."""
    closed = flag(headers, STREAM_CLOSED)
    return ReadMeta(
        next_offset=headers.get(STREAM_NEXT_OFFSET),
        cursor=headers.get(STREAM_CURSOR),
        # Closed implies up to date: the reader has everything there will ever be.
        up_to_date=closed or flag(headers, STREAM_UP_TO_DATE),
        closed=closed,
    )


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """A plain dict of ``headers`` with lower-case names (the first value of a repeat wins)."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        out.setdefault(key.lower(), value)
    return out
