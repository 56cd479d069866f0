"""Status and headers to error: classification, retryability, Retry-After and flags."""

from __future__ import annotations

import email.utils
import time

import pytest

import durable_streams as ds
from durable_streams._protocol import headers as h
from durable_streams._protocol.errors import (
    MAX_RETRY_AFTER,
    Op,
    error_for,
    is_retryable_status,
    retry_after,
)

URL = "http://example.test/v1/stream/orders"
NOW = 1_700_000_000.0


def classify(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    op: Op = Op.APPEND,
    sent_stream_seq: bool = False,
) -> ds.ResponseError:
    return error_for(status, headers or {}, op=op, url=URL, sent_stream_seq=sent_stream_seq)


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# -- every row of the status table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "op", "expected"),
    [
        (400, {}, Op.READ, ds.InvalidOffsetError),
        (400, {}, Op.APPEND, ds.BadRequestError),
        (400, {}, Op.CREATE, ds.BadRequestError),
        (400, {}, Op.PRODUCE, ds.BadRequestError),
        (401, {}, Op.READ, ds.UnauthorizedError),
        (401, {}, Op.APPEND, ds.UnauthorizedError),
        (403, {"producer-epoch": "4"}, Op.PRODUCE, ds.StaleEpochError),
        (403, {}, Op.APPEND, ds.ForbiddenError),
        (403, {}, Op.READ, ds.ForbiddenError),
        (404, {}, Op.READ, ds.StreamNotFoundError),
        (404, {}, Op.FORK, ds.StreamNotFoundError),
        (404, {}, Op.DELETE, ds.StreamNotFoundError),
        (405, {}, Op.APPEND, ds.NotSupportedError),
        (405, {}, Op.DELETE, ds.NotSupportedError),
        (501, {}, Op.APPEND, ds.NotSupportedError),
        (501, {}, Op.READ, ds.NotSupportedError),
        (409, {"stream-closed": "true"}, Op.APPEND, ds.StreamClosedError),
        (409, {"producer-expected-seq": "3"}, Op.PRODUCE, ds.SequenceGapError),
        (409, {}, Op.CREATE, ds.StreamExistsError),
        (409, {}, Op.FORK, ds.StreamExistsError),
        (409, {}, Op.APPEND, ds.ConflictError),
        (410, {}, Op.READ, ds.GoneError),
        (410, {}, Op.HEAD, ds.GoneError),
        (413, {}, Op.APPEND, ds.PayloadTooLargeError),
        (429, {}, Op.READ, ds.RateLimitedError),
        (500, {}, Op.READ, ds.ServerError),
        (502, {}, Op.APPEND, ds.ServerError),
        (503, {}, Op.CREATE, ds.ServerError),
        (504, {}, Op.DELETE, ds.ServerError),
        (599, {}, Op.HEAD, ds.ServerError),
        (418, {}, Op.APPEND, ds.UnexpectedStatusError),
        (302, {}, Op.READ, ds.UnexpectedStatusError),
        (422, {}, Op.CREATE, ds.UnexpectedStatusError),
    ],
)
def test_status_classification(
    status: int, headers: dict[str, str], op: Op, expected: type[ds.ResponseError]
) -> None:
    error = classify(status, headers, op=op)
    assert type(error) is expected
    assert isinstance(error, ds.ResponseError)
    assert isinstance(error, ds.DurableStreamsError)


@pytest.mark.parametrize(
    "status", [400, 401, 403, 404, 405, 409, 410, 413, 418, 429, 500, 501, 503]
)
def test_error_carries_url_status_and_headers(status: int) -> None:
    headers = {"x-request-id": "abc", "stream-next-offset": "0_1"}
    error = classify(status, headers)
    assert error.url == URL
    assert error.status == status
    assert error.headers["x-request-id"] == "abc"
    assert URL in str(error)
    assert str(status) in str(error)


def test_400_on_read_is_also_a_bad_request() -> None:
    # Code that handles every 400 catches BadRequestError, whatever the operation.
    assert isinstance(classify(400, op=Op.READ), ds.BadRequestError)


def test_400_on_other_operations_is_not_an_offset_error() -> None:
    for op in (Op.CREATE, Op.FORK, Op.APPEND, Op.CLOSE, Op.HEAD, Op.DELETE, Op.PRODUCE):
        assert not isinstance(classify(400, op=op), ds.InvalidOffsetError), op


