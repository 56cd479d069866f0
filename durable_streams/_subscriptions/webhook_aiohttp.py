"""The aiohttp integration of webhook receivers: a request handler factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .webhook import (
    Refusal,
    WakeHandler,
    body_too_large,
    check_max_body_bytes,
    receive,
    webhook_answer,
)
from .webhook_verify import WebhookVerifier
from .webhook_wire import SIGNATURE_HEADER

__all__ = ["make_handler"]


def make_handler(
    verifier: WebhookVerifier, handle: WakeHandler, *, max_body_bytes: int
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler behind :func:`durable_streams.webhook_handler`."""
    if not isinstance(verifier, WebhookVerifier):
        raise TypeError(f"verifier must be a WebhookVerifier, got {type(verifier).__name__}")
    if not callable(handle):
        raise TypeError("handle must be an async function of the wake")
    limit = check_max_body_bytes(max_body_bytes)

    async def webhook(request: web.Request) -> web.Response:
        try:
            body = await _read_body(request, limit)
            wake = await receive(verifier, body, request.headers.get(SIGNATURE_HEADER))
        except Refusal as refusal:
            return web.json_response({"error": refusal.detail}, status=refusal.status)
        done = await handle(wake)
        return web.json_response(webhook_answer(done=done is True))

    return webhook


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
    return b"".join(parts)
