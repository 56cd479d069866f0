"""Undoing a response's Content-Encoding in bounded steps: compressed bytes in, bytes out.

A compressed body can inflate a thousandfold (a megabyte of gzip is a gigabyte of zeros),
so :class:`ContentDecoder` never produces more than the caller asks for at once. It keeps
what it has not decoded yet, and :meth:`ContentDecoder.pending` says when more output can
be had without more input. A streamed body is read as::

    out = decoder.feed(raw, max_chunk)      # for every piece of raw body
    while decoder.pending():
        out = decoder.feed(b"", max_chunk)
    ...
    decoder.finish()                        # at the end of the raw body

and a body read whole goes through :meth:`ContentDecoder.decode_all`, which stops with
:class:`LimitExceededError` as soon as the output would pass its bound.

``gzip`` bodies may hold several members one after another (RFC 1952 allows it, and
concatenated gzip files are common); all are decoded. Zero bytes between or after members
are padding and are skipped, as the ``gzip`` tool does. ``deflate`` is accepted both as the
zlib format RFC 9110 names and as raw deflate, which some servers send: as browsers do, the
first two bytes decide which it is.
"""

from __future__ import annotations

import zlib
from typing import Final

from .._errors import LimitExceededError, NetworkError

__all__ = ["ContentDecoder"]

# How much compressed input goes to zlib in one call, at least. zlib copies what it could not
# consume (``unconsumed_tail``) on every call, so handing it a whole large body with a small
# output bound would copy that body once per step: a piece of about the output bound keeps
# the copying proportional to the output.
_INPUT_STEP: Final = 64 * 1024

# What the decoder is doing.
_IDENTITY: Final = 0  # no encoding: bytes pass through, cut to the output bound
_INFLATE: Final = 1  # inside a gzip member or a deflate stream
_BETWEEN: Final = 2  # gzip: a member ended; padding or another member may follow
_DETECT: Final = 3  # deflate: waiting for the two bytes that tell zlib from raw deflate
_DONE: Final = 4  # deflate: the stream ended; nothing may follow

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_ZLIB_WBITS: Final = zlib.MAX_WBITS
_RAW_WBITS: Final = -zlib.MAX_WBITS