def test_stale_epoch_carries_the_servers_epoch() -> None:
    error = classify(403, {"producer-epoch": "7"}, op=Op.PRODUCE)
    assert isinstance(error, ds.StaleEpochError)
    assert error.current_epoch == 7


@pytest.mark.parametrize("value", [None, "", "seven", "-1", "1.5", "\u00b2"])
def test_stale_epoch_without_a_usable_epoch_header_has_none(value: str | None) -> None:
    headers = {} if value is None else {"producer-epoch": value}
    error = classify(403, headers, op=Op.PRODUCE)
    assert isinstance(error, ds.StaleEpochError)
    assert error.current_epoch is None


def test_stale_epoch_is_not_a_forbidden_error() -> None:
    # A handler for authorisation failures must not swallow a fencing event, or vice versa.
    fenced = classify(403, {"producer-epoch": "2"}, op=Op.PRODUCE)
    forbidden = classify(403, op=Op.APPEND)
    assert not isinstance(fenced, ds.ForbiddenError)
    assert not isinstance(forbidden, ds.StaleEpochError)
    assert not issubclass(ds.StaleEpochError, ds.ForbiddenError)


# -- 409 variants -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", [Op.APPEND, Op.CLOSE, Op.PRODUCE])
@pytest.mark.parametrize("value", ["true", "TRUE", "True", " true "])
def test_409_with_stream_closed_is_stream_closed_with_final_offset(op: Op, value: str) -> None:
    error = classify(409, {"stream-closed": value, "stream-next-offset": "0000_0042"}, op=op)
    assert isinstance(error, ds.StreamClosedError)
    assert isinstance(error, ds.ConflictError)
    assert error.final_offset == "0000_0042"


def test_409_stream_closed_without_offset_has_no_final_offset() -> None:
    error = classify(409, {"stream-closed": "true"})
    assert isinstance(error, ds.StreamClosedError)
    assert error.final_offset is None


@pytest.mark.parametrize("value", ["false", "yes", "1", "", "truee"])
def test_409_with_stream_closed_not_true_is_not_stream_closed(value: str) -> None:
    error = classify(409, {"stream-closed": value, "stream-next-offset": "0_1"})
    assert not isinstance(error, ds.StreamClosedError)
    assert type(error) is ds.ConflictError


def test_409_with_expected_seq_is_a_sequence_gap() -> None:
    error = classify(
        409, {"producer-expected-seq": "3", "producer-received-seq": "5"}, op=Op.PRODUCE
    )
    assert isinstance(error, ds.SequenceGapError)
    assert isinstance(error, ds.ConflictError)
    assert (error.expected_seq, error.received_seq) == (3, 5)


@pytest.mark.parametrize("value", ["x", "-1", "\u00b2"])
def test_409_with_unusable_expected_seq_is_still_classified(value: str) -> None:
    # A malformed header from a buggy server must give an error to raise, not crash.
    error = classify(409, {"producer-expected-seq": value}, op=Op.PRODUCE)
    assert isinstance(error, ds.ConflictError)
    assert not isinstance(error, ds.SequenceGapError)


def test_409_gap_without_received_seq() -> None:
    error = classify(409, {"producer-expected-seq": "0"}, op=Op.PRODUCE)
    assert isinstance(error, ds.SequenceGapError)
    assert (error.expected_seq, error.received_seq) == (0, None)


def test_closed_takes_precedence_over_a_sequence_gap() -> None:
    # Servers report "closed" first, and it is the one conflict that can never be fixed.
    error = classify(
        409,
        {"stream-closed": "true", "stream-next-offset": "0_9", "producer-expected-seq": "3"},
        op=Op.PRODUCE,
    )
    assert isinstance(error, ds.StreamClosedError)
    assert error.final_offset == "0_9"


@pytest.mark.parametrize("op", [Op.CREATE, Op.FORK])
def test_409_on_create_or_fork_is_stream_exists(op: Op) -> None:
    error = classify(409, op=op)
    assert isinstance(error, ds.StreamExistsError)
    assert isinstance(error, ds.ConflictError)


