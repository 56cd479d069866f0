import durable_streams as ds


async def test_round_trip(json_stream: ds.Stream) -> None:
    await json_stream.append({"a": 1})
    assert await json_stream.read_all() == [{"a": 1}]
