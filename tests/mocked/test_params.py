"""Query parameters: the session's are merged with the protocol's and sent sorted; the
protocol's own (``offset``, ``live``, ``cursor``) can never be replaced by a caller."""

from __future__ import annotations

import pytest
from aioresponses import aioresponses

import durable_streams as ds
from tests.mocked.conftest import BASE, FAST, OFFSET_1, OFFSET_2, OFFSET_3, Answers, sent


async def test_session_params_are_merged_and_sorted(mock: aioresponses, answers: Answers) -> None:
    async def tenant() -> str:
        return "acme"

    answers.read("/q", [1])
    params: dict[str, ds.DynamicValue] = {"zone": "eu", "api_key": lambda: "k1", "tenant": tenant}
    async with ds.Session(BASE, params=params, retry=FAST) as session:
        await session.stream("/q", content_type="application/json").read_all()
    (request,) = sent(mock)
    # Sorted by name, so identical reads have identical URLs (shared CDN cache entries).
    assert request.params == [
        ("api_key", "k1"),
        ("offset", "-1"),
        ("tenant", "acme"),
        ("zone", "eu"),
    ]


async def test_session_params_go_on_writes_and_producer_batches_too(
    mock: aioresponses, answers: Answers
) -> None:
    answers.create("/w")
    answers.append("/w")
    answers.batch("/w")
    async with ds.Session(BASE, params={"api_key": "k1"}, retry=FAST) as session:
        stream = session.stream("/w")
        await stream.create(content_type="application/json")
        await stream.append([1])
        async with stream.producer("p") as producer:
            await producer.append(2)
    assert [r.params for r in sent(mock)] == [[("api_key", "k1")]] * 3


async def test_live_reads_own_offset_live_and_cursor(mock: aioresponses, answers: Answers) -> None:
    answers.read("/lp", [1])
    answers.read("/lp", [2], offset=OFFSET_2, cursor="c1")
    answers.read("/lp", [3], offset=OFFSET_3, cursor="c2", closed=True)
    async with ds.Session(BASE, params={"a": "1"}, retry=FAST) as session:
        stream = session.stream("/lp", content_type="application/json")
        assert [m async for m in stream.read(live="long-poll")] == [1, 2, 3]
    assert [r.params for r in sent(mock)] == [
        [("a", "1"), ("offset", "-1")],
        [("a", "1"), ("live", "long-poll"), ("offset", OFFSET_1)],
        [("a", "1"), ("cursor", "c1"), ("live", "long-poll"), ("offset", OFFSET_2)],
    ]


@pytest.mark.parametrize("name", ["offset", "live", "cursor"])
def test_protocol_params_are_refused_at_construction(mock: aioresponses, name: str) -> None:
    with pytest.raises(ds.InvalidArgumentError, match="belongs to the protocol"):
        ds.Session(BASE, params={name: "x"})
    assert sent(mock) == []


@pytest.mark.parametrize("name", ["offset", "live", "cursor"])
async def test_protocol_params_added_later_are_refused_before_sending(
    mock: aioresponses, name: str
) -> None:
    async with ds.Session(BASE) as session:
        session.params[name] = "x"
        with pytest.raises(ds.InvalidArgumentError, match="belongs to the protocol"):
            await session.stream("/late", content_type="application/json").read_all()
    assert sent(mock) == []
