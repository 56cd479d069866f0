"""Memory bounds against a bad server (issue 10, item 4).

Every buffer a server can fill is bounded by the session's ``Limits``; exceeding one raises
``LimitExceededError`` (a ``ParseError``) naming the field, never ``MemoryError``, and a
reader's offset does not move. Two kinds of test:

* in this process, hostile bodies small enough to be harmless even to a client without
  limits (tens of MiB at most), to pin the error's type, fields and the reader's offset;
* in a child process capped at 1.5 GiB of address space (``memcap.run_capped``), servers
  that offer GiBs or never stop, with limits of 8 MiB: the child must end with the right
  error and a peak RSS under 150 MiB.

``CHAOS_SCALE=full`` makes the offers larger.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest

import durable_streams as ds
from tests.hostile.memcap import ChildResult, run_capped
from tests.hostile.servers import (
    BYTES,
    JSON,
    OFFSET,
    HostileServer,
    by_live,
    endless,
    gzip_bomb,
    gzip_members,
    respond,
    sse_endless_event,
    sse_endless_line,
    stub,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
FULL = os.environ.get("CHAOS_SCALE") == "full"

NO_RETRY = ds.RetryPolicy(max_retries=0, live_max_retries=0, initial_delay=0.001, max_delay=0.002)
READ_HEADERS = {"Content-Type": JSON, "Stream-Next-Offset": OFFSET, "Stream-Up-To-Date": "true"}
BYTE_HEADERS = {**READ_HEADERS, "Content-Type": BYTES}
APPEND_HEADERS = {"Stream-Next-Offset": OFFSET}


def _limited(server: HostileServer, **fields: int) -> ds.Session:
    return ds.Session(server.url, limits=ds.Limits(**fields), retry=NO_RETRY)


def _assert_limit(exc: ds.LimitExceededError, limit: str, maximum: int) -> None:
    assert isinstance(exc, ds.ParseError)
    assert exc.limit == limit
    assert exc.maximum == maximum


async def _still_usable(session: ds.Session, server: HostileServer) -> None:
    """The session recovers: the refused body's connection was not handed back half-read."""
    server.routes.clear()
    server.handler = stub()
    assert await session.stream("/after").read_all() == [{"ok": True}]


# -- in this process: small bodies, exact errors -----------------------------------------


async def test_a_gzip_bomb_on_a_json_read(hostile: HostileServer) -> None:
    hostile.routes["/s"] = gzip_bomb(16 * MiB, headers=READ_HEADERS)
    async with _limited(hostile, max_body_bytes=1 * MiB) as session:
        reader = session.stream("/s").read(live=False)
        with pytest.raises(ds.LimitExceededError) as caught:
            await reader.read_all()
        _assert_limit(caught.value, "max_body_bytes", 1 * MiB)
        assert reader.offset == "-1"
        await _still_usable(session, hostile)


async def test_a_gzip_bomb_on_an_append_answer(hostile: HostileServer) -> None:
    hostile.routes["/s"] = gzip_bomb(16 * MiB, headers=APPEND_HEADERS)
    async with _limited(hostile, max_body_bytes=1 * MiB) as session:
        with pytest.raises(ds.LimitExceededError) as caught:
            await session.stream("/s", content_type=JSON).append({"n": 1})
        _assert_limit(caught.value, "max_body_bytes", 1 * MiB)
        await _still_usable(session, hostile)


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_a_gzip_bomb_on_an_error_answer(hostile: HostileServer, status: int) -> None:
    hostile.routes["/s"] = gzip_bomb(16 * MiB, status=status, headers={"Content-Type": JSON})
    async with _limited(hostile, max_body_bytes=1 * MiB) as session:
        with pytest.raises(ds.LimitExceededError) as caught:
            await session.stream("/s", content_type=JSON).append({"n": 1})
        _assert_limit(caught.value, "max_body_bytes", 1 * MiB)
        await _still_usable(session, hostile)


async def test_a_gzip_bomb_on_a_byte_read_arrives_in_bounded_pieces(
    hostile: HostileServer,
) -> None:
    hostile.routes["/s"] = gzip_bomb(16 * MiB, headers=BYTE_HEADERS)
    sizes: list[int] = []
    async with (
        _limited(hostile, max_chunk_bytes=64 * KiB) as session,
        session.stream("/s").read(live=False) as reader,
    ):
        async for piece in reader:
            assert isinstance(piece, bytes)
            assert not piece.strip(b"\0")
            sizes.append(len(piece))
        assert reader.offset == OFFSET
    assert sum(sizes) == 16 * MiB
    assert max(sizes) <= 64 * KiB


