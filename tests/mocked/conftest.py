"""Tests on a mocked transport: what the library asks aiohttp to send, request by request.

aioresponses replaces ``aiohttp.ClientSession._request``, which every request of the
library goes through (``ClientSession.request`` in the transport), and records its
arguments: method, URL, headers, query parameters, body and the explicit options. These
tests pin that shape. Only ``nox -s mocked`` runs them, on aiohttp 3.13 (see the
noxfile); ``nox -s tests`` leaves this directory out (tests/conftest.py), and here a
missing aioresponses fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aioresponses import aioresponses

import durable_streams as ds

BASE = "http://ds.test/v1/stream"
OFFSET_0 = "0000000000000000_0000000000000000"
OFFSET_1 = "0000000000000000_0000000000000010"
OFFSET_2 = "0000000000000000_0000000000000020"
OFFSET_3 = "0000000000000000_0000000000000030"
# Quick retries and reconnects: nothing here waits on a real server.
FAST = ds.RetryPolicy(initial_delay=0.001, max_delay=0.002)


@dataclass(frozen=True)
class Sent:
    """One request as the library handed it to aiohttp."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    params: list[tuple[str, str]]  # decoded from the URL, in the library's order
    body: bytes | None
    options: Mapping[str, Any]

    @property
    def query(self) -> dict[str, str]:
        return dict(self.params)

    def json(self) -> object:
        assert self.body is not None
        return json.loads(self.body)


def sent(mock: aioresponses) -> list[Sent]:
    """Every request recorded, grouped by (method, URL) in first-seen order."""
    out = []
    for (method, url), calls in mock.requests.items():
        for call in calls:
            kwargs = dict(call.kwargs)
            headers = {k.lower(): v for k, v in (kwargs.pop("headers", None) or {}).items()}
            # The library sends its query already encoded, in the URL (params stays unset).
            assert not kwargs.pop("params", None)
            params = parse_qsl(url.raw_query_string, keep_blank_values=True)
            body = kwargs.pop("data", None)
            out.append(Sent(method, url.path, headers, params, body, kwargs))
    return out


def url_pattern(path: str) -> re.Pattern[str]:
    """Any query string on ``path`` under BASE."""
    return re.compile(re.escape(BASE + path) + r"(\?.*)?$")


def sse_body(*events: tuple[str, object]) -> str:
    """A Server-Sent Events body: ``("data", value)`` and ``("control", {...})`` events."""
    return "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


class Answers:
    """The reference server's answers, as aioresponses responses (in registration order)."""

    def __init__(self, mock: aioresponses) -> None:
        self.mock = mock

    def create(self, path: str, content_type: str = "application/json") -> None:
        self.mock.put(
            url_pattern(path),
            status=201,
            content_type=content_type,
            headers={"Stream-Next-Offset": OFFSET_0},
        )

    def head(self, path: str, content_type: str = "application/json") -> None:
        self.mock.head(
            url_pattern(path),
            status=200,
            content_type=content_type,
            headers={"Stream-Next-Offset": OFFSET_1},
        )

    def append(self, path: str, *, repeat: bool = False) -> None:
        self.mock.post(
            url_pattern(path),
            status=204,
            content_type="text/plain",
            headers={"Stream-Next-Offset": OFFSET_1},
            repeat=repeat,
        )

    def batch(self, path: str, *, repeat: bool = False) -> None:
        self.mock.post(
            url_pattern(path),
            status=200,
            content_type="text/plain",
            headers={"Stream-Next-Offset": OFFSET_1},
            repeat=repeat,
        )

    def close(self, path: str) -> None:
        self.mock.post(
            url_pattern(path),
            status=204,
            content_type="text/plain",
            headers={"Stream-Next-Offset": OFFSET_1, "Stream-Closed": "true"},
        )

    def delete(self, path: str) -> None:
        self.mock.delete(url_pattern(path), status=204, content_type="text/plain")

    def read(
        self,
        path: str,
        items: list[object],
        *,
        offset: str = OFFSET_1,
        cursor: str | None = None,
        closed: bool = False,
    ) -> None:
        headers = {"Stream-Next-Offset": offset, "Stream-Up-To-Date": "true"}
        if cursor is not None:
            headers["Stream-Cursor"] = cursor
        if closed:
            headers["Stream-Closed"] = "true"
        self.mock.get(
            url_pattern(path),
            status=200,
            body=json.dumps(items),
            content_type="application/json",
            headers=headers,
        )

    def sse(self, path: str, *events: tuple[str, object]) -> None:
        self.mock.get(
            url_pattern(path),
            status=200,
            body=sse_body(*events),
            content_type="text/event-stream",
        )


@pytest.fixture
def answers(mock: aioresponses) -> Answers:
    return Answers(mock)
