"""One encoding path: create(data=), append, close(final=) and the producer give the same
data the same meaning, and refuse the same bad data with the same error.

On a JSON stream ``bytes`` are exactly one already-encoded message (never split into the
elements of an encoded array); any other value is one message. On other streams ``bytes``
go as they are and ``str`` as UTF-8. Regression tests for issue 11, item 8.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import durable_streams as ds

JSON = "application/json"
BYTES = "application/octet-stream"

Writer = Callable[[ds.Stream, object], Awaitable[None]]


async def _create(stream: ds.Stream, data: object) -> None:
    await stream.create(content_type=stream.content_type or JSON, data=data)


async def _append(stream: ds.Stream, data: object) -> None:
    await stream.append(data)


async def _close(stream: ds.Stream, data: object) -> None:
    await stream.close(final=data)


async def _produce(stream: ds.Stream, data: object) -> None:
    async with stream.producer("encoding", linger=0) as producer:
        await producer.append(data)


async def _produce_close(stream: ds.Stream, data: object) -> None:
    async with stream.producer("encoding-close") as producer:
        await producer.close_stream(final=data)


WRITERS: dict[str, Writer] = {
    "create": _create,
    "append": _append,
    "close": _close,
    "producer.append": _produce,
    "producer.close_stream": _produce_close,
}

# data -> the one message a JSON stream then holds
JSON_CASES: dict[str, tuple[object, Any]] = {
    "encoded-array": (b"[1,2]", [1, 2]),
    "encoded-object": (b'{"a": [1]}', {"a": [1]}),
    "encoded-empty-array": (b"[]", []),
    "encoded-with-spaces": (b" [ 3 , 4 ] ", [3, 4]),
    "bytearray": (bytearray(b"[5]"), [5]),
    "memoryview": (memoryview(b'"six"'), "six"),
    "list-value": ([7, 8], [7, 8]),
    "empty-list-value": ([], []),
    "str-value": ("", ""),
    "nested": ([[9]], [[9]]),
}


async def _stream_for(session: ds.Session, path: str, writer: str, content_type: str) -> ds.Stream:
    stream = session.stream(path, content_type=content_type)
    if writer != "create":
        await stream.create(content_type=content_type)
    return stream


async def _messages(stream: ds.Stream) -> list[Any]:
    async with asyncio.timeout(10), stream.read(live=False) as reader:
        return await reader.read_all()


@pytest.mark.parametrize("case", JSON_CASES)
@pytest.mark.parametrize("writer", WRITERS)
async def test_json_data_is_exactly_one_message_everywhere(
    session: ds.Session, path: str, writer: str, case: str
) -> None:
    data, message = JSON_CASES[case]
    stream = await _stream_for(session, path, writer, JSON)
    await WRITERS[writer](stream, data)
    assert await _messages(stream) == [message]


@pytest.mark.parametrize(
    ("data", "body"),
    [(b"\x00\xff", b"\x00\xff"), (bytearray(b"ab"), b"ab"), ("héllo", "héllo".encode())],
    ids=["bytes", "bytearray", "str"],
)
@pytest.mark.parametrize("writer", WRITERS)
async def test_byte_stream_data_goes_as_it_is(
    session: ds.Session, path: str, writer: str, data: object, body: bytes
) -> None:
    stream = await _stream_for(session, path, writer, BYTES)
    await WRITERS[writer](stream, data)
    assert b"".join(await _messages(stream)) == body


# (content type, data) -> refused by every writer, with InvalidArgumentError(argument="data")
BAD: dict[str, tuple[str, object]] = {
    "json-empty-bytes": (JSON, b""),
    "json-empty-bytearray": (JSON, bytearray()),
    "json-invalid-bytes": (JSON, b"{not json"),
    "json-two-values": (JSON, b"1 2"),
    "json-nan-bytes": (JSON, b"[NaN]"),
    "json-not-utf8": (JSON, b'"\xff"'),
    "json-nan-value": (JSON, float("nan")),
    "json-lone-surrogate": (JSON, "\ud800"),
    "bytes-empty": (BYTES, b""),
    "bytes-empty-str": (BYTES, ""),
    "bytes-lone-surrogate": (BYTES, "\udfff"),
    "bytes-int": (BYTES, 5),
    "bytes-dict": (BYTES, {"a": 1}),
}

BAD_WRITERS = {name: writer for name, writer in WRITERS.items() if name != "create"}


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("writer", BAD_WRITERS)
async def test_bad_data_gets_one_error_everywhere(
    session: ds.Session, path: str, writer: str, case: str
) -> None:
    content_type, data = BAD[case]
    stream = await _stream_for(session, path, writer, content_type)
    before = await stream.head()
    with pytest.raises(ds.InvalidArgumentError) as caught:
        await BAD_WRITERS[writer](stream, data)
    assert caught.value.argument == "data"
    assert not isinstance(caught.value, UnicodeError)
    assert await stream.head() == before  # nothing was written, the stream is open


@pytest.mark.parametrize("data", [b"", "", bytearray()], ids=["bytes", "str", "bytearray"])
async def test_empty_initial_data_of_a_byte_stream_is_no_data(
    session: ds.Session, path: str, data: object
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=BYTES, data=data)
    assert await _messages(stream) == []


async def test_an_untyped_handle_refuses_what_no_stream_takes_before_any_request(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)  # never created: a HEAD would be a 404
    for data in (b"", "\ud800", float("nan"), object()):
        with pytest.raises(ds.InvalidArgumentError) as caught:
            await stream.append(data)
        assert caught.value.argument == "data"


async def test_the_producer_refuses_invalid_json_bytes_before_they_poison_a_batch(
    json_stream: ds.Stream,
) -> None:
    async with json_stream.producer("poison", linger=30.0) as producer:
        await producer.append(b"[1]")
        for bad in (b"[1", b"", b"1 2"):
            with pytest.raises(ds.InvalidArgumentError):
                await producer.append(bad)
        await producer.append(b"[2]")
    assert await _messages(json_stream) == [[1], [2]]


async def test_append_stream_keeps_the_raw_wire_form(json_stream: ds.Stream) -> None:
    """The one way to append an encoded array's elements as several messages."""

    async def body() -> AsyncIterator[bytes]:
        yield b"[1,"
        yield b"[2,3]]"

    await json_stream.append_stream(body())
    assert await _messages(json_stream) == [1, [2, 3]]
