"""The blocking facade (durable_streams.sync) against the real server: what a script sees."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

import durable_streams as ds
import durable_streams.sync as dss

FAST = ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)


class Server(Protocol):
    @property
    def url(self) -> str: ...


@pytest.fixture
def session(server: Server) -> Iterator[dss.Session]:
    with dss.Session(server.url, retry=FAST) as s:
        yield s


@pytest.fixture
def json_stream(session: dss.Session, path: str) -> dss.Stream:
    stream = session.stream(path)
    stream.create(content_type="application/json")
    return stream


def _write_then_close(stream: dss.Stream, items: list[Any], started: threading.Event) -> None:
    started.wait()
    for item in items:
        stream.append(item)
    stream.close()


# -- the stream handle ----------------------------------------------------------------


def test_create_append_read_close_delete(session: dss.Session, path: str) -> None:
    stream = session.stream(path)
    assert not stream.exists()
    created = stream.create(content_type="application/json")
    assert created.created
    assert stream.content_type == "application/json"
    assert stream.create(content_type="application/json").created is False
    first = stream.append({"n": 1})
    stream.append([1, 2])  # one message, a list
    assert stream.read_all() == [{"n": 1}, [1, 2]]
    assert stream.read_all(first.offset) == [[1, 2]]
    final = stream.close()
    info = stream.head()
    assert info.closed
    assert info.offset == final
    with pytest.raises(ds.StreamClosedError):
        stream.append({"n": 3})
    stream.delete()
    assert not stream.exists()


def test_errors_are_the_async_apis_typed_errors(session: dss.Session, path: str) -> None:
    stream = session.stream(path)
    with pytest.raises(ds.StreamNotFoundError) as info:
        stream.head()
    assert info.value.status == 404
    stream.create(content_type="text/plain")
    with pytest.raises(ds.StreamExistsError):
        stream.create(content_type="application/json")
    with pytest.raises(ds.InvalidArgumentError):
        stream.append(b"")
    with pytest.raises(ds.InvalidArgumentError):
        session.stream("../escape")
    with pytest.raises(ds.InvalidArgumentError):
        dss.Session("not a url")


def test_byte_stream_body_text_and_append_stream(session: dss.Session, path: str) -> None:
    stream = session.stream(path)
    stream.create(content_type="text/plain")
    stream.append("hello ")
    chunks = (part.encode() for part in ["wor", "ld"])
    stream.append_stream(chunks)
    assert stream.read(live=False).text() == "hello world"
    assert stream.read(live=False).body() == b"hello world"


def test_fork_takes_a_blocking_stream_as_source(session: dss.Session, path: str) -> None:
    source = session.stream(path)
    source.create(content_type="application/json")
    source.append({"n": 1})
    fork = session.stream(path + "-fork")
    fork.fork(source)
    fork.append({"n": 2})
    assert fork.read_all() == [{"n": 1}, {"n": 2}]
    assert source.read_all() == [{"n": 1}]


# -- the reader ---------------------------------------------------------------------


def test_reader_is_a_plain_iterator_with_positions(json_stream: dss.Stream) -> None:
    for n in range(5):
        json_stream.append({"n": n})
    with json_stream.read(live=False) as reader:
        seen = []
        for message in reader:
            seen.append(message["n"])
            if len(seen) == 2:
                break
        position = reader.position
        assert reader.mode in ("catch-up", "done")
    assert seen == [0, 1]
    # The position is exact: resuming there gives exactly the rest.
    assert [m["n"] for m in json_stream.read(position, live=False)] == [2, 3, 4]
    with pytest.raises(ds.ResourceClosedError):
        next(reader)
    assert reader.position == position  # properties still answer after close


def test_styles_mix_and_a_used_up_reader_refuses(json_stream: dss.Stream) -> None:
    for n in range(4):
        json_stream.append({"n": n})
    reader = json_stream.read(live=False)
    assert next(iter(reader)) == {"n": 0}
    batches = list(reader.batches())
    assert [m["n"] for batch in batches for m in batch.items] == [1, 2, 3]
    assert batches[-1].up_to_date
    with pytest.raises(ds.ReaderConsumedError):
        reader.read_all()
    reader.close()
    reader.close()  # twice is fine


@pytest.mark.parametrize("live", [True, "long-poll", "sse"])
def test_live_read_follows_a_writer_thread(json_stream: dss.Stream, live: ds.LiveMode) -> None:
    json_stream.append({"n": 0})
    started = threading.Event()
    writer = threading.Thread(
        target=_write_then_close, args=(json_stream, [{"n": 1}, {"n": 2}], started)
    )
    writer.start()
    received = []
    with json_stream.read(live=live) as reader:
        for message in reader:
            received.append(message["n"])
            started.set()  # the writer starts once the reader is caught up
        assert reader.stream_closed
        assert reader.mode == "done"
    writer.join()
    assert received == [0, 1, 2]


def test_live_batches_until_the_stream_closes(json_stream: dss.Stream) -> None:
    started = threading.Event()
    writer = threading.Thread(target=_write_then_close, args=(json_stream, [{"n": 1}], started))
    writer.start()
    items = []
    with json_stream.read(live="sse").batches() as batches:
        for batch in batches:
            items.extend(batch.items)
            if batch.up_to_date:
                started.set()
    writer.join()
    assert items == [{"n": 1}]
    assert batch.closed


# -- the producer ---------------------------------------------------------------------


def test_producer_with_receipts(json_stream: dss.Stream) -> None:
    with json_stream.producer("p-1", linger=0.001) as producer:
        receipts = [producer.append({"n": n}) for n in range(50)]
        last = receipts[-1].result(timeout=10)
        assert last.offset is not None
        assert not last.duplicate
        producer.flush()
        assert all(r.done() for r in receipts)
        stats = producer.statistics()
        assert stats.messages_sent == 50
        assert producer.epoch == 0
        now = producer.append_nowait({"n": 50})
        final = producer.close_stream()
    assert now.result().offset is not None
    assert json_stream.head().offset == final
    assert [m["n"] for m in json_stream.read_all()] == list(range(51))


def test_producer_extend_and_resolve_content_type(session: dss.Session, path: str) -> None:
    session.stream(path).create(content_type="application/json")
    stream = session.stream(path)  # a fresh handle that does not know its type
    assert stream.resolve_content_type() == "application/json"
    with stream.producer("p-extend", linger=0.001) as producer:
        assert producer.extend([]) is None
        last = producer.extend({"n": n} for n in range(300))
        assert last is not None
        assert last.result(timeout=10).offset is not None
    assert [m["n"] for m in stream.read_all()] == list(range(300))


def test_producer_failure_reaches_receipts_and_exit(json_stream: dss.Stream) -> None:
    json_stream.close()
    producer = json_stream.producer("p-closed")
    receipt = producer.append({"n": 1})
    with pytest.raises(ds.StreamClosedError):
        receipt.result(timeout=10)
    with pytest.raises(ds.StreamClosedError):
        producer.close()
    producer.close()  # twice is fine, and raises no more


def test_receipt_result_times_out_without_harm(json_stream: dss.Stream) -> None:
    with json_stream.producer("p-linger", linger=30) as producer:
        receipt = producer.append({"n": 1})
        with pytest.raises(TimeoutError):
            receipt.result(timeout=0.05)
        producer.flush()
        assert receipt.result().offset is not None


# -- the session ------------------------------------------------------------------------


def test_session_configuration_and_statistics(server: Server, path: str) -> None:
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return "Bearer t"

    with dss.Session(server.url, headers={"authorization": token}) as session:
        assert session.base_url == server.url
        assert session.url_for(path) == server.url + path
        stream = session.stream(path)
        stream.create(content_type="application/json")
        session.headers["x-extra"] = "1"
        assert dict(session.headers) == {"authorization": token, "x-extra": "1"}
        del session.headers["x-extra"]
        assert len(session.headers) == 1
        session.retry = FAST
        assert session.retry is FAST
        stream.head()
        assert session.statistics().requests == 2
        assert len(calls) == 2
    assert session.closed
    with pytest.raises(ds.ResourceClosedError):
        stream.head()
    session.close()  # twice is fine


def test_construction_does_nothing(server: Server) -> None:
    before = threading.active_count()
    session = dss.Session(server.url)
    session.stream("/never-used")
    assert threading.active_count() == before
    session.close()
    del session  # never started: no warning


def test_a_borrowed_client_session_is_refused(server: Server) -> None:
    with pytest.raises(ds.UsageError, match=r"aiohttp\.ClientSession"):
        dss.Session(server.url, client_session=object())  # type: ignore[arg-type]


async def test_refused_inside_a_running_event_loop(server: Server, path: str) -> None:
    session = dss.Session(server.url)
    with pytest.raises(ds.UsageError, match=r"async API.*durable_streams\.Session"):
        session.stream(path).exists()
    with pytest.raises(ds.UsageError):
        session.__enter__()
    with pytest.raises(ds.UsageError):
        session.close()
    # From a worker thread of the same program it is fine.
    assert await asyncio.to_thread(session.stream(path).exists) is False
    await asyncio.to_thread(session.close)


async def test_allowed_in_a_notebook_cell(
    server: Server, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jupyter runs each cell in its kernel's running event loop, on the main thread.
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    with dss.Session(server.url) as session:
        assert session.stream(path).exists() is False


def test_refused_on_its_own_loop_thread_instead_of_deadlocking(server: Server, path: str) -> None:
    errors: list[BaseException] = []

    def header() -> str:
        try:
            client.stream(path).exists()  # from the loop thread, inside a request
        except ds.UsageError as exc:
            errors.append(exc)
        return "x"

    with dss.Session(server.url, headers={"x-h": header}) as client:
        assert client.stream(path).exists() is False
    assert len(errors) == 1


def test_close_ends_a_call_waiting_in_another_thread(session: dss.Session, path: str) -> None:
    stream = session.stream(path)
    stream.create(content_type="application/json")
    outcome: list[BaseException] = []
    live = threading.Event()

    def read() -> None:
        reader = stream.read(live="long-poll")
        try:
            for _ in reader.batches():
                live.set()  # caught up: the next call waits on the server
        except ds.ResourceClosedError as exc:
            outcome.append(exc)

    reader_thread = threading.Thread(target=read)
    reader_thread.start()
    live.wait()
    session.close()
    reader_thread.join(timeout=10)
    assert not reader_thread.is_alive()
    assert len(outcome) == 1
