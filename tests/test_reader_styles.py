"""Reading styles share one queue: mixing them continues exactly where the other left off;
positions resume after exactly one message; a closed reader refuses every use; ``body()``
refuses a JSON stream before consuming anything. Property tests (hypothesis) check any
interleaving of ``anext``, ``batches()`` and ``read_all()`` on random streams split into
random responses, against a small scripted server, and the queue's arithmetic alone."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_streams as ds

JSON = "application/json"
BYTES = "application/octet-stream"
FAST = ds.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.005)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- a scripted server: a stream split into responses at chosen places ------------------


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` for every request on a free port; yield the stream's URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/s"))
    finally:
        await server.close()


def offset_of(units: int) -> str:
    """The scripted server's offset after ``units`` units."""
    return f"o{units:06d}"


@dataclass
class SplitStream:
    """A closed stream of ``units`` (JSON messages, or bytes) served in pieces: a read at
    ``offset_of(k)`` answers the units up to the next cut after ``k``."""

    content: list[Any] | bytes
    cuts: list[int]
    requests: list[str] = field(default_factory=list)

    @property
    def json(self) -> bool:
        return isinstance(self.content, list)

    def _end(self, start: int) -> int:
        return next((c for c in sorted(self.cuts) if c > start), len(self.content))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        offset = request.query["offset"]
        self.requests.append(offset)
        start = 0 if offset == "-1" else int(offset[1:])
        end = self._end(start)
        at_tail = end >= len(self.content)
        headers = {
            "Content-Type": JSON if self.json else BYTES,
            "Stream-Next-Offset": offset_of(end),
            "Stream-Cursor": "7",
        }
        if at_tail:
            headers.update({"Stream-Up-To-Date": "true", "Stream-Closed": "true"})
        if request.query.get("live") == "long-poll" and start >= len(self.content):
            return web.Response(status=204, headers=headers)
        piece = self.content[start:end]
        if isinstance(piece, list):
            return web.Response(body=json.dumps(piece).encode(), headers=headers)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for at in range(0, len(piece), 5):  # in small writes: a body arriving in pieces
            await response.write(piece[at : at + 5])
        await response.write_eof()
        return response


async def _json_stream_of(session: ds.Session, path: str, values: list[Any]) -> ds.Stream:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    for value in values:
        await stream.append(value)
    return stream


# -- mixing styles, against the real server ------------------------------------------------


