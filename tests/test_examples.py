"""Every program in examples/ runs, as a user would run it, against the reference server.

Each example starts as a child process with ``DURABLE_STREAMS_URL`` pointing at the
test server; the web examples listen on a free port on 127.0.0.1. The quick start runs in
``tests/test_docs.py``. Also here: checks that keep the docs runnable (a ```` ```python ````
block that ``tests/test_docs.py`` would not see, an error tree out of step with the code).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import json
import os
import re
import signal
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import durable_streams as ds
from durable_streams import _errors
from durable_streams.testing import ReferenceServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Programs, and the tests that run them (a new example needs a test here).
TESTED = {
    "quickstart.py": "tests/test_docs.py::test_examples_quickstart_runs",
    "token_stream.py": "test_token_stream",
    "worker.py": "test_worker_checkpoints_resumes_and_stops_on_sigterm",
    "aiohttp_service.py": "test_aiohttp_service",
    "fastapi_relay.py": "test_fastapi_relay",
    "test_aiohttp_service.py": "test_testing_recipe",
    "worker_pool.py": "test_worker_pool",
    "webhook_aiohttp.py": "tests/test_webhook_examples.py::test_webhook_aiohttp",
    "webhook_fastapi.py": "tests/test_webhook_examples.py::test_webhook_fastapi",
}
# What an example must never print, however it ends.
_BAD_OUTPUT = (
    "Traceback",
    "Unclosed",
    "was never awaited",
    "Task was destroyed",
    "Exception ignored",
)
_WAIT = 20.0


def require(module: str) -> None:
    """Skip without ``module`` (an ``examples`` extra); in CI its absence is a failure."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed (pip install -e '.[examples]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Example:
    """An example program running as a child process; stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self._stderr = stderr

    @property
    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace")

    def report(self) -> str:
        return f"{self.name} stdout:\n" + "\n".join(self.lines) + f"\nstderr:\n{self.stderr}"

    async def expect(self, text: str, timeout: float = _WAIT) -> str:
        """Read stdout until a line containing ``text``; return that line."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        pytest.fail(f"{self.name} ended before printing {text!r}\n{self.report()}")
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    if text in line:
                        return line
        except TimeoutError:
            pytest.fail(f"{self.name} did not print {text!r} in {timeout}s\n{self.report()}")

    async def rest(self) -> str:
        """Everything it prints until it exits."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(_WAIT):
            rest = (await self.proc.stdout.read()).decode()
        self.lines.extend(rest.splitlines())
        return rest

    async def wait(self) -> int:
        """Its exit status, once it has exited."""
        async with asyncio.timeout(_WAIT):
            return await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM, then its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return await self.wait()

    def assert_clean(self) -> None:
        """Nothing alarming was printed (tracebacks, leaked resources)."""
        for bad in _BAD_OUTPUT:
            assert bad not in self.stderr, self.report()


@contextlib.asynccontextmanager
async def example(
    name: str, *args: str, server: ReferenceServer, tmp_path: Path, **env: str
) -> AsyncIterator[Example]:
    """Run ``examples/<name>``; kill it on the way out if it is still running."""
    stderr_path = tmp_path / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / name),
            *args,
            cwd=tmp_path,
            env={**os.environ, "DURABLE_STREAMS_URL": server.url, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            yield Example(proc, stderr_path, name)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def wait_http(url: str, program: Example) -> None:
    """Wait until ``url`` answers (the web example is listening)."""
    deadline = time.monotonic() + _WAIT
    async with aiohttp.ClientSession() as client:
        while True:
            try:
                async with client.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                if program.proc.returncode is not None or time.monotonic() > deadline:
                    pytest.fail(f"{program.name} is not listening at {url}\n{program.report()}")
                await asyncio.sleep(0.1)


# -- the examples ------------------------------------------------------------------------


def test_every_example_is_tested_and_says_how_to_run_it() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TESTED)
    for name in TESTED:
        header = (EXAMPLES / name).read_text().split('"""')[1]
        assert f"examples/{name}" in header, f"{name}: its docstring must say how to run it"


async def test_token_stream(server: ReferenceServer, tmp_path: Path) -> None:
    async with example("token_stream.py", server=server, tmp_path=tmp_path) as program:
        out = await program.rest()
        assert await program.wait() == 0, program.report()
    text = out.split("\n", 1)[1]  # after the "prompt:" line
    assert text.startswith("Durable streams keep every token, so a reader"), out
    assert "picks up exactly where it left off.\n[end of stream: 19 tokens, stop]\n" in text
    program.assert_clean()