async def test_multi_member_gzip_on_a_json_read_decodes_every_member(
    hostile: HostileServer,
) -> None:
    hostile.routes["/s"] = gzip_members(
        b'[{"a":1},', b'{"b":2},', b'{"c":3}]', headers=READ_HEADERS
    )
    async with _limited(hostile) as session:
        assert await session.stream("/s").read_all() == [{"a": 1}, {"b": 2}, {"c": 3}]


async def test_multi_member_gzip_on_a_byte_read_decodes_every_member(
    hostile: HostileServer,
) -> None:
    hostile.routes["/s"] = gzip_members(b"hello ", b"wide ", b"world", headers=BYTE_HEADERS)
    async with _limited(hostile) as session:
        assert await session.stream("/s").read(live=False).body() == b"hello wide world"


async def test_a_large_multi_member_byte_body_loses_nothing(hostile: HostileServer) -> None:
    parts = [bytes([n]) * (300 * KiB + n) for n in range(1, 8)]
    hostile.routes["/s"] = gzip_members(*parts, headers=BYTE_HEADERS)
    async with _limited(hostile, max_chunk_bytes=64 * KiB) as session:
        assert await session.stream("/s").read(live=False).body() == b"".join(parts)


def _header_answer(size: int, *, reason: bool = False) -> Any:
    if reason:
        return respond(200, headers=READ_HEADERS, body=b"[]", reason="R" * size)
    return respond(200, headers={**READ_HEADERS, "X-Padding": "p" * size}, body=b"[]")


@pytest.mark.parametrize("where", ["header", "status-line"])
async def test_a_header_over_max_header_bytes(hostile: HostileServer, where: str) -> None:
    hostile.routes["/s"] = _header_answer(5000, reason=where == "status-line")
    async with _limited(hostile, max_header_bytes=4096) as session:
        reader = session.stream("/s").read(live=False)
        with pytest.raises(ds.LimitExceededError) as caught:
            await reader.read_all()
        _assert_limit(caught.value, "max_header_bytes", 4096)
        assert reader.offset == "-1"
        with pytest.raises(ds.LimitExceededError) as caught:
            await session.stream("/s").head()
        _assert_limit(caught.value, "max_header_bytes", 4096)


async def test_the_default_header_limit_is_64_kib(hostile: HostileServer) -> None:
    # aiohttp's own default is 8190 bytes: the limit must reach the parser.
    hostile.routes["/ok"] = _header_answer(20 * KiB)
    hostile.routes["/too-long"] = _header_answer(70 * KiB)
    async with ds.Session(hostile.url, retry=NO_RETRY) as session:
        assert await session.stream("/ok").read_all() == []
        with pytest.raises(ds.LimitExceededError) as caught:
            await session.stream("/too-long").read_all()
        _assert_limit(caught.value, "max_header_bytes", 64 * KiB)


def test_the_limits_defaults() -> None:
    assert ds.Limits() == ds.Limits(
        max_body_bytes=64 * MiB,
        max_chunk_bytes=1 * MiB,
        max_sse_line_bytes=64 * MiB,
        max_sse_event_bytes=64 * MiB,
        max_header_bytes=64 * KiB,
    )


# -- in a capped child: GiBs on offer, limits of 8 MiB --------------------------------------

PEAK_RSS = 150 * MiB
CHILD_LIMITS = {
    "max_body_bytes": 8 * MiB,
    "max_chunk_bytes": 1 * MiB,
    "max_sse_line_bytes": 8 * MiB,
    "max_sse_event_bytes": 8 * MiB,
}
BOMB = (4 if FULL else 1) * GiB
BYTE_BOMB = 4 * GiB if FULL else 256 * MiB

_SESSION = """
def session():
    return ds.Session(
        URL,
        limits=ds.Limits(**ARGS["limits"]),
        retry=ds.RetryPolicy(max_retries=0, live_max_retries=0, initial_delay=0.001,
                             max_delay=0.002),
    )
"""

READ_ALL = (
    _SESSION
    + """
async def main():
    async with session() as s:
        async with s.stream("/s").read(live=ARGS.get("live", False)) as reader:
            items = 0
            try:
                async for _ in reader:
                    items += 1
            except Exception as exc:
                return {"error": describe(exc), "offset": reader.offset, "items": items}
            return {"offset": reader.offset, "items": items}
"""
)

APPEND = (
    _SESSION
    + """
async def main():
    async with session() as s:
        try:
            await s.stream("/s", content_type="application/json").append({"n": 1})
        except Exception as exc:
            return {"error": describe(exc)}
        return {}
"""
)

BYTE_READ = (
    _SESSION
    + """
async def main():
    async with session() as s:
        total = largest = 0
        nonzero = False
        async with s.stream("/s").read(live=False) as reader:
            async for piece in reader:
                total += len(piece)
                largest = max(largest, len(piece))
                nonzero = nonzero or bool(piece.strip(b"\\0"))
        return {"total": total, "largest": largest, "nonzero": nonzero,
                "offset": reader.offset}
"""
)


