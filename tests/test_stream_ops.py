"""Stream operations against the real reference server: create, head, append, close,
append_stream, delete and fork, with the results and errors a caller sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

import durable_streams as ds

JSON = "application/json"
BYTES = "application/octet-stream"


# -- create -------------------------------------------------------------------------


async def test_create_then_identical_create_is_idempotent(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    first = await stream.create(content_type=JSON)
    assert first.created is True
    assert first.closed is False
    assert first.content_type == JSON
    assert first.location == stream.url

    again = await stream.create(content_type=JSON)
    assert again.created is False
    assert again.offset == first.offset
    assert again.closed is False


async def test_create_with_other_content_type_is_stream_exists(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    with pytest.raises(ds.StreamExistsError) as info:
        await stream.create(content_type="text/plain")
    assert info.value.status == 409
    assert info.value.url == stream.url


async def test_create_closed_over_open_stream_is_stream_exists(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    with pytest.raises(ds.StreamExistsError):
        await stream.create(content_type=JSON, closed=True)
    assert (await stream.head()).closed is False


async def test_create_open_over_closed_stream_is_stream_exists(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    made = await stream.create(content_type=JSON, closed=True)
    assert made.created is True
    assert made.closed is True
    with pytest.raises(ds.StreamExistsError):
        await stream.create(content_type=JSON)
    again = await stream.create(content_type=JSON, closed=True)
    assert again.created is False
    assert again.closed is True


async def test_create_with_different_ttl_is_stream_exists(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON, ttl=3600)
    with pytest.raises(ds.StreamExistsError):
        await stream.create(content_type=JSON, ttl=60)


async def test_create_with_ttl_is_reported_by_head(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON, ttl=3600)
    info = await stream.head()
    assert info.ttl == 3600
    assert info.expires_at is None


@pytest.mark.parametrize("form", ["datetime", "string"])
async def test_create_with_expires_at_is_reported_by_head(
    session: ds.Session, path: str, form: str
) -> None:
    when = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    value: datetime | str = when if form == "datetime" else "2099-01-02T03:04:05Z"
    stream = session.stream(path)
    await stream.create(content_type=JSON, expires_at=value)
    info = await stream.head()
    assert info.ttl is None
    assert info.expires_at is not None
    assert datetime.fromisoformat(info.expires_at.replace("Z", "+00:00")) == when


async def test_create_with_initial_json_data(session: ds.Session, path: str) -> None:
    one = session.stream(path + "-value")
    await one.create(content_type=JSON, data={"a": 1})
    assert await one.read_all() == [{"a": 1}]

    wrapped = session.stream(path + "-list")
    await wrapped.create(content_type=JSON, data=[1, 2])
    assert await wrapped.read_all() == [[1, 2]]

    encoded = session.stream(path + "-encoded")  # bytes: one already-encoded message
    await encoded.create(content_type=JSON, data=b"[1,2]")
    assert await encoded.read_all() == [[1, 2]]

    empty_list = session.stream(path + "-empty-list")
    made = await empty_list.create(content_type=JSON, data=b"[]")
    assert made.created is True
    assert await empty_list.read_all() == [[]]

    no_data = session.stream(path + "-no-data")
    await no_data.create(content_type=JSON, data=b"")
    assert await no_data.read_all() == []


async def test_create_closed_with_data_is_whole_content(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    made = await stream.create(content_type=BYTES, closed=True, data=b"final answer")
    assert made.closed is True
    info = await stream.head()
    assert info.closed is True
    assert info.offset == made.offset
    # A live reader of a closed stream stops at its end instead of waiting.
    async with stream.read(live="long-poll") as reader:
        assert await reader.body() == b"final answer"
        assert reader.stream_closed is True
    with pytest.raises(ds.StreamClosedError):
        await stream.append(b"more")


async def test_create_closed_empty_stream(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    made = await stream.create(content_type=JSON, closed=True)
    assert made.closed is True
    assert await stream.read_all() == []
    async with stream.read(live="sse") as reader:
        assert await reader.read_all() == []
        assert reader.stream_closed is True


# -- head / exists ------------------------------------------------------------------


async def test_head_reports_every_field(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    made = await stream.create(content_type=JSON, ttl=120)
    info = await stream.head()
    assert info.content_type == JSON
    assert info.offset == made.offset
    assert info.closed is False
    assert info.ttl == 120
    assert info.expires_at is None
    assert info.etag

    appended = await stream.append({"x": 1})
    after_append = await stream.head()
    assert after_append.offset == appended.offset
    assert after_append.offset > info.offset
    assert after_append.etag != info.etag

    final = await stream.close()
    closed = await stream.head()
    assert closed.closed is True
    assert closed.offset == final == appended.offset
    # The validator changes when the stream closes, so a cached copy cannot hide EOF.
    assert closed.etag != after_append.etag


async def test_head_teaches_the_handle_its_content_type(session: ds.Session, path: str) -> None:
    await session.stream(path).create(content_type="text/plain")
    fresh = session.stream(path)
    assert fresh.content_type is None
    info = await fresh.head()
    assert info.content_type == "text/plain"
    assert fresh.content_type == "text/plain"


async def test_exists(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    assert await stream.exists() is False
    await stream.create(content_type=JSON)
    assert await stream.exists() is True
    await stream.delete()
    assert await stream.exists() is False


# -- append -------------------------------------------------------------------------


async def test_append_bytes_and_str_to_byte_stream(byte_stream: ds.Stream) -> None:
    offsets = [
        (await byte_stream.append(b"ab")).offset,
        (await byte_stream.append("cd")).offset,
        (await byte_stream.append(bytearray(b"ef"))).offset,
        (await byte_stream.append(memoryview(b"gh"))).offset,
        (await byte_stream.append("é")).offset,
    ]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == b"abcdefgh" + "é".encode()


async def test_append_larger_than_one_mib(byte_stream: ds.Stream) -> None:
    # One plain append of 2 MiB: no warning (the suite runs with warnings as errors), and
    # the bytes arrive intact.
    data = bytes(range(256)) * (8 * 1024)
    await byte_stream.append(data)
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == data


async def test_append_returns_tail_offset(byte_stream: ds.Stream) -> None:
    result = await byte_stream.append(b"xyz")
    assert result.closed is False
    assert (await byte_stream.head()).offset == result.offset


async def test_append_json_values_one_message_each(json_stream: ds.Stream) -> None:
    values: list[object] = [
        {"a": 1},
        [1, 2],
        [],
        "text with\nnewline",
        3,
        2.5,
        None,
        True,
        {"nested": [[1], {"k": "ü→\u2028"}]},
    ]
    for value in values:
        await json_stream.append(value)
    assert await json_stream.read_all() == values


async def test_append_bytes_to_json_stream_are_one_message(json_stream: ds.Stream) -> None:
    await json_stream.append(b"[1,2]")  # an encoded array is one message, like a list
    await json_stream.append(b'{"x":1}')
    await json_stream.append(b"[[3,4]]")
    assert await json_stream.read_all() == [[1, 2], {"x": 1}, [[3, 4]]]


async def test_append_stream_is_the_raw_wire_form(json_stream: ds.Stream) -> None:
    await json_stream.append_stream(_chunks(b"[1,2]"))  # an array appends its elements
    await json_stream.append_stream(_chunks(b'{"x":1}'))
    assert await json_stream.read_all() == [1, 2, {"x": 1}]


async def test_append_with_unknown_content_type_learns_it(session: ds.Session, path: str) -> None:
    await session.stream(path).create(content_type=JSON)
    fresh = session.stream(path)
    await fresh.append([1, 2])
    assert fresh.content_type == JSON
    assert await fresh.read_all() == [[1, 2]]


async def test_stream_seq_orders_appends_and_rejects_regression(json_stream: ds.Stream) -> None:
    await json_stream.append("a", seq="0001")
    await json_stream.append("b", seq="0002")
    await json_stream.append("c", seq="0010")
    with pytest.raises(ds.SequenceConflictError) as lower:
        await json_stream.append("late", seq="0009")
    assert lower.value.status == 409
    with pytest.raises(ds.SequenceConflictError):
        await json_stream.append("again", seq="0010")
    await json_stream.append("d", seq="0011")
    assert await json_stream.read_all() == ["a", "b", "c", "d"]


async def test_append_and_close(json_stream: ds.Stream) -> None:
    await json_stream.append({"n": 1})
    result = await json_stream.append({"n": 2}, close=True)
    assert result.closed is True
    info = await json_stream.head()
    assert info.closed is True
    assert info.offset == result.offset
    async with json_stream.read(live="long-poll") as reader:
        assert await reader.read_all() == [{"n": 1}, {"n": 2}]
        assert reader.stream_closed is True


async def test_append_to_closed_stream_is_stream_closed(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    final = await json_stream.close()
    with pytest.raises(ds.StreamClosedError) as info:
        await json_stream.append(2)
    assert info.value.final_offset == final
    assert info.value.status == 409
    with pytest.raises(ds.StreamClosedError):
        await json_stream.append(3, close=True)
    assert await json_stream.read_all() == [1]


# -- close --------------------------------------------------------------------------


async def test_close_returns_final_offset_and_is_idempotent(json_stream: ds.Stream) -> None:
    appended = await json_stream.append("only")
    final = await json_stream.close()
    assert final == appended.offset
    assert (await json_stream.head()).closed is True
    assert await json_stream.close() == final
    assert await json_stream.close() == final


async def test_close_empty_stream(byte_stream: ds.Stream) -> None:
    made = await byte_stream.head()
    assert await byte_stream.close() == made.offset
    async with byte_stream.read(live="sse") as reader:
        assert await reader.body() == b""
        assert reader.stream_closed is True


async def test_close_with_final_message(json_stream: ds.Stream) -> None:
    await json_stream.append({"n": 1})
    final = await json_stream.close(final={"done": True})
    info = await json_stream.head()
    assert info.closed is True
    assert info.offset == final
    assert await json_stream.read_all() == [{"n": 1}, {"done": True}]


async def test_close_with_final_on_closed_stream_is_stream_closed(json_stream: ds.Stream) -> None:
    final = await json_stream.close(final="last")
    with pytest.raises(ds.StreamClosedError) as info:
        await json_stream.close(final="too late")
    assert info.value.final_offset == final
    # A plain close still succeeds and reports the same end.
    assert await json_stream.close() == final
    assert await json_stream.read_all() == ["last"]


async def test_close_missing_stream_is_not_found(session: ds.Session, path: str) -> None:
    with pytest.raises(ds.StreamNotFoundError):
        await session.stream(path).close()


# -- append_stream ------------------------------------------------------------------


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_append_stream_sends_chunks_as_one_append(byte_stream: ds.Stream) -> None:
    result = await byte_stream.append_stream(_chunks(b"ab", b"", b"cd", b"ef"))
    assert result.closed is False
    assert (await byte_stream.head()).offset == result.offset
    # Over SSE every stored append is one event: one item means one append.
    await byte_stream.close()
    async with byte_stream.read(live="sse") as reader:
        assert await reader.read_all() == [b"abcdef"]


async def test_append_stream_large_generated_body(byte_stream: ds.Stream) -> None:
    block = bytes(range(256)) * 64  # 16 KiB

    async def generate() -> AsyncIterator[bytes]:
        for n in range(64):
            yield block[n:] + block[:n]

    await byte_stream.append_stream(generate())
    expected = b"".join(block[n:] + block[:n] for n in range(64))
    async with byte_stream.read(live=False) as reader:
        assert await reader.body() == expected


async def test_append_stream_to_json_stream(json_stream: ds.Stream) -> None:
    await json_stream.append_stream(_chunks(b"[1,", b'{"a":', b"2}", b"]"))
    assert await json_stream.read_all() == [1, {"a": 2}]


async def test_append_stream_with_close(json_stream: ds.Stream) -> None:
    result = await json_stream.append_stream(_chunks(b'["bye"]'), close=True)
    assert result.closed is True
    assert (await json_stream.head()).closed is True
    assert await json_stream.read_all() == ["bye"]


# -- delete -------------------------------------------------------------------------


async def test_delete_then_head_is_not_found(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    await json_stream.delete()
    with pytest.raises(ds.StreamNotFoundError) as info:
        await json_stream.head()
    assert info.value.status == 404
    with pytest.raises(ds.StreamNotFoundError):
        await json_stream.read_all()
    with pytest.raises(ds.StreamNotFoundError):
        await json_stream.delete()


async def test_delete_closed_stream(json_stream: ds.Stream) -> None:
    await json_stream.close()
    await json_stream.delete()
    assert await json_stream.exists() is False


# -- fork ---------------------------------------------------------------------------


async def test_fork_at_offset_and_sub_offset_counts_json_messages(
    session: ds.Session, path: str
) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    after_first = (await source.append({"m": 0})).offset
    after_batch = (await source.append_stream(_chunks(b"[1,2,3]"))).offset  # 3 messages
    await source.append({"m": 4})

    at_offset = session.stream(path + "-at")
    made = await at_offset.fork(source, offset=after_first, content_type=JSON)
    assert made.created is True
    assert made.closed is False
    assert await at_offset.read_all() == [{"m": 0}]

    into_batch = session.stream(path + "-sub")
    await into_batch.fork(source, offset=after_first, sub_offset=2, content_type=JSON)
    assert await into_batch.read_all() == [{"m": 0}, 1, 2]

    past_batch = session.stream(path + "-after")
    await past_batch.fork(source, offset=after_batch, content_type=JSON)
    assert await past_batch.read_all() == [{"m": 0}, 1, 2, 3]

    tail = session.stream(path + "-tail")
    await tail.fork(source, content_type=JSON)
    assert await tail.read_all() == [{"m": 0}, 1, 2, 3, {"m": 4}]


async def test_fork_sub_offset_counts_bytes_on_byte_streams(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=BYTES)
    after_abc = (await source.append(b"abc")).offset
    await source.append(b"defgh")

    fork = session.stream(path + "-fork")
    await fork.fork(source, offset=after_abc, sub_offset=3)
    async with fork.read(live=False) as reader:
        assert await reader.body() == b"abcdef"


async def test_fork_has_its_own_appends(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    await source.append("shared")
    fork = session.stream(path + "-fork")
    made = await fork.fork(path, content_type=JSON)  # a path, joined like any other
    assert made.content_type == JSON
    await fork.append("fork only")
    await source.append("source only")
    assert await fork.read_all() == ["shared", "fork only"]
    assert await source.read_all() == ["shared", "source only"]


async def test_fork_inherits_content_type_by_default(session: ds.Session, path: str) -> None:
    # No content_type given: the fork takes the source's (here not the HTTP default).
    source = session.stream(path)
    await source.create(content_type=JSON)
    await source.append({"m": 0})
    fork = session.stream(path + "-fork")
    made = await fork.fork(source)
    assert made.created is True
    assert made.content_type == JSON
    assert (await fork.head()).content_type == JSON
    await fork.append({"m": 1})
    assert await fork.read_all() == [{"m": 0}, {"m": 1}]

    text_source = session.stream(path + "-text")
    await text_source.create(content_type="text/plain")
    await text_source.append("hello ")
    text_fork = session.stream(path + "-text-fork")
    await text_fork.fork(text_source.url)  # an absolute URL on the same server
    async with text_fork.read(live=False) as reader:
        assert await reader.text() == "hello "


async def test_fork_repeated_identically_is_idempotent(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    offset = (await source.append(1)).offset
    fork = session.stream(path + "-fork")
    assert (await fork.fork(source, offset=offset, content_type=JSON)).created is True
    assert (await fork.fork(source, offset=offset, content_type=JSON)).created is False


async def test_fork_of_missing_source_is_not_found(session: ds.Session, path: str) -> None:
    fork = session.stream(path + "-fork")
    with pytest.raises(ds.StreamNotFoundError) as info:
        await fork.fork(path + "-nowhere")
    assert info.value.status == 404
    assert await fork.exists() is False


async def test_fork_with_other_content_type_is_conflict(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    fork = session.stream(path + "-fork")
    with pytest.raises(ds.StreamExistsError) as info:
        await fork.fork(source, content_type="text/plain")
    assert isinstance(info.value, ds.ConflictError)
    assert info.value.status == 409


async def test_fork_onto_existing_other_stream_is_conflict(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    occupied = session.stream(path + "-occupied")
    await occupied.create(content_type=JSON)
    with pytest.raises(ds.StreamExistsError):
        await occupied.fork(source, content_type=JSON)


async def test_fork_of_closed_source_is_open(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    await source.append("before close")
    await source.close()
    fork = session.stream(path + "-fork")
    made = await fork.fork(source, content_type=JSON)
    assert made.closed is False
    assert (await fork.head()).closed is False
    await fork.append("after fork")
    assert await fork.read_all() == ["before close", "after fork"]
    assert (await source.head()).closed is True


async def test_deleted_source_with_fork_is_gone(session: ds.Session, path: str) -> None:
    source = session.stream(path)
    await source.create(content_type=JSON)
    await source.append("kept")
    fork = session.stream(path + "-fork")
    await fork.fork(source, content_type=JSON)
    await source.delete()
    with pytest.raises(ds.GoneError) as info:
        await source.head()
    assert info.value.status == 410
    assert await fork.read_all() == ["kept"]


async def test_create_on_a_closed_stream_says_it_is_closed(session: ds.Session, path: str) -> None:
    # Issue 11 item 10: the 409 alone says only "different configuration".
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    await stream.close()
    with pytest.raises(ds.StreamExistsError, match="closed stream") as refused:
        await stream.create(content_type="application/json")
    assert refused.value.status == 409
    assert refused.value.existing is not None
    assert refused.value.existing.closed
    confirmed = await stream.create(content_type="application/json", closed=True)
    assert confirmed.created is False
    assert confirmed.closed
