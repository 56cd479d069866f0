"""Ctrl-C during a blocking live read: a real process, a real SIGINT.

The child prints a line from a header function, which runs on the loop thread as the
live request is prepared: the main thread is then certainly waiting in the blocking call.
The parent sends SIGINT on that line and measures how long the child takes to exit.
"""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import pytest

import durable_streams as ds
import durable_streams._blocking_reader as blocking_reader
import durable_streams.sync as dss

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = """
import os, sys
import durable_streams as ds
import durable_streams._blocking_reader as blocking_reader
import durable_streams.sync as dss

mode, handled = sys.argv[2], sys.argv[3] == "handled"
requests = 0

def probe():
    global requests
    requests += 1
    print(f"request {requests}", flush=True)
    return "1"

with dss.Session(os.environ["DURABLE_STREAMS_URL"], headers={"x-probe": probe}) as session:
    stream = session.stream(sys.argv[1])
    stream.create(content_type="application/json")  # request 1
    stream.append({"n": 1})  # request 2
    reader = stream.read(live=mode)
    try:
        for message in reader:  # request 3 catches up, request 4 waits live
            pass
    except KeyboardInterrupt:
        if not handled:
            raise
        print(f"interrupted at {reader.position}", flush=True)
        # The reader is still usable: the interrupted call left nothing half-read.
        stream.append({"n": 2})
        print(f"then {next(reader)}", flush=True)
print("exited the session", flush=True)
"""

# Generous for a loaded CI machine; measured locally at 0.1-0.3 s.
EXIT_WITHIN = 5.0


class Server(Protocol):
    @property
    def url(self) -> str: ...


def _interrupt_live_read(
    server: Server, path: str, tmp_path: Path, mode: str, handled: bool
) -> tuple[subprocess.CompletedProcess[str], float]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url, "PYTHONASYNCIODEBUG": "1"}
    child = subprocess.Popen(
        [sys.executable, "-X", "dev", str(script), path, mode, "handled" if handled else "raise"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines = []
    try:
        for line in child.stdout:
            lines.append(line)
            if line.startswith("request 4"):
                break
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    elapsed = time.monotonic() - sent
    return subprocess.CompletedProcess(
        child.args, child.returncode, "".join(lines) + out, err
    ), elapsed


@pytest.mark.parametrize("mode", ["long-poll", "sse"])
def test_ctrl_c_handled_stops_the_read_and_keeps_its_position(
    server: Server, path: str, tmp_path: Path, mode: str
) -> None:
    result, elapsed = _interrupt_live_read(server, path, tmp_path, mode, handled=True)
    assert result.returncode == 0, result.stderr
    assert elapsed < EXIT_WITHIN
    assert "interrupted at 0000" in result.stdout
    assert "then {'n': 2}" in result.stdout  # nothing skipped, nothing repeated
    assert "exited the session" in result.stdout
    assert result.stderr == ""  # no thread traceback, no "Task was destroyed", no warning


@pytest.mark.parametrize("mode", ["long-poll", "sse"])
def test_ctrl_c_unhandled_ends_the_program_as_python_does(
    server: Server, path: str, tmp_path: Path, mode: str
) -> None:
    result, elapsed = _interrupt_live_read(server, path, tmp_path, mode, handled=False)
    # Python ends a program on an uncaught KeyboardInterrupt by SIGINT (130 in a shell).
    assert result.returncode == -signal.SIGINT
    assert elapsed < EXIT_WITHIN
    assert "exited the session" not in result.stdout
    assert result.stderr.rstrip().endswith("KeyboardInterrupt")
    assert result.stderr.count("Traceback") == 1  # the main thread's, only
    assert "Task was destroyed" not in result.stderr
    assert "Exception in thread" not in result.stderr
    assert "Warning" not in result.stderr
    # The server saw the stream and its message; a fresh session reads it at once.
    with dss.Session(server.url) as session:
        assert session.stream(path).read_all() == [{"n": 1}]


# -- in this process: an interrupt simulated at a chosen moment --------------------------


def test_an_interrupted_live_wait_cancels_it_and_keeps_the_reader(
    server: Server, path: str
) -> None:
    interrupt_on_live_request = {"armed": False}

    def header() -> str:
        # Runs on the loop thread as each request is prepared: the main thread waits.
        if interrupt_on_live_request["armed"]:
            interrupt_on_live_request["armed"] = False
            # A real SIGINT, as Ctrl-C sends: it wakes the main thread from its wait.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        return "1"

    with dss.Session(server.url, headers={"x-h": header}) as session:
        stream = session.stream(path)
        stream.create(content_type="application/json")
        stream.append({"n": 1})
        reader = stream.read(live="long-poll")
        assert next(reader) == {"n": 1}
        interrupt_on_live_request["armed"] = True
        with pytest.raises(KeyboardInterrupt):
            next(reader)  # waits on a long-poll when the interrupt lands
        # The call was cancelled on the loop: nothing of it is left running there.
        assert len(session._loop.call(asyncio.all_tasks)) == 2
        position = reader.position
        stream.append({"n": 2})
        assert next(reader) == {"n": 2}
        assert stream.read_all(position) == [{"n": 2}]


def test_a_message_taken_as_ctrl_c_lands_is_held_not_lost(
    server: Server, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = blocking_reader._next
    interrupt = {"armed": False}

    async def next_then_interrupted(iterator: Any) -> Any:
        item = await original(iterator)
        if interrupt["armed"]:
            interrupt["armed"] = False
            # The call has its item; the main thread sees the interrupt as it wakes.
            _thread.interrupt_main()
        return item

    monkeypatch.setattr(blocking_reader, "_next", next_then_interrupted)
    with dss.Session(server.url) as session:
        stream = session.stream(path)
        stream.create(content_type="application/json")
        for n in range(3):
            stream.append({"n": n})
        reader = stream.read(live=False)
        assert next(reader) == {"n": 0}
        before = reader.position
        interrupt["armed"] = True
        with pytest.raises(KeyboardInterrupt):
            next(reader)
        assert reader.position == before  # the held message is not counted...
        assert stream.read_all(before)[0] == {"n": 1}
        with pytest.raises(ds.UsageError, match=r"take that with next\(\)"):
            reader.read_all()
        assert next(reader) == {"n": 1}  # ...and comes next
        assert reader.position != before
        assert list(reader) == [{"n": 2}]