def test_409_after_sending_stream_seq_is_a_sequence_conflict() -> None:
    error = classify(409, op=Op.APPEND, sent_stream_seq=True)
    assert isinstance(error, ds.SequenceConflictError)
    assert isinstance(error, ds.ConflictError)


def test_409_after_sending_stream_seq_on_a_closed_stream_is_stream_closed() -> None:
    error = classify(409, {"stream-closed": "true"}, op=Op.APPEND, sent_stream_seq=True)
    assert isinstance(error, ds.StreamClosedError)


def test_plain_409_on_append_is_a_plain_conflict() -> None:
    error = classify(409, op=Op.APPEND)
    assert type(error) is ds.ConflictError


# -- 429 and Retry-After ----------------------------------------------------------------------


def test_429_carries_retry_after_seconds() -> None:
    error = classify(429, {"retry-after": "12"})
    assert isinstance(error, ds.RateLimitedError)
    assert error.retry_after == 12.0


def test_429_carries_retry_after_from_an_http_date() -> None:
    error = classify(429, {"retry-after": http_date(time.time() + 120)})
    assert isinstance(error, ds.RateLimitedError)
    assert error.retry_after is not None
    assert 110 <= error.retry_after <= 121


def test_429_without_retry_after() -> None:
    error = classify(429)
    assert isinstance(error, ds.RateLimitedError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("3600", 3600.0),
        ("3601", MAX_RETRY_AFTER),
        ("999999999", MAX_RETRY_AFTER),
        ("-5", 0.0),
    ],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert retry_after({"retry-after": value}, now=NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    assert retry_after({"retry-after": http_date(NOW + 90)}, now=NOW) == pytest.approx(90.0)


def test_retry_after_http_date_in_the_past_is_no_wait() -> None:
    assert retry_after({"retry-after": http_date(NOW - 90)}, now=NOW) == 0.0


def test_retry_after_http_date_far_away_is_capped_at_an_hour() -> None:
    # A skewed clock or a confused server must not stall a client for days.
    assert retry_after({"retry-after": http_date(NOW + 7 * 86400)}, now=NOW) == 3600.0
    assert MAX_RETRY_AFTER == 3600.0


@pytest.mark.parametrize("value", ["", "soon", "NaN", "Tue, 99 Foo 2024 xx:yy:zz GMT", "12abc"])
def test_retry_after_garbage_is_ignored(value: str) -> None:
    assert retry_after({"retry-after": value}, now=NOW) is None


def test_retry_after_absent() -> None:
    assert retry_after({}, now=NOW) is None


# -- retryability ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize(
    "status", [200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 410, 413, 418, 501]
)
def test_final_statuses_are_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


def test_501_is_a_5xx_that_is_never_retried() -> None:
    # "Not implemented" will not become implemented by asking again.
    assert not is_retryable_status(501)
    assert isinstance(classify(501), ds.NotSupportedError)
    assert not isinstance(classify(501), ds.ServerError)


# -- boolean header flags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("tRuE", True),
        (" true ", True),
        ("false", False),
        ("yes", False),
        ("1", False),
        ("on", False),
        ("", False),
        ("true, true", False),
    ],
)
def test_flag_counts_only_true_in_any_case(value: str, expected: bool) -> None:
    assert h.flag({"stream-closed": value}, h.STREAM_CLOSED) is expected


def test_flag_absent_is_false() -> None:
    assert h.flag({}, h.STREAM_UP_TO_DATE) is False


def test_read_meta_closed_implies_up_to_date() -> None:
    meta = h.read_meta({"stream-next-offset": "0_5", "stream-closed": "TRUE"})
    assert meta.closed
    assert meta.up_to_date
    assert meta.next_offset == "0_5"
    assert meta.cursor is None


def test_read_meta_up_to_date_is_not_closed() -> None:
    meta = h.read_meta(
        {"stream-next-offset": "0_5", "stream-up-to-date": "true", "stream-cursor": "c1"}
    )
    assert meta.up_to_date
    assert not meta.closed
    assert meta.cursor == "c1"


def test_lower_keys_makes_header_lookup_case_insensitive() -> None:
    headers = h.lower_keys({"Stream-Next-Offset": "0_1", "STREAM-CLOSED": "true"})
    assert headers[h.STREAM_NEXT_OFFSET] == "0_1"
    assert h.flag(headers, h.STREAM_CLOSED)
