"""Microbenchmark of the SSE hot path: client CPU per delivery, without a server or a loop.

One delivery is what the reference server sends a live reader for one append to a JSON
stream: a data event holding the append and a control event holding the new offset,
written in four pieces (``event: data``, its data line, ``event: control``, its data
line). The benchmark feeds 10,000 deliveries as the chunks a reader would get when the
pieces arrive apart (``pieces``) or together (``whole``), to ``SSEParser.feed`` alone
(``parser``) and to ``SSEConnection.feed`` (``connection``: the parser, JSON decoding of
the data and control events, and the spans handed to the reader). It prints the minimum
over the repeats of the microseconds per delivery::

    .nox/tests/bin/python tests/benchmarks/sse_parse_bench.py [--repeat 7] [--profile]

``--profile`` prints a cProfile of one run of ``connection/pieces`` instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from durable_streams._config import Limits
from durable_streams._protocol.sse import SSEParser
from durable_streams._reader_queue import Position
from durable_streams._reader_sse import SSEConnection

DELIVERIES = 10_000


def _pieces(k: int) -> list[bytes]:
    """The server's four writes for the k-th append (encodeSSEData of the server)."""
    data = json.dumps([{"k": k, "pad": "x" * 64}], separators=(",", ":"))
    control = json.dumps(
        {
            "streamNextOffset": f"0000000000000000_{86 * (k + 1):016d}",
            "streamCursor": "3387041",
            "upToDate": True,
        },
        separators=(",", ":"),
    )
    return [
        b"event: data\n",
        f"data:{data}\n\n".encode(),
        b"event: control\n",
        f"data:{control}\n\n".encode(),
    ]


def chunks(mode: str) -> list[bytes]:
    """The chunks of ``DELIVERIES`` deliveries, arriving in pieces or whole."""
    out: list[bytes] = []
    for k in range(DELIVERIES):
        pieces = _pieces(k)
        out.extend(pieces if mode == "pieces" else [b"".join(pieces)])
    return out


class _Body:
    """The part of a BodyStream that SSEConnection reads on construction."""

    headers: dict[str, str] = {}  # noqa: RUF012 - read only

    def close(self) -> None:
        """Nothing to close."""


def run_parser(feed: list[bytes]) -> float:
    """Seconds to parse ``feed`` with a fresh parser."""
    parser = SSEParser()
    start = time.perf_counter()
    for chunk in feed:
        parser.feed(chunk)
    return time.perf_counter() - start


def run_connection(feed: list[bytes]) -> float:
    """Seconds to take ``feed`` through a fresh SSEConnection of a JSON stream."""
    connection = SSEConnection(_Body(), Limits(), json=True, url="http://h/s")  # type: ignore[arg-type]
    at = Position("0000000000000000_0000000000000000")
    start = time.perf_counter()
    for chunk in feed:
        connection.feed(chunk, at=at)
    return time.perf_counter() - start


def main() -> None:
    """Run each case ``--repeat`` times; print the best µs per delivery."""
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--repeat", type=int, default=7)
    options.add_argument("--profile", action="store_true")
    args = options.parse_args()
    cases: dict[str, Callable[[list[bytes]], Any]] = {
        "parser": run_parser,
        "connection": run_connection,
    }
    if args.profile:
        feed = chunks("pieces")
        profile = cProfile.Profile()
        profile.runcall(run_connection, feed)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return
    for mode in ("pieces", "whole"):
        feed = chunks(mode)
        for name, run in cases.items():
            best = min(run(feed) for _ in range(args.repeat))
            print(f"{name:>10}/{mode:<6} {best / DELIVERIES * 1e6:6.2f} µs per delivery")


if __name__ == "__main__":
    main()
