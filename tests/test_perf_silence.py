"""The SSE reader's lazily re-armed silence timer (correctness, not timing)."""

from __future__ import annotations

import asyncio

import pytest

from durable_streams._reader_sse import SilenceTimer


async def _wait(timer: SilenceTimer, seconds: float, limit: float | None = None) -> str:
    """Wait ``seconds`` under the timer: "done", or "expired" if the timer interrupted it."""
    timer.start(limit)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if not timer.expired():
            raise
        return "expired"
    finally:
        timer.stop()
    return "done"


async def test_a_wait_longer_than_the_limit_is_interrupted() -> None:
    timer = SilenceTimer(0.05)
    try:
        assert await _wait(timer, 5) == "expired"
        # The task is usable afterwards: no cancellation is left pending.
        await asyncio.sleep(0)
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
    finally:
        timer.close()


async def test_short_waits_in_a_row_are_never_interrupted() -> None:
    timer = SilenceTimer(0.1)
    try:
        # Together far longer than the limit, each one shorter: one timer, moved lazily.
        for _ in range(12):
            assert await _wait(timer, 0.03) == "done"
    finally:
        timer.close()


async def test_another_cancellation_is_not_taken_for_silence() -> None:
    timer = SilenceTimer(0.05)
    task = asyncio.create_task(_wait(timer, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    timer.close()


async def test_a_closed_timer_interrupts_nothing() -> None:
    timer = SilenceTimer(0.02)
    timer.start()
    timer.stop()
    timer.close()
    await asyncio.sleep(0.05)  # the timer would have fired here
    assert await asyncio.wait_for(asyncio.sleep(0, "ok"), 1) == "ok"


async def test_a_shorter_limit_for_one_wait_moves_the_armed_timer_earlier() -> None:
    timer = SilenceTimer(30)
    try:
        assert await _wait(timer, 0.01) == "done"  # armed for 30 s from here
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await _wait(timer, 5, limit=0.05) == "expired"
        assert timer.began >= began
        assert loop.time() - timer.began < 5
        # The next wait has the timer's own limit again.
        assert await _wait(timer, 0.1) == "done"
    finally:
        timer.close()


async def test_a_longer_wait_first_does_not_delay_the_next_shorter_one() -> None:
    # The wait for an SSE answer has live_idle; the connection's waits then the probe's.
    timer = SilenceTimer(0.05)
    try:
        assert await _wait(timer, 0.01, limit=30) == "done"  # armed for 30 s from here
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await _wait(timer, 5) == "expired"
        assert loop.time() - began < 5
    finally:
        timer.close()
