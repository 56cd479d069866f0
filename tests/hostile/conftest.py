"""Fixtures of the hostile layer: recording servers on 127.0.0.1 and on 127.0.0.2."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import durable_streams as ds
from tests.hostile.servers import HostileServer


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    """A recording server on 127.0.0.1; it behaves (see ``servers.stub``) until told not to."""
    async with HostileServer() as server:
        yield server


@pytest.fixture
async def capture() -> AsyncIterator[HostileServer]:
    """A recording server on 127.0.0.2: another origin than ``hostile``."""
    async with HostileServer(host="127.0.0.2") as server:
        yield server


@pytest.fixture
def budget() -> ds.RetryPolicy:
    """Two retries with delays of a millisecond or two: at most three requests."""
    return ds.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
