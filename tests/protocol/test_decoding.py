"""Content-Encoding decoding: compressed bytes in, bounded pieces out, no event loop."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
import zlib
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_streams as ds
from durable_streams._protocol.decoding import ContentDecoder

MiB = 1024 * 1024
TEXT = b"".join(b"line %d of a body that compresses well\n" % i for i in range(2000))


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def decode(encoding: str | None, chunks: Iterable[bytes], max_output: int = 1 << 30) -> list[bytes]:
    """Feed ``chunks``, draining after each, then finish; return every piece produced."""
    decoder = ContentDecoder(encoding)
    pieces: list[bytes] = []
    for chunk in chunks:
        pieces.append(decoder.feed(chunk, max_output))
        while decoder.pending():
            pieces.append(decoder.feed(b"", max_output))
    decoder.finish()
    return pieces


def drain(decoder: ContentDecoder, data: bytes, max_output: int = MiB) -> None:
    """Feed ``data`` and take all the output it gives, without finishing."""
    decoder.feed(data, max_output)
    while decoder.pending():
        decoder.feed(b"", max_output)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


ENCODED = {
    "gzip": gzip.compress(TEXT),
    "x-gzip": gzip.compress(TEXT),
    "deflate": zlib.compress(TEXT),
    "identity": TEXT,
}

# -- encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity ", "identity, identity"])
def test_identity_passes_bytes_through(encoding: str | None) -> None:
    decoder = ContentDecoder(encoding)
    assert decoder.identity
    assert decoder.feed(b"abc", 10) == b"abc"
    assert not decoder.pending()
    decoder.finish()


def test_identity_returns_the_same_object_when_it_fits() -> None:
    data = b"x" * 100
    assert ContentDecoder(None).feed(data, 100) is data


def test_identity_cuts_input_to_the_output_bound() -> None:
    decoder = ContentDecoder("identity")
    assert decoder.feed(b"0123456789", 4) == b"0123"
    assert decoder.pending()
    assert decoder.feed(b"", 4) == b"4567"
    assert decoder.feed(b"", 4) == b"89"
    assert not decoder.pending()
    decoder.finish()


def test_identity_fed_again_before_draining_keeps_the_order() -> None:
    decoder = ContentDecoder(None)
    assert decoder.feed(b"abcdef", 2) == b"ab"
    assert decoder.feed(b"gh", 3) == b"cde"
    assert decoder.feed(b"", 10) == b"fgh"


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", " gzip "])
def test_gzip(encoding: str) -> None:
    assert b"".join(decode(encoding, [gzip.compress(TEXT)])) == TEXT


def test_deflate_in_the_zlib_format() -> None:
    assert b"".join(decode("deflate", [zlib.compress(TEXT)])) == TEXT


def test_raw_deflate_is_accepted_too() -> None:
    assert b"".join(decode("deflate", [raw_deflate(TEXT)])) == TEXT


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("raw", [False, True], ids=["zlib", "raw"])
def test_deflate_detection_byte_by_byte(level: int, raw: bool) -> None:
    # Level 0 makes stored blocks, whose first raw byte looks most like a zlib header.
    payload = b"abc" * 50
    body = raw_deflate(payload, level) if raw else zlib.compress(payload, level)
    assert b"".join(decode("deflate", [body[i : i + 1] for i in range(len(body))])) == payload


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_empty_input_pieces_are_harmless(encoding: str) -> None:
    body = ENCODED[encoding]
    assert b"".join(decode(encoding, [b"", body[:5], b"", body[5:], b""])) == TEXT


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, gzip", "gzip, br"])
def test_unsupported_encoding_is_a_network_error(encoding: str) -> None:
    with pytest.raises(ds.NetworkError, match="unsupported Content-Encoding") as info:
        ContentDecoder(encoding, url="http://h/s")
    assert info.value.url == "http://h/s"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "nonsense"])
def test_bodyless_answers_ignore_their_encoding(encoding: str) -> None:
    decoder = ContentDecoder(encoding, bodyless=True)
    assert decoder.identity
    assert decoder.feed(b"", 10) == b""
    decoder.finish()  # an empty "gzip" body is no truncation here


# -- multi-member gzip ----------------------------------------------------------------------


def test_two_gzip_members_are_both_decoded() -> None:
    body = gzip.compress(b"first,") + gzip.compress(b"second")
    assert b"".join(decode("gzip", [body])) == b"first,second"


def test_three_gzip_members_split_at_every_pair_of_byte_boundaries() -> None:
    body = gzip.compress(b"a") + gzip.compress(b"") + gzip.compress(b"bc" * 10)
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1, 3):
            assert b"".join(decode("gzip", split_at(body, [i, j]))) == b"a" + b"bc" * 10


def test_gzip_members_byte_by_byte_with_a_small_output_bound() -> None:
    body = gzip.compress(b"hello " * 30) + gzip.compress(b"world")
    pieces = decode("gzip", [body[i : i + 1] for i in range(len(body))], max_output=3)
    assert all(len(p) <= 3 for p in pieces)
    assert b"".join(pieces) == b"hello " * 30 + b"world"


def test_zero_padding_between_and_after_gzip_members_is_skipped() -> None:
    body = gzip.compress(b"a") + bytes(7) + gzip.compress(b"b") + bytes(3)
    assert b"".join(decode("gzip", [body])) == b"ab"
    assert b"".join(decode("gzip", [body[i : i + 1] for i in range(len(body))])) == b"ab"


@pytest.mark.parametrize("garbage", [b"x", b"\x1f\x8bnot gzip at all", b"\x00\x00junk"])
def test_garbage_after_a_gzip_member_is_corrupt(garbage: bytes) -> None:
    with pytest.raises(ds.NetworkError, match="corrupt compressed body"):
        decode("gzip", [gzip.compress(b"a") + garbage + bytes(20)])


def test_data_after_the_end_of_a_deflate_stream_is_corrupt() -> None:
    with pytest.raises(ds.NetworkError, match="corrupt compressed body"):
        decode("deflate", [zlib.compress(b"a") + b"more"])


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    data=st.data(),
)
def test_gzip_split_anywhere_with_any_bound(members: list[bytes], data: st.DataObject) -> None:
    body = b"".join(gzip.compress(m) for m in members)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=6))
    bound = data.draw(st.integers(1, 400))
    pieces = decode("gzip", split_at(body, cuts), max_output=bound)
    assert all(len(p) <= bound for p in pieces)
    assert b"".join(pieces) == b"".join(members)


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=2000),
    raw=st.booleans(),
    data=st.data(),
)
def test_deflate_split_anywhere_with_any_bound(
    payload: bytes, raw: bool, data: st.DataObject
) -> None:
    body = raw_deflate(payload) if raw else zlib.compress(payload)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=6))
    bound = data.draw(st.integers(1, 500))
    pieces = decode("deflate", split_at(body, cuts), max_output=bound)
    assert all(len(p) <= bound for p in pieces)
    assert b"".join(pieces) == payload


# -- damaged bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_truncated_body_is_a_network_error_at_finish(encoding: str) -> None:
    body = ENCODED[encoding]
    for cut in (0, 1, 2, 10, len(body) // 2, len(body) - 1):
        with pytest.raises(ds.NetworkError, match="ended before its end"):
            decode(encoding, [body[:cut]])


def test_a_body_cut_between_gzip_members_is_complete() -> None:
    # Nothing says a second member was coming: the first one ended properly.
    assert b"".join(decode("gzip", [gzip.compress(b"a")])) == b"a"


def test_a_body_cut_inside_a_second_gzip_member_is_truncated() -> None:
    body = gzip.compress(b"a") + gzip.compress(b"b")
    with pytest.raises(ds.NetworkError, match="ended before its end"):
        decode("gzip", [body[:-3]])


@pytest.mark.parametrize("where", [0, -1, -4], ids=["header", "last-byte", "trailer"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_body_is_a_network_error(encoding: str, where: int) -> None:
    body = bytearray(ENCODED[encoding])
    body[where] ^= 0xFF
    decoder = ContentDecoder(encoding, url="http://h/s")
    with pytest.raises(ds.NetworkError, match="corrupt compressed body") as info:
        drain(decoder, bytes(body))
    assert isinstance(info.value.__cause__, zlib.error)
    assert info.value.url == "http://h/s"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_damage_is_a_network_error_or_goes_unnoticed_only_if_harmless(
    data: st.DataObject,
) -> None:
    # Damage inside the compressed data may look like a stream that needs more input:
    # finish() says so. Either way the damage is reported, never silently decoded.
    encoding = data.draw(st.sampled_from(["gzip", "deflate"]))
    body = bytearray(ENCODED[encoding])
    where = data.draw(st.integers(0, len(body) - 1))
    body[where] ^= data.draw(st.integers(1, 255))
    try:
        out = b"".join(decode(encoding, [bytes(body)], max_output=4096))
    except ds.NetworkError:
        return
    # Only header bytes with no bearing on the data (gzip's mtime, flags, OS) may change.
    assert out == TEXT
    assert encoding == "gzip"
    assert 3 <= where < 10


def test_not_compressed_at_all_is_corrupt() -> None:
    with pytest.raises(ds.NetworkError, match="corrupt compressed body"):
        decode("gzip", [b"plain text, not gzip"])


def test_finish_with_output_pending_is_a_bug_of_the_caller() -> None:
    decoder = ContentDecoder("gzip")
    decoder.feed(gzip.compress(TEXT), 10)
    assert decoder.pending()
    with pytest.raises(RuntimeError):
        decoder.finish()


def test_feed_after_finish_and_a_bound_below_one_are_refused() -> None:
    decoder = ContentDecoder(None)
    with pytest.raises(ValueError, match="max_output"):
        decoder.feed(b"a", 0)
    decoder.finish()
    with pytest.raises(RuntimeError):
        decoder.feed(b"a", 1)


# -- bounded output -------------------------------------------------------------------------

BOMB_SIZE = 64 * MiB


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """64 MiB of zeros, gzipped: about 64 KiB."""
    compressor = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    body = b"".join(compressor.compress(bytes(MiB)) for _ in range(BOMB_SIZE // MiB))
    return body + compressor.flush()


def test_bomb_comes_out_in_pieces_no_larger_than_the_bound(bomb: bytes) -> None:
    assert len(bomb) < 128 * 1024
    decoder = ContentDecoder("gzip")
    total = 0
    largest = 0
    steps = 0
    piece = decoder.feed(bomb, MiB)
    while True:
        total += len(piece)
        largest = max(largest, len(piece))
        steps += 1
        assert piece.count(0) == len(piece)
        if not decoder.pending():
            break
        piece = decoder.feed(b"", MiB)
    decoder.finish()
    assert largest == MiB
    assert total == BOMB_SIZE
    assert steps <= BOMB_SIZE // MiB + 1


def test_bomb_decoding_memory_stays_near_the_bound(bomb: bytes) -> None:
    decoder = ContentDecoder("gzip")
    total = 0
    tracemalloc.start()
    try:
        total += len(decoder.feed(bomb, MiB))
        while decoder.pending():
            total += len(decoder.feed(b"", MiB))
        decoder.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == BOMB_SIZE
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_decode_all_stops_a_bomb_at_the_limit(bomb: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ds.LimitExceededError) as info:
            ContentDecoder("gzip", url="http://h/s").decode_all(bomb, max_bytes=2 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = info.value
    assert isinstance(error, ds.ParseError)
    assert error.limit == "max_body_bytes"
    assert error.maximum == 2 * MiB
    assert error.url == "http://h/s"
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_a_large_body_in_small_pieces_is_linear() -> None:
    # 64 MiB decoded in 4 KiB pieces from one 2+ MiB input: zlib's leftover input is
    # copied on every call, so handing it all the input at once would copy gigabytes.
    payload = bytes(range(256)) * (64 * MiB // 256)
    body = gzip.compress(payload, 1)
    decoder = ContentDecoder("gzip")
    total = len(decoder.feed(body, 4096))
    while decoder.pending():
        total += len(decoder.feed(b"", 4096))
    decoder.finish()
    assert total == len(payload)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
def test_decode_all_returns_the_whole_body(encoding: str) -> None:
    body = ENCODED[encoding]
    assert ContentDecoder(encoding).decode_all(body, max_bytes=len(TEXT)) == TEXT


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
def test_decode_all_over_the_limit_raises_with_the_limit_named(encoding: str) -> None:
    decoder = ContentDecoder(encoding)
    with pytest.raises(ds.LimitExceededError) as info:
        decoder.decode_all(ENCODED[encoding], max_bytes=len(TEXT) - 1, limit="max_chunk_bytes")
    assert info.value.limit == "max_chunk_bytes"
    assert info.value.maximum == len(TEXT) - 1


def test_decode_all_of_several_gzip_members() -> None:
    body = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)
    assert ContentDecoder("gzip").decode_all(body, max_bytes=2000) == b"a" * 1000 + b"b" * 1000
    with pytest.raises(ds.LimitExceededError):
        ContentDecoder("gzip").decode_all(body, max_bytes=1999)


def test_decode_all_finishes_the_body() -> None:
    with pytest.raises(ds.NetworkError, match="ended before its end"):
        ContentDecoder("gzip").decode_all(gzip.compress(TEXT)[:-4], max_bytes=MiB)
    assert ContentDecoder("gzip", bodyless=True).decode_all(b"", max_bytes=1) == b""


def test_decode_all_after_a_streamed_start() -> None:
    decoder = ContentDecoder("identity")
    assert decoder.feed(b"abcdef", 2) == b"ab"
    assert decoder.decode_all(b"gh", max_bytes=6) == b"cdefgh"
