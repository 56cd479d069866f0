"""The testing kit's fixtures on their own: all a test needs besides
``pip install 'durable-streams-aio[testing]'`` (CI runs this file in a fresh virtual
environment with nothing else installed, from the built wheel)."""

from __future__ import annotations

from pathlib import Path

import durable_streams as ds
from durable_streams.testing import Fault, ReferenceServer, StreamFactory


async def test_each_call_makes_a_fresh_stream(
    durable_streams_stream_factory: StreamFactory,
) -> None:
    first = await durable_streams_stream_factory("events")
    second = await durable_streams_stream_factory("events")
    assert first.url != second.url
    await first.append({"n": 1})
    assert await first.read_all() == [{"n": 1}]
    assert await second.read_all() == []


async def test_faults_are_injected_on_the_real_server(
    durable_streams_server: ReferenceServer,
    durable_streams_session: ds.Session,
    durable_streams_stream_factory: StreamFactory,
) -> None:
    stream = await durable_streams_stream_factory()
    durable_streams_server.inject(stream.url, Fault(status=503, count=2, method="POST"))
    await stream.append({"survived": "two 503s"})
    assert await stream.read_all() == [{"survived": "two 503s"}]
    assert durable_streams_session.statistics().retries == 2


async def test_a_file_backed_server_survives_a_restart(tmp_path: Path) -> None:
    with ReferenceServer(data_dir=tmp_path / "data") as server:
        async with ds.Session(server.url) as session:
            stream = session.stream("/kept")
            await stream.create(content_type="application/json")
            await stream.append("before")
            server.restart()  # same port, same data
            assert await stream.read_all() == ["before"]