async def test_anext_then_read_all_continues(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    async with stream.producer("p") as producer:  # one response of three messages
        for n in range(3):
            await producer.append(n)
    async with stream.read(live=False) as reader:
        assert await anext(reader) == 0
        assert await reader.read_all() == [1, 2]


async def test_anext_then_batches_continues_with_the_rest_of_the_batch(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    async with stream.producer("p") as producer:
        for n in range(3):
            await producer.append(n)
    tail = (await stream.head()).offset
    async with stream.read(live=False) as reader:
        assert await anext(reader) == 0
        batches = [batch async for batch in reader.batches()]
    assert [b.items for b in batches] == [[1, 2]]
    assert batches[0].offset == tail


async def test_batches_then_anext_then_batches(json_stream: ds.Stream) -> None:
    for n in range(3):
        await json_stream.append(n)
    await json_stream.close()
    async with json_stream.read(live="long-poll") as reader:
        batches = reader.batches()
        first = await anext(batches)
        assert first.items == [0, 1, 2]
        assert first.closed
        # The end was received, but not yet told to anyone: iteration says it now.
        with pytest.raises(StopAsyncIteration):
            await anext(reader)
        with pytest.raises(StopAsyncIteration):
            await anext(batches)


async def test_break_then_iterate_again_continues(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    async with stream.producer("p") as producer:
        for n in range(5):
            await producer.append(n)
    got: list[Any] = []
    async with stream.read(live=False) as reader:
        async for message in reader:
            got.append(message)
            if message == 1:
                break
        got.extend([message async for message in reader])
    assert got == [0, 1, 2, 3, 4]


async def test_read_all_then_anext_is_the_end(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    async with json_stream.read(live=False) as reader:
        assert await reader.read_all() == [1]
        with pytest.raises(StopAsyncIteration):
            await anext(reader)


async def test_batches_iterator_made_before_the_end_just_ends(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    async with json_stream.read(live=False) as reader:
        batches = reader.batches()
        assert await reader.read_all() == [1]
        with pytest.raises(StopAsyncIteration):
            await anext(batches)
        with pytest.raises(ds.ReaderConsumedError):
            reader.batches()


async def test_batches_then_read_all_continues(json_stream: ds.Stream) -> None:
    await json_stream.append(1)
    reader = json_stream.read(live=False)
    async with reader:
        reader.batches()  # made, never iterated: nothing was taken
        assert await reader.read_all() == [1]


# -- after aclose() -------------------------------------------------------------------------


async def test_aclose_mid_read_refuses_every_use_and_keeps_the_position(
    session: ds.Session, path: str
) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    async with stream.producer("p") as producer:
        for n in range(3):
            await producer.append(n)
    reader = stream.read(live=True)
    batches = reader.batches()
    assert await anext(reader) == 0
    position = reader.position
    await reader.aclose()
    assert reader.mode == "done"
    assert reader.position == position
    for use in (
        lambda: anext(reader),
        lambda: anext(batches),
        reader.read_all,
        reader.body,
        reader.text,
    ):
        with pytest.raises(ds.ResourceClosedError):
            await use()
    for refused in (reader.batches, lambda: aiter(reader)):
        with pytest.raises(ds.ResourceClosedError):
            refused()
    assert await stream.read_all(position) == [1, 2]


# -- body() on a JSON stream ----------------------------------------------------------------


async def test_body_refuses_a_json_stream_before_consuming_it(
    session: ds.Session, path: str
) -> None:
    await _json_stream_of(session, path, [1, 2])
    for known in (True, False):
        stream = session.stream(path, content_type=JSON if known else None)
        before = session.statistics().requests
        async with stream.read(live=False) as reader:
            with pytest.raises(ds.UsageError):
                await reader.body()
            # At most the first answer was received (to learn the type); nothing was taken.
            assert session.statistics().requests - before == (0 if known else 1)
            assert reader.offset == "-1"
            assert reader.mode == ("catch-up" if known else "done")
            assert await reader.read_all() == [1, 2]


# -- positions ------------------------------------------------------------------------------


async def test_position_after_each_message_resumes_exactly(session: ds.Session, path: str) -> None:
    stream = session.stream(path)
    await stream.create(content_type=JSON)
    async with stream.producer("p") as producer:
        for n in range(4):
            await producer.append(n)
    await stream.append(4)
    positions: list[str] = []
    async with stream.read(live=False) as reader:
        assert reader.position == "-1"
        async for _ in reader:
            positions.append(reader.position)
            # The offset is never ahead of what was handed out.
            assert reader.offset == positions[-1].partition(",")[0]
    tail = (await stream.head()).offset
    assert positions[-1] == tail  # after the last message of a delivery: a plain offset
    assert positions[0] == "-1,skip=1"
    for n, position in enumerate(positions):
        assert await stream.read_all(position) == list(range(n + 1, 5)), position


async def test_position_of_a_byte_stream_counts_bytes(byte_stream: ds.Stream) -> None:
    await byte_stream.append(b"abcdef")
    await byte_stream.append(b"ghij")
    tail = (await byte_stream.head()).offset
    async with byte_stream.read(live=False) as reader:
        assert await anext(reader) == b"abcdefghij"  # one response, one piece
        # Exact, but counted from the start until the end of the response is received.
        assert reader.position == "-1,skip=10"
        with pytest.raises(StopAsyncIteration):
            await anext(reader)
        assert reader.position == tail
    assert await byte_stream.read_all("-1,skip=10") == []
    for skip in (1, 4, 9):
        async with byte_stream.read(f"-1,skip={skip}", live=False) as reader:
            assert await reader.body() == b"abcdefghij"[skip:]


async def test_position_inside_a_byte_body_resumes_exactly() -> None:
    data = bytes(range(256)) * 4
    script = SplitStream(data, cuts=[300, 700])
    async with serving(script.handle) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url, content_type=BYTES)
        async with stream.read(live=False) as reader:
            got = b""
            marks: list[tuple[int, str]] = []
            async for piece in reader:
                got += piece
                marks.append((len(got), reader.position))
        assert got == data
        assert len(marks) > 3  # the bodies arrived in pieces
        for length, position in marks:
            async with stream.read(position, live=False) as again:
                assert await again.body() == data[length:], position


async def test_a_position_past_the_tail_is_invalid_offset(json_stream: ds.Stream) -> None:
    tail = (await json_stream.append(1)).offset
    with pytest.raises(ds.InvalidOffsetError):
        await json_stream.read_all(f"{tail},skip=2")
    with pytest.raises(ds.InvalidOffsetError):
        await json_stream.read_all("-1,skip=2")
    assert await json_stream.read_all("-1,skip=1") == []


# -- any interleaving of styles, on random streams and random splits ------------------------


@st.composite
def split_streams(draw: st.DrawFn) -> SplitStream:
    if draw(st.booleans()):
        content: list[Any] | bytes = draw(st.lists(st.integers(0, 99), min_size=0, max_size=25))
    else:
        content = draw(st.binary(min_size=0, max_size=60))
    size = len(content)
    cuts = draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=6)) if size > 1 else []
    return SplitStream(content, sorted(set(cuts)))


Op = str
STYLES = st.lists(st.sampled_from(["next", "batch", "all"]), max_size=12)


async def _apply(reader: ds.StreamReader, op: Op, batches: Any) -> list[Any] | None:
    """What one operation yields; ``None`` once the reader is at its end."""
    try:
        if op == "next":
            return [await anext(reader)]
        if op == "batch":
            return list((await anext(batches)).items)
    except StopAsyncIteration:
        return None
    return await reader.read_all()


def _joined(items: list[Any], *, json_stream: bool) -> Any:
    return items if json_stream else b"".join(items)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(script=split_streams(), ops=STYLES, mark=st.integers(0, 12))
async def test_any_mix_of_styles_yields_each_message_once_in_order(
    script: SplitStream, ops: list[Op], mark: int
) -> None:
    async with serving(script.handle) as url, ds.Session(retry=FAST) as session:
        stream = session.stream(url)
        got: list[Any] = []
        saved: tuple[int, str] | None = None
        async with stream.read(live="long-poll") as reader:
            batches = reader.batches()
            ended = False
            for n, op in enumerate(ops):
                if n == mark:
                    saved = (len(_joined(got, json_stream=script.json)), reader.position)
                taken = await _apply(reader, op, batches)
                if taken is None or op == "all":
                    ended = True
                    if taken:
                        got.extend(taken)
                    break
                got.extend(taken)
            if not ended:
                got.extend(await reader.read_all())
            assert reader.stream_closed
        assert _joined(got, json_stream=script.json) == script.content
        if saved is not None:
            done, position = saved
            async with stream.read(position, live=False) as again:
                rest = _joined(await again.read_all(), json_stream=script.json)
            assert rest == script.content[done:], position
