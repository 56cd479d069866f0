"""Fixtures: the real reference server, a session on it, and unique stream paths.

The servers come from the shipped testing kit (``durable_streams.testing``): ``server``
is its pytest plugin's ``durable_streams_server``, one for the whole run.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer

# asyncio debug mode reports unawaited coroutines and unclosed resources; loops created
# by pytest-asyncio read this when they are made.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

_counter = itertools.count()

# The mocked-transport tests run in `nox -s mocked` only, on the aiohttp that aioresponses
# still works with (see noxfile.py); `pytest tests/mocked` names them explicitly.
collect_ignore = ["mocked"]
# The fast extra's own tests run in `nox -s fast`, where msgspec and orjson are installed;
# without them the rest of the suite runs on the standard json module, as users get it.
if importlib.util.find_spec("msgspec") is None:
    collect_ignore.append("test_perf_fastjson.py")


@pytest.fixture(scope="session")
def server(durable_streams_server: ReferenceServer) -> ReferenceServer:
    """One in-memory reference server for the whole run (long-poll wait 2 s)."""
    return durable_streams_server


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[ReferenceServer]:
    """A file-backed reference server of this test's own, for restart and crash tests."""
    with ReferenceServer(data_dir=tmp_path / "data", long_poll_timeout_ms=2000) as srv:
        yield srv


@pytest.fixture
def fast_retry() -> ds.RetryPolicy:
    """A retry policy with short delays, so fault tests run quickly."""
    return ds.RetryPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
async def session(server: ReferenceServer, fast_retry: ds.RetryPolicy) -> AsyncIterator[ds.Session]:
    async with ds.Session(server.url, retry=fast_retry) as s:
        yield s


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A stream path no other test uses."""
    # Only characters that need no percent-encoding: fault injection matches raw paths.
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    return f"/t/{name}-{next(_counter)}"


@pytest.fixture
async def json_stream(session: ds.Session, path: str) -> ds.Stream:
    stream = session.stream(path)
    await stream.create(content_type="application/json")
    return stream


@pytest.fixture
async def byte_stream(session: ds.Session, path: str) -> ds.Stream:
    stream = session.stream(path)
    await stream.create(content_type="application/octet-stream")
    return stream