async def test_worker_checkpoints_resumes_and_stops_on_sigterm(
    server: ReferenceServer, session: ds.Session, path: str, tmp_path: Path
) -> None:
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    for n in range(3):
        await stream.append({"order": n})
    checkpoint = tmp_path / "orders.offset"
    args = (path, "--checkpoint", str(checkpoint))

    async with example("worker.py", *args, server=server, tmp_path=tmp_path) as worker:
        assert (await worker.expect("worker: reading")).endswith("from offset -1")
        for n in range(3):  # catch-up
            assert await worker.expect("handled") == f'handled {{"order": {n}}}'
        await stream.append({"order": 3})  # live
        assert await worker.expect("handled") == 'handled {"order": 3}'
        await asyncio.sleep(0.2)  # let it save the checkpoint and wait for more
        assert await worker.stop() == 0, worker.report()
        saved = (await worker.rest()).strip()
        worker.assert_clean()
    tail = (await stream.head()).offset
    assert checkpoint.read_text().strip() == tail
    assert saved == f"worker: stopped; checkpoint {tail}"

    await stream.append({"order": 4})  # while the worker is down
    async with example("worker.py", *args, server=server, tmp_path=tmp_path) as worker:
        assert (await worker.expect("worker: reading")).endswith(f"from offset {tail}")
        assert await worker.expect("handled") == 'handled {"order": 4}'  # nothing repeated
        await stream.close(final={"order": 5})
        assert await worker.expect("handled") == 'handled {"order": 5}'
        await worker.expect("the stream is closed")
        assert await worker.wait() == 0, worker.report()  # EOF: it stops by itself
        worker.assert_clean()
    assert checkpoint.read_text().strip() == (await stream.head()).offset


async def test_worker_pool(server: ReferenceServer, tmp_path: Path) -> None:
    """Three worker processes share one pull-wake subscription; every order is handled."""
    async with example("worker_pool.py", server=server, tmp_path=tmp_path) as pool:
        out = await pool.rest()
        assert await pool.wait() == 0, pool.report()
    assert "coordinator: all 200 orders acknowledged" in out, pool.report()
    assert "coordinator: workers exited with [0, 0, 0]" in out, pool.report()
    done = re.findall(r"^(w\d): done, (\d+) claims, (\d+) orders$", out, re.MULTILINE)
    assert sorted(name for name, _, _ in done) == ["w1", "w2", "w3"], out
    assert sum(int(orders) for _, _, orders in done) == 200  # no worker died: each once
    handled = [int(n) for line in re.findall(r": orders (.*)$", out, re.MULTILINE)
               for n in line.split(", ")]  # fmt: skip
    assert sorted(handled) == list(range(200))
    pool.assert_clean()


async def test_aiohttp_service(
    server: ReferenceServer, session: ds.Session, tmp_path: Path
) -> None:
    path = f"/examples/{uuid.uuid4().hex}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"EVENTS_STREAM": path, "PRODUCER_ID": "service-test"}
    async with (
        example(
            "aiohttp_service.py", "--port", str(port), server=server, tmp_path=tmp_path, **env
        ) as service,
        aiohttp.ClientSession() as client,
    ):
        await wait_http(f"{base}/stats", service)

        async def post(event: object) -> dict[str, Any]:
            async with client.post(f"{base}/events", json=event) as response:
                assert response.status == 201, await response.text()
                answer: dict[str, Any] = await response.json()
                return answer

        # Requests arriving together share the one producer (and its batches).
        acks = await asyncio.gather(*(post({"n": n}) for n in range(20)))
        assert all(ack["offset"] and ack["duplicate"] is False for ack in acks)
        async with client.post(f"{base}/events?wait=false", json={"n": 20}) as response:
            assert response.status == 202
        async with client.post(f"{base}/events", data=b"{oops") as response:
            assert response.status == 400
        async with client.get(f"{base}/stats") as response:
            stats = await response.json()
        assert stats["messages_sent"] + stats["messages_buffered"] == 21

        assert await service.stop() == 0, service.report()  # flushes what is buffered
        service.assert_clean()
    items = await session.stream(path).read_all()
    assert sorted(item["n"] for item in items) == list(range(21))  # each exactly once


