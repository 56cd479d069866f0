"""The two webhook examples run by themselves to completion against a server with webhooks.

Each starts its own receiver on 127.0.0.1, creates a webhook subscription, appends events
and exits once every event is handled; here they run as a user would run them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_streams.testing import ReferenceServer
from tests.test_examples import example, require


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(webhooks=True) as srv:
        yield srv


async def test_webhook_aiohttp(webhook_server: ReferenceServer, tmp_path: Path) -> None:
    async with example("webhook_aiohttp.py", server=webhook_server, tmp_path=tmp_path) as program:
        out = await program.rest()
        assert await program.wait() == 0, program.report()
    program.assert_clean()
    assert "all 6 orders handled, 0 duplicates" in out, program.report()
    assert len(re.findall(r"^handled \{'order': \d, 'region': '(eu|us)'\}", out, re.M)) == 6
    assert len(re.findall(r"^acked orders-\w+/(eu|us) at \d+_\d+$", out, re.M)) == 2
    assert "verifier: WebhookVerifierStatistics(verified=" in out
    assert "refused=0, key_fetches=1)" in out
    assert out.endswith("subscription deleted; done\n")


async def test_webhook_fastapi(webhook_server: ReferenceServer, tmp_path: Path) -> None:
    require("fastapi")
    require("uvicorn")
    async with example("webhook_fastapi.py", server=webhook_server, tmp_path=tmp_path) as program:
        out = await program.rest()
        assert await program.wait() == 0, program.report()
    program.assert_clean()
    assert "a forged request was answered 401: webhook signature refused: malformed" in out
    assert "all 8 jobs handled, 0 duplicates" in out, program.report()
    assert len(re.findall(r"^handled \{'job': \d\}", out, re.M)) == 8
    acked = re.findall(r"^acked jobs-\w+/[ab] at (\S+) \(tail (\S+)\)$", out, re.M)
    assert len(acked) == 2
    assert all(offset == tail for offset, tail in acked), out
    assert "the server woke again: False" in out
    assert out.endswith("subscription deleted; done\n")
