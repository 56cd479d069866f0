"""An append of ``b"[]"`` never reaches the server as an empty append (issue 10, item 12).

On ``main`` the bytes of a JSON append are an encoded array whose elements are appended, so
``b"[]"`` appends nothing, went out, and came back as a 400: it must be refused before
sending, like every other empty append. Issue 11 gives ``bytes`` one meaning everywhere, one
already-encoded message, and then ``b"[]"`` is one message, the empty list, sent as
``[[]]``. The tests learn which meaning the library has (from how ``b"[1,2]"`` is sent)
and hold it to that meaning exactly; under either, the body ``[]`` is never sent.
"""

from __future__ import annotations

import pytest

import durable_streams as ds
from tests.hostile.servers import JSON, HostileServer

EMPTY_ARRAYS = {
    "plain": b"[]",
    "spaced": b" [ \n\t] ",
    "bytearray": bytearray(b"[]"),
    "memoryview": memoryview(b"[]"),
}


@pytest.fixture
async def bytes_are_one_message(hostile: HostileServer) -> bool:
    """Whether ``append(b"[1,2]")`` appends one message (issue 11) or two (``main``)."""
    async with ds.Session(hostile.url) as session:
        await session.stream("/probe", content_type=JSON).append(b"[1,2]")
    [seen] = hostile.requests
    hostile.clear()
    assert seen.body in (b"[1,2]", b"[[1,2]]"), seen.body
    return seen.body == b"[[1,2]]"


@pytest.mark.parametrize("case", EMPTY_ARRAYS)
async def test_an_encoded_empty_array_is_never_sent_as_an_empty_append(
    hostile: HostileServer, bytes_are_one_message: bool, case: str
) -> None:
    data = EMPTY_ARRAYS[case]
    async with ds.Session(hostile.url) as session:
        stream = session.stream("/s", content_type=JSON)
        if bytes_are_one_message:
            await stream.append(data)
        else:
            with pytest.raises(ds.InvalidArgumentError) as caught:
                await stream.append(data)
            assert caught.value.argument == "data"
    if bytes_are_one_message:
        [seen] = hostile.requests
        assert seen.method == "POST"
        assert seen.body == b"[" + bytes(data) + b"]"
    else:
        assert hostile.requests == []


async def test_an_untyped_handle_decides_after_learning_the_type(
    hostile: HostileServer, bytes_are_one_message: bool
) -> None:
    async with ds.Session(hostile.url) as session:
        stream = session.stream("/s")
        if bytes_are_one_message:
            await stream.append(b"[]")
        else:
            with pytest.raises(ds.InvalidArgumentError):
                await stream.append(b"[]")
    # The HEAD that tells a JSON stream from a byte stream; an append only as one message.
    methods = [r.method for r in hostile.requests]
    assert methods == (["HEAD", "POST"] if bytes_are_one_message else ["HEAD"])
    assert [r.body for r in hostile.seen(method="POST")] == (
        [b"[[]]"] if bytes_are_one_message else []
    )


async def test_an_empty_list_value_is_one_message(hostile: HostileServer) -> None:
    async with ds.Session(hostile.url) as session:
        await session.stream("/s", content_type=JSON).append([])
    [seen] = hostile.requests
    assert (seen.method, seen.body) == ("POST", b"[[]]")


async def test_a_close_with_an_empty_array_is_never_an_empty_append(
    hostile: HostileServer, bytes_are_one_message: bool
) -> None:
    async with ds.Session(hostile.url) as session:
        stream = session.stream("/s", content_type=JSON)
        if bytes_are_one_message:
            await stream.close(final=b"[]")
        else:
            with pytest.raises(ds.InvalidArgumentError):
                await stream.close(final=b"[]")
    assert [r.body for r in hostile.requests] == ([b"[[]]"] if bytes_are_one_message else [])
