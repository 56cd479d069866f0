"""The blocking facade shared by many threads, and what it leaves behind: nothing."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Protocol

import pytest

import durable_streams as ds
import durable_streams.sync as dss

THREADS = 16
PER_THREAD = 25


class Server(Protocol):
    @property
    def url(self) -> str: ...


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_sixteen_threads_share_one_session(server: Server, path: str) -> None:
    barrier = threading.Barrier(THREADS)
    failures: list[BaseException] = []
    with dss.Session(server.url) as session:
        shared = session.stream(path + "-shared")
        shared.create(content_type="application/json")
        with shared.producer("many-threads") as producer:

            def work(n: int) -> None:
                try:
                    own = session.stream(f"{path}-{n}")
                    own.create(content_type="application/json")
                    barrier.wait()  # every thread in flight at once
                    for i in range(PER_THREAD):
                        own.append({"t": n, "i": i})
                        producer.append({"t": n, "i": i})
                    assert [m["i"] for m in own.read(live=False)] == list(range(PER_THREAD))
                except BaseException as exc:
                    failures.append(exc)

            workers = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        assert failures == []
        written = shared.read_all()
        # Exactly once each; each thread's own messages in its order.
        assert len(written) == THREADS * PER_THREAD
        for n in range(THREADS):
            assert [m["i"] for m in written if m["t"] == n] == list(range(PER_THREAD))
        assert producer.statistics().duplicates == 0


def test_many_threads_follow_one_stream_live(server: Server, path: str) -> None:
    readers = 8
    caught_up = threading.Barrier(readers + 1)
    results: dict[int, list[int]] = {}
    with dss.Session(server.url) as session:
        stream = session.stream(path)
        stream.create(content_type="application/json")

        def follow(n: int) -> None:
            seen: list[int] = []
            with stream.read(live="sse" if n % 2 else "long-poll") as reader:
                for batch in reader.batches():
                    seen.extend(m["i"] for m in batch.items)
                    if batch.up_to_date and not batch.items and not seen:
                        caught_up.wait()
            results[n] = seen

        threads = [threading.Thread(target=follow, args=(n,)) for n in range(readers)]
        for thread in threads:
            thread.start()
        caught_up.wait()
        for i in range(10):
            stream.append({"i": i})
        stream.close()
        for thread in threads:
            thread.join(timeout=30)
    assert results == {n: list(range(10)) for n in range(readers)}


def test_nothing_is_left_after_close(server: Server, path: str) -> None:
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    session = dss.Session(server.url)
    stream = session.stream(path)
    stream.create(content_type="text/plain")
    stream.append_stream(iter([b"a", b"b"]))  # pulls in a worker thread of the loop
    with stream.producer("leak-check") as producer:
        producer.append(b"c")
    live = stream.read(live="sse")
    assert next(live) == b"abc"  # an SSE connection is open now...
    live.close()  # ...and closed
    unclosed = stream.read(live="long-poll")
    next(unclosed)  # left open: the session closes it
    # Only the portal's own task and this call's task run on the loop.
    tasks = session._loop.call(asyncio.all_tasks)
    assert len(tasks) == 2, tasks
    session.close()
    assert set(threading.enumerate()) == threads_before
    assert _open_fds() <= fds_before
    with pytest.raises(ds.ResourceClosedError):
        next(unclosed)


def test_a_session_left_open_closes_its_readers_and_producers(server: Server, path: str) -> None:
    session = dss.Session(server.url)
    stream = session.stream(path)
    stream.create(content_type="application/json")
    producer = stream.producer("left-open", linger=30)
    receipt = producer.append({"n": 1})  # buffered: the linger has not passed
    reader = stream.read(live="long-poll")
    session.close()  # sends what the producer held
    assert receipt.result().offset is not None
    with pytest.raises(ds.ResourceClosedError):
        next(reader)
    producer.close()  # after the session: nothing to do, no error
    with dss.Session(server.url) as check:
        assert check.stream(path).read_all() == [{"n": 1}]


def test_a_dropped_session_warns_and_stops_its_thread(server: Server, path: str) -> None:
    threads_before = set(threading.enumerate())
    session = dss.Session(server.url)
    session.stream(path).exists()
    with pytest.warns(ResourceWarning, match="never closed"):
        del session  # the last reference: finalized here, in this thread
    assert set(threading.enumerate()) == threads_before


def test_a_reader_dropped_mid_iteration_closes_its_connection(server: Server, path: str) -> None:
    with dss.Session(server.url) as session:
        stream = session.stream(path)
        stream.create(content_type="application/json")
        stream.append({"n": 1})
        fds = _open_fds()
        for _ in stream.read(live="sse"):
            break  # no with: the reader is dropped here
        gc.collect()
        # Released on the loop thread; a round trip through it lets that run first.
        assert session.stream(path).exists()
        assert _open_fds() <= fds


EXIT_SCRIPT = """
import os, sys, threading
import durable_streams.sync as dss

# Never closed: the interpreter's exit must close it without hanging.
session = dss.Session(os.environ["DURABLE_STREAMS_URL"])
stream = session.stream(sys.argv[1])
stream.create(content_type="application/json")
producer = stream.producer("at-exit", linger=60)
producer.append({"sent": "at exit"})

def follow():
    try:
        for _ in stream.read(live="long-poll"):
            pass
    except Exception as exc:
        print("reader ended:", type(exc).__name__, flush=True)

threading.Thread(target=follow, daemon=True).start()
print("ready", flush=True)
"""


def test_interpreter_exit_is_not_held_up_by_an_open_session(
    server: Server, path: str, tmp_path: Path
) -> None:
    script = tmp_path / "left_open.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", str(script), path],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    assert "ResourceWarning: a durable_streams.sync.Session was never closed" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Task was destroyed" not in result.stderr
    # The producer's buffered message was sent on the way out.
    with dss.Session(server.url) as session:
        assert session.stream(path).read_all() == [{"sent": "at exit"}]


FORK_SCRIPT = """
import os, sys
import durable_streams as ds
import durable_streams.sync as dss

with dss.Session(os.environ["DURABLE_STREAMS_URL"]) as session:
    stream = session.stream(sys.argv[1])
    stream.create(content_type="application/json")
    pid = os.fork()
    if pid == 0:
        try:
            stream.append({"from": "child"})
        except ds.UsageError as exc:
            print("child refused:", exc, flush=True)
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stream.append({"from": "parent"})
    print("parent appended", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_session_used_before_a_fork_refuses_in_the_child(
    server: Server, path: str, tmp_path: Path
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORK_SCRIPT))
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
    result = subprocess.run(
        [sys.executable, str(script), path],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "child refused: this session was used before the process forked" in result.stdout
    assert "parent appended" in result.stdout