async def read_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The next Server-Sent Event (comments and bare ``retry`` lines skipped)."""
    fields: dict[str, str] = {}
    async with asyncio.timeout(_WAIT):
        while True:
            line = (await response.content.readline()).decode()
            assert line, "the event stream ended"
            line = line.rstrip("\n")
            if not line:
                if "data" in fields:
                    return fields
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")


async def test_fastapi_relay(server: ReferenceServer, session: ds.Session, tmp_path: Path) -> None:
    require("fastapi")
    require("uvicorn")
    prefix = f"/relay-{uuid.uuid4().hex}"
    port = free_port()
    base = f"http://127.0.0.1:{port}/streams"
    async with (
        example(
            "fastapi_relay.py", "--port", str(port), server=server, tmp_path=tmp_path,
            RELAY_PREFIX=prefix,
        ) as relay,
        aiohttp.ClientSession() as client,
    ):  # fmt: skip
        await wait_http(f"{base}/demo", relay)

        async def post(text: str) -> str:
            async with client.post(f"{base}/demo/messages", json={"text": text}) as response:
                assert response.status == 201, await response.text()
                offset: str = (await response.json())["offset"]
                return offset

        async def events(**headers: str) -> aiohttp.ClientResponse:
            response = await client.get(f"{base}/demo/events", headers=headers)
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            return response

        # A missing stream and an impossible offset are HTTP errors, not event streams.
        async with client.get(f"{base}/missing/events") as response:
            assert response.status == 404
        async with client.get(f"{base}/demo/events") as response:
            assert response.status == 404  # /demo does not exist yet either
        first = await post("first")  # creates the stream
        async with client.get(f"{base}/demo/events", headers={"Last-Event-ID": "a,b"}) as resp:
            assert resp.status == 400

        # Catch-up, then live; every event's id is the offset after its messages.
        response = await events()
        assert await read_event(response) == {"id": first, "data": '[{"text": "first"}]'}
        second = await post("second")
        assert await read_event(response) == {"id": second, "data": '[{"text": "second"}]'}
        response.close()  # the browser goes away...

        await post("third")  # ...messages arrive meanwhile...
        fourth = await post("fourth")
        # ...and it reconnects with the last id it saw: only what it missed comes.
        response = await events(**{"Last-Event-ID": second})
        seen: list[object] = []
        while len(seen) < 2:
            event = await read_event(response)
            seen.extend(json.loads(event["data"]))
        assert seen == [{"text": "third"}, {"text": "fourth"}]
        assert event["id"] == fourth

        # The end of a closed stream reaches the browser as an ``eof`` event.
        await session.stream(f"{prefix}/demo").close()
        assert (await read_event(response)).get("event") == "eof"
        response.close()

        async with client.get(f"{base}/demo") as page:
            assert page.status == 200
            assert "new EventSource" in await page.text()
        assert await relay.stop() in (0, -signal.SIGTERM), relay.report()
        relay.assert_clean()


async def test_testing_recipe(tmp_path: Path) -> None:
    """examples/test_aiohttp_service.py passes under pytest, as docs/testing.md runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        str(EXAMPLES / "test_aiohttp_service.py"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, out
    assert re.search(r"\b3 passed\b", out), out


# -- keeping the docs runnable -----------------------------------------------------------

_DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", _DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in _DOC_FILES])
def test_python_blocks_are_where_test_docs_finds_them(doc: Path) -> None:
    """tests/test_docs.py runs ```` ```python ```` blocks that start a line; an indented one
    (inside a list, an admonition or a tab) would silently not run."""
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        assert not re.match(r"\s+```python\b", line), (
            f"{doc.name}:{number}: an indented ```python block is never run; unindent it, "
            "or fence it as ```py if it is not a complete program"
        )


def test_readme_links_resolve() -> None:
    """Every relative link in README.md (to the docs pages, say) names a file that exists."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert [link for link in local if not (ROOT / link).exists()] == []


def test_api_reference_covers_every_public_name() -> None:
    """Each name in ``durable_streams.__all__`` has its entry in docs/reference/."""
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: durable_streams\.(\w+)$", pages, re.MULTILINE))
    assert sorted(set(ds.__all__) - documented) == []


def test_docs_show_the_error_tree_of_the_code() -> None:
    """docs/errors.md draws the tree exactly as durable_streams/_errors.py's docstring does."""
    doc = inspect.cleandoc(_errors.__doc__ or "")
    drawing = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\n", 1)[0])
    assert drawing.startswith("DurableStreamsError\n")
    assert f"```text\n{drawing}\n```" in (ROOT / "docs" / "errors.md").read_text()
