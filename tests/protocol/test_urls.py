"""Stream names, origins and redirect targets: pure functions, no server."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol import urls
from durable_streams._protocol.redact import redact_text, redact_url
from durable_streams._protocol.retry import RetryBudget


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("a", "a"),
        ("/a/b", "a/b"),
        ("q?x=1", "q%3Fx=1"),
        ("h#frag", "h%23frag"),
        ("a b", "a%20b"),
        ("%41", "%2541"),
        ("caf\u00e9", "caf%C3%A9"),
        ("x?live=sse", "x%3Flive=sse"),
        ("...", "..."),
    ],
)
def test_a_name_is_encoded_segment_by_segment(name: str, path: str) -> None:
    assert urls.stream_path(name) == path


@pytest.mark.parametrize(
    "name", ["a/../b", "..", "./x", "a//b", "x/", "", "a\r\nb", "a\x00", "a\x7f", "a\x85", "\ud800"]
)
def test_names_that_could_address_another_stream_are_refused(name: str) -> None:
    with pytest.raises(ds.InvalidArgumentError) as refused:
        urls.stream_path(name)
    assert refused.value.argument == "url"


@given(st.text(min_size=1))
def test_any_accepted_name_decodes_back_to_itself(name: str) -> None:
    try:
        path = urls.stream_path(name)
    except ds.InvalidArgumentError:
        return
    assert "?" not in path
    assert "#" not in path
    assert path.isascii()
    assert "/".join(unquote(segment) for segment in path.split("/")) == name.removeprefix("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a?x=1",
        "http://h/a#f",
        "http://h/a/../b",
        "http://h/a/%2e%2E/b",
        "http://h/a\nb",
        "ftp://h/a",
        "http:///a",
    ],
)
def test_absolute_stream_urls_with_a_query_fragment_or_dot_segment_are_refused(
    url: str,
) -> None:
    with pytest.raises(ds.InvalidArgumentError):
        urls.check_stream_url(url)


def test_absolute_stream_urls_are_percent_encoded_where_needed() -> None:
    assert urls.check_stream_url("http://h:1/a b/%41") == "http://h:1/a%20b/%41"


def test_origin_fills_in_default_ports_and_ignores_case() -> None:
    assert urls.origin("HTTP://Host/x") == ("http", "host", 80)
    assert urls.origin("https://host/x") == urls.origin("https://HOST:443/y")
    assert urls.origin("http://host:8080/") != urls.origin("http://host/")


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/v1/other", "http://h:1/v1/other"),
        ("other", "http://h:1/v1/other"),
        ("http://h:1/v1/x", "http://h:1/v1/x"),
        ("http://h:2/v1/x", None),
        ("https://h:1/v1/x", None),
        ("/v1/x?offset=0", None),
        ("/v1/x#f", None),
        ("/v1/a/../x", "http://h:1/v1/x"),  # resolved first: a clean same-origin path
        ("/v1/\r\nx", None),
    ],
)
def test_only_clean_same_origin_redirects_may_be_followed(
    location: str, target: str | None
) -> None:
    assert urls.resolve_redirect("http://h:1/v1/s", location) == target


def test_redaction_hides_query_values_and_passwords_but_keeps_names() -> None:
    url = "http://u:secret@h/s?token=abc&x=1&flag"
    assert redact_url(url) == "http://u:***@h/s?token=***&x=***&flag"
    text = f"failed: Cannot connect to {url!r} (and https://h/?k=v)"
    redacted = redact_text(text)
    assert "secret" not in redacted
    assert "abc" not in redacted
    assert "k=***" in redacted


def test_errors_redact_their_message_and_url() -> None:
    error = ds.NetworkError("GET http://u:pw@h/s?token=t1 failed", url="http://u:pw@h/s?token=t1")
    assert "pw" not in str(error)
    assert "t1" not in repr(error)
    assert error.url == "http://u:***@h/s?token=***"


def test_a_budget_grants_exactly_its_limit_and_counts_each_retry_once() -> None:
    budget = RetryBudget(limit=2, initial=0.1, multiplier=2, maximum=1)
    assert budget.take_retry() is False  # the first request is no retry
    delays = [budget.next_delay(), budget.next_delay(), budget.next_delay()]
    assert delays[2] is None
    assert all(d is not None and 0 <= d <= 1 for d in delays[:2])
    assert [budget.take_retry(), budget.take_retry(), budget.take_retry()] == [True, True, False]
    budget.reset()  # progress: the next failure is the first again
    assert budget.next_delay(retry_after=5.0) == 5.0
    assert budget.used == 3


def test_an_unlimited_budget_never_gives_up() -> None:
    budget = ds.RetryPolicy(initial_delay=0.01, max_delay=0.02).budget(None)
    assert all(budget.next_delay() is not None for _ in range(1000))


def test_every_module_logs_through_the_one_redacting_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A logger's filter does not apply to records of its child loggers: a module with a
    # logger of its own ("durable_streams.subscriptions") would log secrets unredacted.
    from durable_streams import _log, _reader  # noqa: PLC0415
    from durable_streams._producer import _sender  # noqa: PLC0415
    from durable_streams._subscriptions import pull, runner  # noqa: PLC0415

    loggers = [vars(module)["log"] for module in (_reader, _sender, pull, runner)]
    assert {id(logger) for logger in loggers} == {id(_log.log)}
    with caplog.at_level("DEBUG", logger="durable_streams"):
        vars(pull)["log"].debug("claim at %s failed", "http://u:pw@h/s?token=t1")
    assert "pw" not in caplog.text
    assert "t1" not in caplog.text
