"""The producer's life cycle against the real server: closing the stream, restarting after
it, statistics of a close, use before start, a dropped producer, and the options record.

Regression tests for issue 11, items 4, 6, 7 and 9 (the producer's part).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any, get_type_hints

import pytest

import durable_streams as ds
from durable_streams._producer import ProducerOptions
from durable_streams._producer._options import ProducerConfig
from durable_streams.testing import ReferenceServer


def _path_of(stream: ds.Stream) -> str:
    return "/" + stream.url.split("://", 1)[1].split("/", 1)[1]


async def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but a counter
            await asyncio.sleep(0.005)


async def _read_to_eof(stream: ds.Stream) -> list[Any]:
    async with asyncio.timeout(10), stream.read(live=True) as reader:
        return [message async for message in reader]


# -- item 4: one record of "this producer closed the stream" ------------------------------


async def test_an_append_while_the_close_is_in_flight_is_refused_at_once(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    """Once close_stream() has begun, append raises ResourceClosedError at once: it is
    never accepted, sent after the close, and failed by the server with a 409 that would
    then also fail the receipt and the exit."""
    async with json_stream.producer("closing", linger=30.0) as producer:
        first = await producer.append("first")
        # Every POST is slow, so the close is still unanswered when the append comes.
        await asyncio.to_thread(
            server.inject_error, _path_of(json_stream), method="POST", delay_ms=300, count=2
        )
        closing = asyncio.create_task(producer.close_stream())
        await _wait_until(first.done)  # the flush is over; the close is on its way
        assert not closing.done()
        with pytest.raises(ds.ResourceClosedError):
            await producer.append("late")
        with pytest.raises(ds.ResourceClosedError):
            producer.append_nowait("late")
        offset = await closing
    # Leaving the block raised nothing: no batch failed.
    info = await json_stream.head()
    assert (info.closed, info.offset) == (True, offset)
    assert await _read_to_eof(json_stream) == ["first"]


async def test_an_append_right_after_close_stream_is_called_is_refused(
    json_stream: ds.Stream,
) -> None:
    async with json_stream.producer("closing-now", linger=30.0) as producer:
        await producer.append("buffered")
        closing = asyncio.create_task(producer.close_stream(final="end"))
        await asyncio.sleep(0)  # close_stream() has started
        with pytest.raises(ds.ResourceClosedError):
            await producer.append("too late")
        await closing
    assert await _read_to_eof(json_stream) == ["buffered", "end"]


async def test_after_a_restart_a_stream_this_producer_closed_stays_closed(
    json_stream: ds.Stream,
) -> None:
    """restart() changes the epoch; it does not forget that the stream is closed (today
    it cleared one of the two fields that said so and kept the other)."""
    async with json_stream.producer("closed-restart") as producer:
        await producer.append("x")
        offset = await producer.close_stream()
        await producer.restart()
        assert producer.epoch == 1
        with pytest.raises(ds.ResourceClosedError):
            await producer.append("after the restart")
        assert await producer.close_stream() == offset
    assert await _read_to_eof(json_stream) == ["x"]


async def test_a_failed_close_can_be_tried_again_after_restart(
    server: ReferenceServer, json_stream: ds.Stream
) -> None:
    await asyncio.to_thread(
        server.inject_error, _path_of(json_stream), method="POST", status=400, count=1
    )
    async with json_stream.producer("close-again") as producer:
        with pytest.raises(ds.BadRequestError):
            await producer.close_stream(final="end")
        with pytest.raises(ds.BadRequestError):
            await producer.close_stream(final="end")  # the same outcome, not a new close
        await producer.restart()
        offset = await producer.close_stream(final="end")
    assert (await json_stream.head()).offset == offset
    assert await _read_to_eof(json_stream) == ["end"]


# -- item 7: statistics of a close; use before start -------------------------------------


@pytest.mark.parametrize("final", [None, "end"], ids=["close-only", "with-final"])
async def test_close_stream_is_not_counted_as_a_duplicate(
    json_stream: ds.Stream, final: str | None
) -> None:
    async with json_stream.producer("counted") as producer:
        await producer.append("x")
        if final is None:
            await producer.close_stream()
        else:
            await producer.close_stream(final=final)
        stats = producer.statistics()
    assert stats.duplicates == 0
    assert stats.batches_sent == 2


async def test_append_nowait_before_start_is_a_usage_error_not_use_after_close(
    json_stream: ds.Stream,
) -> None:
    producer = json_stream.producer("not-started")
    with pytest.raises(ds.UsageError) as caught:
        producer.append_nowait("x")
    assert not isinstance(caught.value, ds.ResourceClosedError)
    assert "start" in str(caught.value)
    await producer.start()
    receipt = producer.append_nowait("x")  # once started, it works
    await producer.aclose()
    assert (await receipt).seq == 0


async def test_use_after_aclose_is_resource_closed(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("after-close")
    async with producer:
        await producer.append("x")
    for use in (producer.append("y"), producer.start(), producer.close_stream()):
        with pytest.raises(ds.ResourceClosedError):
            await use
    with pytest.raises(ds.ResourceClosedError):
        producer.append_nowait("y")


# -- item 6: a producer dropped without aclose() -------------------------------------------


async def test_a_dropped_producer_warns_and_leaves_no_task(
    json_stream: ds.Stream, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(asyncio.all_tasks())
    producer = json_stream.producer("dropped", linger=30.0)
    receipt = await producer.append("never sent")  # started by its first append
    assert len(asyncio.all_tasks() - before) == 1
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.warns(ResourceWarning, match="never closed"):
            del producer  # the last reference: the sender task holds none
        async with asyncio.timeout(5):
            while asyncio.all_tasks() - before:  # noqa: ASYNC110 - the task's end
                await asyncio.sleep(0.005)
        gc.collect()
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]
    with pytest.raises(ds.ResourceClosedError):
        await receipt
    assert await json_stream.read_all() == []


async def test_a_closed_or_unstarted_producer_does_not_warn(json_stream: ds.Stream) -> None:
    unstarted = json_stream.producer("unstarted")
    async with json_stream.producer("closed") as closed:
        await closed.append("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del unstarted, closed
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- item 9: options validated once, forwarded unchanged -----------------------------------


def test_stream_producer_forwards_one_keyword_set() -> None:
    parameters = inspect.signature(ds.Stream.producer).parameters
    assert [(p.name, p.kind) for p in parameters.values()] == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("producer_id", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("options", inspect.Parameter.VAR_KEYWORD),
    ]
    # One set of names: the forwarded options, the producer's keywords, the record's fields.
    options = list(get_type_hints(ProducerOptions))
    keywords = inspect.signature(ds.IdempotentProducer).parameters.values()
    assert [p.name for p in keywords if p.kind is inspect.Parameter.KEYWORD_ONLY] == options
    assert [f.name for f in dataclasses.fields(ProducerConfig)] == ["producer_id", *options]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("producer_id", ""),
        ("producer_id", "tab\there"),
        ("epoch", -1),
        ("epoch", 2**53),
        ("epoch", True),
        ("auto_claim", 1),
        ("max_batch_bytes", 0),
        ("max_batch_items", 0),
        ("linger", -1),
        ("linger", float("inf")),
        ("max_in_flight", 1025),
        ("max_buffer_bytes", 0),
    ],
)
def test_every_bad_option_names_its_argument(
    session: ds.Session, argument: str, value: object
) -> None:
    stream = session.stream("/t/never-created", content_type="application/json")
    options: dict[str, Any] = {argument: value}
    producer_id = options.pop("producer_id", "ok")
    with pytest.raises(ds.InvalidArgumentError) as caught:
        stream.producer(producer_id, **options)
    assert caught.value.argument == argument


async def test_restart_with_a_bad_epoch_names_it(json_stream: ds.Stream) -> None:
    producer = json_stream.producer("bad-restart")
    with pytest.raises(ds.InvalidArgumentError) as caught:
        await producer.restart(epoch=-1)
    assert caught.value.argument == "epoch"


def test_options_are_applied_as_given(session: ds.Session) -> None:
    stream = session.stream("/t/never-created", content_type="application/json")
    producer = stream.producer("opts", epoch=3, auto_claim=True, linger=0)
    assert (producer.producer_id, producer.epoch, producer.auto_claim) == ("opts", 3, True)
    with pytest.raises(TypeError):
        stream.producer("opts", lingr=1)  # type: ignore[call-arg]
