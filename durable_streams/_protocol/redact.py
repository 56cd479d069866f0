"""Redaction of secrets in URLs, for every message and log line the library writes.

Query values (API keys, signed tokens) and the password of a URL's userinfo never leave
the process in text: ``http://u:secret@h/s?token=abc&x=1`` reads
``http://u:***@h/s?token=***&x=***``. Names stay, so a message still says which
parameter was sent. Imports nothing of the package, so the error tree can use it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# An http(s) URL inside free text (aiohttp's messages quote them in several ways).
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its userinfo password and every query value replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_unparsed(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':' + REDACTED if sep else ''}@{host}"
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every http(s) URL in it redacted (see :func:`redact_url`)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def _redact_pair(pair: str) -> str:
    name, sep, _value = pair.partition("=")
    return f"{name}={REDACTED}" if sep else name


def _redact_unparsed(url: str) -> str:
    # Not a URL urlsplit accepts (a bad IPv6 literal): drop everything after the host.
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"{scheme}{sep}{host}/{REDACTED}" if sep else REDACTED
