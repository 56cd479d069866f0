"""Typed fault injection: what ``POST /_test/inject-error`` on the reference server takes.

Pure code: the records validate themselves and render the server's JSON body; sending it
is :meth:`ReferenceServer.inject`'s job.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

__all__ = ["Fault", "SseEvent", "fault_body", "fault_path"]

_METHOD: Final = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """An extra Server-Sent Event the server sends first, before any real event.

    It goes out as an ``event: <event_type>`` line and a ``data: <data>`` line right
    after the SSE response headers.
    """

    event_type: str
    data: str

    def __post_init__(self) -> None:
        for name in ("event_type", "data"):
            value = getattr(self, name)
            if not isinstance(value, str):
                msg = f"SseEvent.{name} must be a str, got {type(value).__name__}"
                raise TypeError(msg)
            if "\n" in value or "\r" in value:
                # The server writes it on one line: a newline would make other events.
                msg = f"SseEvent.{name} must be one line"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A fault for the next requests to one stream path. At least one effect is needed.

    Effects (combine as the server does: a delay first, then the rest):

    - ``status`` (and ``retry_after`` seconds): answer with that status, a
      ``text/plain`` body ``Injected error for testing`` and no ``Stream-*`` headers.
    - ``drop_connection``: destroy the socket; no status line is sent.
    - ``delay_ms`` (plus a random ``0..jitter_ms``): wait first; alone, the request is
      then served normally.
    - ``truncate_body_bytes`` / ``corrupt_body``: cut or mangle the body of a 200 GET
      (catch-up or long-poll) after compression; the headers are unchanged and the body
      is chunked, so the short body looks complete.
    - ``sse_event``: an extra SSE event sent first (a non-SSE request uses the fault up,
      without effect).

    Which requests: ``count`` of them (default 1; each matching request uses one up),
    each with ``probability`` (a request that escapes the roll is served normally and
    uses nothing up), of any method unless ``method`` narrows it. Faults are checked
    before the request body is read, so a faulted append stores nothing.

    Raises:
        ValueError: no effect, or a value out of range (before anything is sent).
        TypeError: a value of the wrong type.
    """

    status: int | None = None
    retry_after: int | None = None
    drop_connection: bool = False
    delay_ms: int | None = None
    jitter_ms: int | None = None
    truncate_body_bytes: int | None = None
    corrupt_body: bool = False
    sse_event: SseEvent | None = None
    count: int | None = None
    probability: float | None = None
    method: str | None = None

    def __post_init__(self) -> None:
        _check_int("status", self.status, low=100, high=599)
        _check_int("retry_after", self.retry_after, low=0)
        _check_int("delay_ms", self.delay_ms, low=0)
        _check_int("jitter_ms", self.jitter_ms, low=0)
        _check_int("truncate_body_bytes", self.truncate_body_bytes, low=0)
        _check_int("count", self.count, low=1)
        kinds = {
            "drop_connection": (bool, "a bool"),
            "corrupt_body": (bool, "a bool"),
            "sse_event": (SseEvent | None, "an SseEvent or None"),
        }
        for name, (kind, what) in kinds.items():
            if not isinstance(getattr(self, name), kind):
                msg = f"Fault.{name} must be {what}"
                raise TypeError(msg)
        if self.probability is not None:
            p: object = self.probability  # checked as what a caller may really pass
            if isinstance(p, bool) or not isinstance(p, int | float):
                msg = "Fault.probability must be a number"
                raise TypeError(msg)
            if not (math.isfinite(p) and 0 <= p <= 1):
                msg = f"Fault.probability must be in 0..1, got {p!r}"
                raise ValueError(msg)
        if self.method is not None:
            if not isinstance(self.method, str) or not _METHOD.fullmatch(self.method):
                msg = f"Fault.method must be an HTTP method name, got {self.method!r}"
                raise ValueError(msg)
            object.__setattr__(self, "method", self.method.upper())
        if self.retry_after is not None and self.status is None:
            msg = "Fault.retry_after needs a status to go with"
            raise ValueError(msg)
        if self.jitter_ms is not None and self.delay_ms is None:
            msg = "Fault.jitter_ms needs a delay_ms to add to"
            raise ValueError(msg)
        if not self._has_effect():
            # The server would answer 400: say so before sending anything.
            msg = (
                "a Fault needs an effect: status, drop_connection, delay_ms, "
                "truncate_body_bytes, corrupt_body or sse_event"
            )
            raise ValueError(msg)

    def _has_effect(self) -> bool:
        return (
            self.status is not None
            or self.drop_connection
            or self.delay_ms is not None
            or self.truncate_body_bytes is not None
            or self.corrupt_body
            or self.sse_event is not None
        )


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"Fault.{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        msg = f"Fault.{name} must be {bounds}, got {value}"
        raise ValueError(msg)


def fault_path(path: str) -> str:
    """The exact path a fault is keyed by: a full URL is reduced to its path."""
    if "://" in path:
        path = urllib.parse.urlsplit(path).path
    if not path.startswith("/"):
        msg = f"fault path must start with '/', got {path!r}"
        raise ValueError(msg)
    return path


def fault_body(path: str, fault: Fault) -> dict[str, object]:
    """The JSON body of ``POST /_test/inject-error`` for ``fault`` on ``path``."""
    fields: dict[str, object | None] = {
        "status": fault.status,
        "retryAfter": fault.retry_after,
        "dropConnection": fault.drop_connection or None,
        "delayMs": fault.delay_ms,
        "jitterMs": fault.jitter_ms,
        "truncateBodyBytes": fault.truncate_body_bytes,
        "corruptBody": fault.corrupt_body or None,
        "count": fault.count,
        "probability": fault.probability,
        "method": fault.method,
    }
    body: dict[str, object] = {"path": fault_path(path)}
    body.update({key: value for key, value in fields.items() if value is not None})
    if fault.sse_event is not None:
        body["injectSseEvent"] = {
            "eventType": fault.sse_event.event_type,
            "data": fault.sse_event.data,
        }
    return body
