"""The FastAPI integration of webhook receivers: a dependency that gives the verified wake."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request

from .webhook import Refusal, body_too_large, check_max_body_bytes, receive
from .webhook_verify import WebhookVerifier
from .webhook_wire import SIGNATURE_HEADER, WebhookWake

__all__ = ["make_dependency"]


def make_dependency(
    verifier: WebhookVerifier | Callable[[Request], WebhookVerifier], *, max_body_bytes: int
) -> Callable[[Request], Coroutine[Any, Any, WebhookWake]]:
    """The dependency behind :func:`durable_streams.webhook_dependency`."""
    if not (isinstance(verifier, WebhookVerifier) or callable(verifier)):
        raise TypeError("verifier must be a WebhookVerifier or a function returning one")
    limit = check_max_body_bytes(max_body_bytes)

    async def verified_wake(request: Request) -> WebhookWake:
        chosen = verifier if isinstance(verifier, WebhookVerifier) else verifier(request)
        try:
            body = await _read_body(request, limit)
            return await receive(chosen, body, request.headers.get(SIGNATURE_HEADER))
        except Refusal as refusal:
            raise HTTPException(status_code=refusal.status, detail=refusal.detail) from None

    return verified_wake


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
    return b"".join(parts)
