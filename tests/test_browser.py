"""The FastAPI relay's page, in a real headless browser, shows a message appended live.

It also posts through its own form, rides out a restart of the relay (getting exactly
what it missed, by its Last-Event-ID), stops at the end of the stream, and starts a stream
that did not exist yet.

The browser is Debian's chromium (``apt-get install chromium``; never a downloaded
build), driven over the DevTools protocol with aiohttp's websocket client, so no extra
Python package is needed. Without chromium the test is skipped, except in CI (``CI`` set),
where that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import durable_streams as ds
from durable_streams.testing import ReferenceServer
from tests.test_examples import Example, example, free_port, require, wait_http

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
_WAIT = 20.0


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Path]:
    """A headless chromium with its own profile; yields the profile directory."""
    executable = chromium_path()
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # its helper processes go with it
    )
    try:
        yield profile
    finally:
        with log:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Page:
    """One browser tab, over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command; return its result (events arriving meanwhile are skipped)."""
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(_WAIT):
            while True:
                message = await self._ws.receive_json()
                if message.get("id") == call_id:
                    assert "error" not in message, message
                    result: dict[str, Any] = message["result"]
                    return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, expected: Any) -> None:
        """Poll ``expression`` until it equals ``expected``."""
        value = None
        try:
            async with asyncio.timeout(_WAIT):
                while True:
                    value = await self.evaluate(expression)
                    if value == expected:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            text = await self.evaluate("document.body.innerText")
            pytest.fail(f"{expression} is {value!r}, not {expected!r}; the page says:\n{text}")


@pytest.fixture
async def page(chromium: Path) -> AsyncIterator[Page]:
    """The browser's first tab."""
    port_file = chromium / "DevToolsActivePort"
    async with asyncio.timeout(_WAIT):
        while True:  # chromium writes the file once it listens
            if port_file.exists() and (port := port_file.read_text().split()[:1]):
                break
            await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{port[0]}/json/list") as response:
            targets = await response.json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with client.ws_connect(url, max_msg_size=0) as ws:
            yield Page(ws)


async def test_relay_page_shows_a_message_appended_after_it_opened(
    server: ReferenceServer, session: ds.Session, page: Page, tmp_path: Path
) -> None:
    require("fastapi")
    require("uvicorn")
    prefix = f"/browser-{uuid.uuid4().hex}"
    stream = session.stream(f"{prefix}/demo")
    await stream.create(content_type="application/json")
    await stream.append({"text": "written before the page opened"})
    port = free_port()
    page_url = f"http://127.0.0.1:{port}/streams/demo"
    status = "document.getElementById('status').textContent"
    items = "[...document.querySelectorAll('#messages li')].map(li => li.textContent)"
    before = "written before the page opened"
    after = f"appended after the page opened ({uuid.uuid4().hex[:8]})"
    meanwhile = "appended while the relay was down"

    async with relay_on(port, prefix, server, tmp_path) as relay:
        await wait_http(page_url, relay)
        await page.call("Page.navigate", url=page_url)
        await page.wait_for(status, "live")
        await page.wait_for(items, [before])

        await stream.append({"text": after})
        await page.wait_for(items, [before, after])

        # The page's own form posts through the relay, and the message comes back live.
        await page.evaluate(
            "document.querySelector('#send input').value = 'typed in the page';"
            "document.querySelector('#send button').click()"
        )
        await page.wait_for(items, [before, after, "typed in the page"])

        # The relay goes away; the page notices and keeps trying.
        assert await relay.stop() in (0, -signal.SIGTERM), relay.report()
        relay.assert_clean()
    await page.wait_for(status, "reconnecting…")
    await stream.append({"text": meanwhile})

    # A new relay on the same port: the browser reconnects with its Last-Event-ID and gets
    # exactly what it missed.
    async with relay_on(port, prefix, server, tmp_path) as relay:
        await page.wait_for(items, [before, after, "typed in the page", meanwhile])
        await page.wait_for(status, "live")

        await stream.close()
        await page.wait_for(status, "the stream is closed")

        # A page opened before its stream exists says so; its first message creates it.
        await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/streams/fresh")
        await page.wait_for(f"{status}.startsWith('not connected')", True)
        await page.evaluate(
            "document.querySelector('#send input').value = 'the first message';"
            "document.querySelector('#send button').click()"
        )
        await page.wait_for(items, ["the first message"])
        await page.wait_for(status, "live")

        shot = await page.call("Page.captureScreenshot", format="png")
        (tmp_path / "relay-page.png").write_bytes(base64.b64decode(shot["data"]))  # for a look
        assert await relay.stop() in (0, -signal.SIGTERM), relay.report()
        relay.assert_clean()


@contextlib.asynccontextmanager
async def relay_on(
    port: int, prefix: str, server: ReferenceServer, workdir: Path
) -> AsyncIterator[Example]:
    """examples/fastapi_relay.py on ``port``, relaying the streams under ``prefix``."""
    args = ("--port", str(port))
    async with example(
        "fastapi_relay.py", *args, server=server, tmp_path=workdir, RELAY_PREFIX=prefix
    ) as relay:
        yield relay