def _is_zlib_header(first: int, second: int) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950): method 8, window <= 32K, check."""
    return first & 0x0F == 8 and first >> 4 <= 7 and ((first << 8) | second) % 31 == 0


def _coding(encoding: str | None, url: str | None) -> str:
    """The one coding a Content-Encoding value names; ``identity`` for none."""
    codings = [c.strip().lower() for c in (encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return "identity"
    if len(codings) == 1:
        coding = codings[0]
        if coding in ("gzip", "x-gzip"):
            return "gzip"
        if coding == "deflate":
            return coding
    raise NetworkError(f"unsupported Content-Encoding {encoding!r}", url=url)


class ContentDecoder:
    """Undoes one response's Content-Encoding, a bounded piece at a time.

    Args:
        encoding: the ``Content-Encoding`` header value, or ``None``. ``identity`` (or
            none) passes bytes through; ``gzip``, ``x-gzip`` and ``deflate`` are decoded.
            Anything else raises :class:`NetworkError` here.
        url: the URL named in the errors raised.
        bodyless: the answer has no body (HEAD, 204, 304), whatever its encoding says.

    Raises :class:`NetworkError` for a corrupt or truncated compressed body: the bytes
    were damaged in transit, as with a dropped connection.
    """

    __slots__ = (
        "_finished",
        "_gzip",
        "_head",
        "_input",
        "_maybe_more",
        "_pos",
        "_state",
        "_url",
        "_zlib",
    )

    def __init__(
        self, encoding: str | None, *, url: str | None = None, bodyless: bool = False
    ) -> None:
        self._url = url
        coding = "identity" if bodyless else _coding(encoding, url)
        self._zlib: zlib._Decompress | None = None
        self._gzip = coding == "gzip"
        if coding == "gzip":
            self._state = _INFLATE
            self._zlib = zlib.decompressobj(_GZIP_WBITS)
        elif coding == "deflate":
            self._state = _DETECT
        else:
            self._state = _IDENTITY
        # Input not handed to zlib yet: a short piece first (what zlib left over, or bytes
        # kept while detecting), then the rest of the last input fed, from _pos on.
        self._head = b""
        self._input = b""
        self._pos = 0
        # zlib filled the last output bound: it may hold more output for no more input.
        self._maybe_more = False
        self._finished = False

    @property
    def identity(self) -> bool:
        """Whether bytes pass through undecoded."""
        return self._state == _IDENTITY

    def pending(self) -> bool:
        """Whether :meth:`feed` can produce more output without more input.

        A caller that drains ``while decoder.pending(): decoder.feed(b"", n)`` always stops:
        every such call either fills ``n`` or consumes all that is left.
        """
        if self._state == _DETECT:  # can start once two bytes are there
            return len(self._head) + len(self._input) - self._pos >= 2
        return bool(self._head) or self._pos < len(self._input) or self._maybe_more

    def feed(self, data: bytes, max_output: int) -> bytes:
        """Take more of the body; return at most ``max_output`` bytes of decoded output.

        Input that was not decoded yet is kept; call ``feed(b"", max_output)`` while
        :meth:`pending` is true to have the rest. The result may be empty (compressed
        input that decodes to nothing yet).
        """
        if max_output < 1:
            raise ValueError(f"max_output must be positive, got {max_output}")
        if self._finished:
            raise RuntimeError("ContentDecoder.feed() after finish()")
        if data:
            self._add(data)
        if self._state == _IDENTITY:
            return self._take(max_output)
        return self._inflate(max_output)

    def finish(self) -> None:
        """End of the body: raise :class:`NetworkError` if a compressed body stopped short.

        Call it once :meth:`pending` is false; with output still pending it raises
        :class:`RuntimeError`: the body has not all been decoded yet.
        """
        if self.pending():
            raise RuntimeError("ContentDecoder.finish() with output pending; drain it first")
        self._finished = True
        if self._state in (_INFLATE, _DETECT):
            raise NetworkError("compressed body ended before its end", url=self._url)

    def decode_all(self, data: bytes, *, max_bytes: int, limit: str = "max_body_bytes") -> bytes:
        """Decode a whole body at once, and end it (:meth:`finish` included).

        Raises :class:`LimitExceededError` (with ``limit`` and ``max_bytes``) as soon as the
        output passes ``max_bytes``, having decoded no more than one byte past it.
        """
        if self._state == _IDENTITY and not self.pending():
            if len(data) > max_bytes:
                raise self._too_large(max_bytes, limit)
            self._finished = True
            return data
        parts: list[bytes] = []
        total = 0
        out = self.feed(data, max_bytes + 1)
        while True:
            total += len(out)
            if total > max_bytes:
                raise self._too_large(max_bytes, limit)
            if out:
                parts.append(out)
            if not self.pending():
                break
            out = self.feed(b"", max_bytes - total + 1)
        self.finish()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- inside -------------------------------------------------------------------------

    def _too_large(self, max_bytes: int, limit: str) -> LimitExceededError:
        return LimitExceededError(
            "response body is too large", limit=limit, maximum=max_bytes, url=self._url
        )

    def _add(self, data: bytes) -> None:
        if self._pos < len(self._input):  # fed again before draining: rare, so just copy
            data = self._input[self._pos :] + data
        self._input = data
        self._pos = 0

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes of the input, unchanged."""
        data, pos = self._input, self._pos
        if pos == 0 and len(data) <= size:
            self._input = b""
            return data
        piece = data[pos : pos + size]
        self._pos = pos + len(piece)
        if self._pos >= len(data):
            self._input, self._pos = b"", 0
        return piece

    def _next_piece(self, size: int) -> bytes:
        """The next compressed input for zlib: the short head, or up to ``size`` more bytes."""
        if self._head:
            piece, self._head = self._head, b""
            return piece
        return self._take(max(size, _INPUT_STEP))

    def _inflate(self, max_output: int) -> bytes:
        parts: list[bytes] = []
        room = max_output
        while room > 0:
            if self._state != _INFLATE:
                if not self._next_stream(room):
                    break
            elif self.pending():
                out = self._inflate_step(room)
                if out:
                    parts.append(out)
                    room -= len(out)
            else:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _inflate_step(self, room: int) -> bytes:
        """One call to zlib, for at most ``room`` bytes of output."""
        assert self._zlib is not None
        piece = self._next_piece(room)
        try:
            out = self._zlib.decompress(piece, room)
        except zlib.error as exc:
            raise NetworkError(f"corrupt compressed body: {exc}", url=self._url) from exc
        if self._zlib.eof:
            self._end_of_stream()
        else:
            self._head = self._zlib.unconsumed_tail
            self._maybe_more = len(out) == room
        return out

    def _next_stream(self, room: int) -> bool:
        """Outside a stream: start the next one if it has begun; false when input ran out."""
        piece = self._next_piece(room)
        if not piece:
            return False
        if self._state == _BETWEEN:
            piece = piece.lstrip(b"\x00")  # padding
            if piece:
                self._head = piece
                self._start(_GZIP_WBITS)
            return True
        if self._state == _DETECT:
            if len(piece) < 2:
                piece += self._take(1)
            self._head = piece
            if len(piece) < 2:
                return False
            self._start(_ZLIB_WBITS if _is_zlib_header(piece[0], piece[1]) else _RAW_WBITS)
            return True
        raise NetworkError(
            "corrupt compressed body: data after the end of the deflate stream", url=self._url
        )

    def _start(self, wbits: int) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._state = _INFLATE
        self._maybe_more = False

    def _end_of_stream(self) -> None:
        assert self._zlib is not None
        self._head = self._zlib.unused_data  # what follows the stream, if anything yet
        self._zlib = None
        self._maybe_more = False
        self._state = _BETWEEN if self._gzip else _DONE
