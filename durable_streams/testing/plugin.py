"""The pytest plugin: a reference server for the run, a session on it, fresh streams.

Registered as the ``pytest11`` entry point ``durable_streams``, so installing
``durable-streams-aio[testing]`` is all an application's tests need (``-p
durable_streams.testing.plugin`` loads it by hand; ``-p no:durable_streams`` turns it
off). Nothing happens until a test asks for a fixture: the server starts on the first
request for one, once per test run (per worker under pytest-xdist).

Fixtures:

- ``durable_streams_server`` (session scope): a :class:`ReferenceServer`, in memory,
  long-poll wait 2 s. Override it in your ``conftest.py`` for other options.
- ``durable_streams_session``: a :class:`durable_streams.Session` on that server,
  closed after the test (needs pytest-asyncio).
- ``durable_streams_stream_factory``: a :class:`StreamFactory` on that session; ``await
  factory()`` creates a stream no other test uses, ``factory.path()`` names one.

When a test that used the server fails, the tail of the server's log is added to its
report.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import NoReturn

import pytest

import durable_streams as ds

from ._errors import ReferenceServerError
from ._server import ReferenceServer
from ._streams import StreamFactory

__all__ = [
    "durable_streams_server",
    "durable_streams_session",
    "durable_streams_stream_factory",
]

_LONG_POLL_TIMEOUT_MS = 2000
_LOG_SECTION = "durable-streams reference server log (tail)"


@pytest.fixture(scope="session")
def durable_streams_server() -> Iterator[ReferenceServer]:
    """One in-memory reference server for the whole run (long-poll wait 2 s)."""
    with ReferenceServer(long_poll_timeout_ms=_LONG_POLL_TIMEOUT_MS) as server:
        yield server


async def _session(durable_streams_server: ReferenceServer) -> AsyncIterator[ds.Session]:
    """A session on ``durable_streams_server``, closed after the test."""
    async with ds.Session(durable_streams_server.url) as session:
        yield session


def _async_fixture(func: Callable[..., AsyncIterator[object]], name: str) -> object:
    """``func`` as a pytest-asyncio fixture; without pytest-asyncio, one that says why not.

    Importing pytest-asyncio here unconditionally would break every test run of an
    application that has this package but not pytest-asyncio.
    """
    if importlib.util.find_spec("pytest_asyncio") is None:

        def missing() -> NoReturn:
            pytest.fail(
                f"the {name} fixture needs pytest-asyncio: "
                "pip install 'durable-streams-aio[testing]'",
                pytrace=False,
            )

        return pytest.fixture(missing, name=name)
    import pytest_asyncio  # noqa: PLC0415 - optional, see above

    return pytest_asyncio.fixture(func, name=name)


durable_streams_session = _async_fixture(_session, "durable_streams_session")


@pytest.fixture
def durable_streams_stream_factory(
    durable_streams_session: ds.Session, request: pytest.FixtureRequest
) -> StreamFactory:
    """Fresh uniquely named streams on ``durable_streams_session``, named after the test."""
    return StreamFactory(durable_streams_session, test_name=request.node.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the server's log to the report of a failed test that used the server."""
    report = yield
    server = getattr(item, "funcargs", {}).get("durable_streams_server")
    if report.failed and isinstance(server, ReferenceServer):
        with contextlib.suppress(ReferenceServerError, OSError):
            report.sections.append((_LOG_SECTION, server.server_log()))
    return report
