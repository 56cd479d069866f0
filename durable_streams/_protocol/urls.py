"""Stream URLs: names made safe to put in a path, and the origins credentials may go to."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote, unquote, urljoin, urlsplit

from .._errors import InvalidArgumentError

# Characters a path segment may carry as they are (RFC 3986 unreserved, sub-delims, ":"
# and "@"); everything else, "%" included, is percent-encoded, so a name is never read
# as a query, a fragment, an escape or another segment.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
# A query name or value of only unreserved characters (offsets, cursors, "sse") goes as
# it is; any other is percent-encoded whole but for those (a space is %20, "+" is %2B).
_QUERY_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def origin(url: str) -> tuple[str, str, int]:
    """The origin of an absolute http(s) URL: scheme, host and port (defaults filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid port in {url!r}", argument="url") from exc
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, (parts.hostname or "").lower(), port


def check_absolute(url: str, *, argument: str = "url") -> str:
    """``url`` if it is an absolute http(s) URL without userinfo oddities; else refuse."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"{argument} must be a str, got {url!r}", argument=argument)
    _check_characters(url, argument)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"expected an absolute http(s) URL, got {url!r}", argument=argument
        )
    origin(url)  # the port must parse
    return url


def stream_path(name: str) -> str:
    """The percent-encoded path of a stream ``name`` (``/``-separated segments).

    Each segment is encoded on its own, so any text names exactly one stream. Dot
    segments, empty segments and control characters are refused: no name may climb
    out of its place or address two streams.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(
            f"stream name must be a non-empty str, got {name!r}", argument="url"
        )
    _check_characters(name, "url")
    segments = name.removeprefix("/").split("/")
    for segment in segments:
        _check_segment(segment, name)
    return "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments)


def check_stream_url(url: str) -> str:
    """An absolute stream URL given by a caller: no query, no fragment, no dot segments."""
    check_absolute(url)
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidArgumentError(
            f"a stream URL has no query or fragment, got {url!r}", argument="url"
        )
    for segment in parts.path.split("/"):
        _check_segment(unquote(segment), url, allow_empty=True)
    # Percent-encode what is not yet (spaces, non-ASCII); escapes already there stay.
    path = quote(parts.path, safe="/%" + _SEGMENT_SAFE)
    return f"{parts.scheme}://{parts.netloc}{path}"


def query(pairs: Iterable[tuple[str, str]]) -> str:
    """The encoded query string of ``pairs``, in their order (``""`` for none).

    Raises:
        InvalidArgumentError: a name or value no URL can carry (a lone surrogate).
    """
    pairs = list(pairs)
    # Plain is a property of every character: one check of all the text at once.
    if _QUERY_PLAIN.fullmatch("".join([k + v for k, v in pairs])):
        return "&".join([f"{k}={v}" for k, v in pairs])
    try:
        return "&".join([f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs])
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"a query parameter cannot be encoded: {exc}", argument="params"
        ) from None


def join(base_url: str, path: str) -> str:
    """``path`` (already encoded) under ``base_url``'s path."""
    return base_url.rstrip("/") + "/" + path


def resolve_redirect(url: str, location: str) -> str | None:
    """Where a redirect from ``url`` to ``location`` leads, if a read may follow it.

    Only a target on the same origin, without query or fragment, and with a clean path
    qualifies; anything else is ``None``.
    """
    if any(_is_control(c) for c in location):
        return None
    target = urljoin(url, location)
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    try:
        same = origin(target) == origin(url)
    except InvalidArgumentError:
        return None
    if not same or parts.query or parts.fragment or "?" in target or "#" in target:
        return None
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return None
    return target


def _check_segment(segment: str, name: str, *, allow_empty: bool = False) -> None:
    if segment in (".", ".."):
        raise InvalidArgumentError(
            f"stream name {name!r} has a dot segment ({segment!r})", argument="url"
        )
    if not segment and not allow_empty:
        raise InvalidArgumentError(
            f"stream name {name!r} has an empty segment ('//' or a trailing '/')",
            argument="url",
        )


def _check_characters(text: str, argument: str) -> None:
    bad = next((c for c in text if _is_control(c)), None)
    if bad is not None:
        raise InvalidArgumentError(
            f"{argument} {text!r} contains the control character {bad!r}", argument=argument
        )


def _is_control(char: str) -> bool:
    # Cc (C0, DEL, C1), plus lone surrogates, which no URL can encode.
    return unicodedata.category(char) in ("Cc", "Cs")
