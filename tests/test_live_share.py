"""Long-polls of one session's readers at one position are sent once, and serve them all.

Each reader still judges the shared answer itself and parses its own messages; a reader
cancelled while it waits leaves the poll to the others; the last one to leave cancels it;
a failed poll is retried by every reader within its own budget.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

JSON = "application/json"
READERS = 40


class Tail:
    """A long-poll reader followed in a task: its batches in a queue."""

    def __init__(self, reader: ds.StreamReader) -> None:
        self.reader = reader
        self.batches: asyncio.Queue[ds.Batch[Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.reader.batches():
            self.batches.put_nowait(batch)

    async def items(self) -> list[Any]:
        """The items of the next batch that has any."""
        while not (batch := await self.batches.get()).items:
            pass
        return list(batch.items)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.reader.aclose()


async def _tails(session: ds.Session, url: str, n: int) -> list[Tail]:
    """``n`` long-poll readers from the tail, each seen up to date (so all are polling)."""
    stream = session.stream(url, content_type=JSON)
    tails = [Tail(stream.read(live="long-poll")) for _ in range(n)]
    for tail in tails:
        assert (await tail.batches.get()).up_to_date
    return tails


def _polls() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__ == "Session._poll_once"  # type: ignore[union-attr]
    ]


async def test_readers_at_one_position_share_one_long_poll(
    server: ReferenceServer, json_stream: ds.Stream, fast_retry: ds.RetryPolicy
) -> None:
    appends = 5
    async with ds.Session(server.url, retry=fast_retry) as session:
        async with asyncio.timeout(30):
            tails = await _tails(session, json_stream.url, READERS)
            for k in range(appends):
                await json_stream.append({"k": k})
                for tail in tails:
                    assert await tail.items() == [{"k": k}]
            for tail in tails:
                await tail.stop()
        requests = session.statistics().requests
    # One catch-up read per reader, then about one long-poll per append for all of them
    # (a long-poll the server ends after its 2 s wait adds one more); unshared, it would
    # be READERS * (appends + 1) long-polls.
    assert requests <= READERS + 3 * (appends + 1), requests


async def test_each_reader_gets_messages_of_its_own(
    server: ReferenceServer, json_stream: ds.Stream, fast_retry: ds.RetryPolicy
) -> None:
    async with ds.Session(server.url, retry=fast_retry) as session, asyncio.timeout(30):
        first, second = await _tails(session, json_stream.url, 2)
        await json_stream.append({"list": [1, 2]})
        (mine,), (theirs,) = await first.items(), await second.items()
        mine["list"].append(3)
        assert theirs == {"list": [1, 2]}
        assert mine is not theirs
        await first.stop()
        await second.stop()


async def test_a_reader_cancelled_while_waiting_leaves_the_poll_to_the_others(
    server: ReferenceServer, json_stream: ds.Stream, fast_retry: ds.RetryPolicy
) -> None:
    async with ds.Session(server.url, retry=fast_retry) as session, asyncio.timeout(30):
        leaving, staying = await _tails(session, json_stream.url, 2)
        (poll,) = _polls()
        await leaving.stop()
        assert not poll.done()  # still wanted by the other reader
        await json_stream.append("after")
        assert await staying.items() == ["after"]
        assert poll.done()
        assert not poll.cancelled()
        await staying.stop()


async def test_the_last_reader_to_leave_cancels_the_poll(
    server: ReferenceServer, json_stream: ds.Stream, fast_retry: ds.RetryPolicy
) -> None:
    async with ds.Session(server.url, retry=fast_retry) as session, asyncio.timeout(30):
        tails = await _tails(session, json_stream.url, 3)
        (poll,) = _polls()
        for tail in tails:
            await tail.stop()
        await asyncio.wait([poll])
        assert poll.cancelled()
        assert not _polls()


async def test_closing_the_session_cancels_the_polls_in_flight(
    server: ReferenceServer, json_stream: ds.Stream, fast_retry: ds.RetryPolicy
) -> None:
    async with asyncio.timeout(30):
        session = ds.Session(server.url, retry=fast_retry)
        tails = await _tails(session, json_stream.url, 2)
        (poll,) = _polls()
        await session.aclose()
        await asyncio.wait([poll])
        assert poll.cancelled()
        for tail in tails:
            await tail.stop()


@pytest.mark.parametrize(
    "fault",
    [{"drop_connection": True}, {"status": 503}, {"status": 429, "retry_after": 0}],
    ids=["dropped", "503", "429"],
)
async def test_a_failed_shared_poll_is_retried_by_every_reader(
    server: ReferenceServer,
    json_stream: ds.Stream,
    fast_retry: ds.RetryPolicy,
    fault: dict[str, Any],
) -> None:
    async with ds.Session(server.url, retry=fast_retry) as session, asyncio.timeout(30):
        tails = await _tails(session, json_stream.url, 10)
        # The poll in flight answers the first append; the next one (all readers' new
        # poll) fails once, and every reader retries it.
        server.inject_error(json_stream.url, count=1, method="GET", **fault)
        await json_stream.append("one")
        for tail in tails:
            assert await tail.items() == ["one"]
        await json_stream.append("two")
        for tail in tails:
            assert await tail.items() == ["two"]
        for tail in tails:
            await tail.stop()
        assert session.statistics().retries >= 1