async def _child(
    snippet: str, server: HostileServer, *, timeout: float = 60.0, **args: Any
) -> ChildResult:
    result = await run_capped(
        snippet, server.url, args={"limits": CHILD_LIMITS, **args}, timeout=timeout
    )
    assert result.returncode == 0, result.explain()
    assert result.report is not None, result.explain()
    assert result.peak_rss is not None, result.explain()
    assert result.peak_rss < PEAK_RSS, f"peak RSS {result.peak_rss >> 20} MiB; " + (
        result.explain()
    )
    return result


def _child_error(result: ChildResult, limit: str) -> dict[str, Any]:
    assert result.report is not None
    error = result.report.get("error")
    assert isinstance(error, dict), result.explain()
    assert "LimitExceededError" in error["classes"], result.explain()
    assert "ParseError" in error["classes"], result.explain()
    assert error["limit"] == limit, result.explain()
    assert error["maximum"] == CHILD_LIMITS[limit], result.explain()
    return error


async def test_child_a_gzip_bomb_of_gibs_on_a_json_read(hostile: HostileServer) -> None:
    hostile.routes["/s"] = gzip_bomb(BOMB, headers=READ_HEADERS)
    result = await _child(READ_ALL, hostile)
    _child_error(result, "max_body_bytes")
    assert result.report is not None
    assert result.report["offset"] == "-1"


async def test_child_a_gzip_bomb_of_gibs_on_an_append_answer(hostile: HostileServer) -> None:
    hostile.routes["/s"] = gzip_bomb(BOMB, headers=APPEND_HEADERS)
    _child_error(await _child(APPEND, hostile), "max_body_bytes")


async def test_child_a_gzip_bomb_of_gibs_on_an_error_answer(hostile: HostileServer) -> None:
    hostile.routes["/s"] = gzip_bomb(BOMB, status=400, headers={"Content-Type": JSON})
    _child_error(await _child(APPEND, hostile), "max_body_bytes")


async def test_child_a_gzip_bomb_on_a_byte_read_streams_with_flat_memory(
    hostile: HostileServer,
) -> None:
    hostile.routes["/s"] = gzip_bomb(BYTE_BOMB, headers=BYTE_HEADERS)
    result = await _child(BYTE_READ, hostile, timeout=120)
    assert result.report is not None
    assert "error" not in result.report, result.explain()
    assert result.report["total"] == BYTE_BOMB
    assert result.report["largest"] <= CHILD_LIMITS["max_chunk_bytes"]
    assert result.report["nonzero"] is False
    assert result.report["offset"] == OFFSET


async def test_child_an_endless_json_catch_up_body(hostile: HostileServer) -> None:
    hostile.routes["/s"] = endless(headers=READ_HEADERS, prefix=b"[")
    result = await _child(READ_ALL, hostile)
    _child_error(result, "max_body_bytes")
    assert result.report is not None
    assert result.report["offset"] == "-1"


async def test_child_an_endless_compressed_json_catch_up_body(hostile: HostileServer) -> None:
    # A gzip stream that never ends: each piece is a sync-flushed run of spaces.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    prefix = compressor.compress(b"[") + compressor.flush(zlib.Z_SYNC_FLUSH)
    piece = compressor.compress(b" " * MiB) + compressor.flush(zlib.Z_SYNC_FLUSH)
    headers = {**READ_HEADERS, "Content-Encoding": "gzip"}
    hostile.routes["/s"] = endless(headers=headers, prefix=prefix, piece=piece)
    _child_error(await _child(READ_ALL, hostile), "max_body_bytes")


async def test_child_an_endless_answer_to_an_append(hostile: HostileServer) -> None:
    hostile.routes["/s"] = endless(headers={**APPEND_HEADERS, "Content-Type": JSON})
    _child_error(await _child(APPEND, hostile), "max_body_bytes")


async def test_child_an_endless_sse_line(hostile: HostileServer) -> None:
    hostile.routes["/s"] = by_live(stub(), sse_endless_line())
    result = await _child(READ_ALL, hostile, live="sse")
    _child_error(result, "max_sse_line_bytes")
    assert result.report is not None
    # The catch-up delivered its message and moved the offset; the SSE line did not.
    assert result.report["items"] == 1
    assert result.report["offset"] == OFFSET


async def test_child_an_endless_sse_event_of_short_lines(hostile: HostileServer) -> None:
    hostile.routes["/s"] = by_live(stub(), sse_endless_event())
    result = await _child(
        READ_ALL, hostile, live="sse", limits={**CHILD_LIMITS, "max_sse_line_bytes": 64 * KiB}
    )
    error = _child_error(result, "max_sse_event_bytes")
    assert error["maximum"] == CHILD_LIMITS["max_sse_event_bytes"]
    assert result.report is not None
    assert result.report["offset"] == OFFSET
