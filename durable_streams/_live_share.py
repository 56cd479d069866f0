"""Identical long-polls of one session, sent once: request coalescing for fan-out.

Readers of the same JSON stream in one session that wait at the same position ask the
server the same question: ``GET <url>?offset=O&cursor=C&live=long-poll``. Sent once, its
answer serves every one of them, so a thousand readers of one stream cost the server and
the client one request per append instead of a thousand (the protocol's cursor exists so
that CDNs can collapse such requests; this does it inside the process).

Each reader still judges the answer itself (its position, its skip count, its retry
budget) and parses the body itself, so no two readers share a message object. Only the
answer is shared: its status, headers and body, read whole within
``Limits.max_body_bytes``. A poll belongs to no reader: it runs in a task of its own,
which a cancelled reader leaves running for the others; the last reader to leave cancels
it. Failures reach every waiting reader, which retries within its own budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ._transport import Response

__all__ = ["SharedPolls"]

Fetch = Callable[[str, Mapping[str, str]], Coroutine[Any, Any, Response]]
_Key = tuple[str, tuple[tuple[str, str], ...]]


class _Poll:
    """One request in flight and the readers waiting for its answer.

    Each waiter has a future of its own, settled by the task's one done callback: a
    waiter that leaves only lets its future go (``asyncio.shield`` would remove a
    callback from the task's list, a scan per waiter: quadratic when thousands leave).
    """

    __slots__ = ("active", "futures", "task")

    def __init__(self, task: asyncio.Task[Response]) -> None:
        self.task = task
        self.futures: list[asyncio.Future[Response]] = []
        self.active = 0  # waiters still waiting

    def settle(self, task: asyncio.Task[Response]) -> None:
        """The request ended: its answer (or its failure) to every waiter still there."""
        futures, self.futures = self.futures, []
        if task.cancelled():  # nobody waits any more, or the session or the loop closed
            for future in futures:
                future.cancel()
            return
        error = task.exception()
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(task.result())
            else:
                future.set_exception(error)


class SharedPolls:
    """The long-polls of one session in flight, by URL and query (package-internal).

    ``fetch(url, params)`` sends one request and returns its whole answer, whatever its
    status (the session's, with a budget of one attempt: the readers retry).
    """

    __slots__ = ("_fetch", "_polls")

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._polls: dict[_Key, _Poll] = {}

    async def poll(self, url: str, params: Mapping[str, str]) -> Response:
        """The answer to this long-poll: the one in flight for the same question, or a new one.

        Raises what the request raised (a :class:`TransportError`), for every waiter.
        """
        key: _Key = (url, tuple(sorted(params.items())))
        poll = self._polls.get(key)
        loop = asyncio.get_running_loop()
        if poll is None or poll.task.done():  # answered already: a new wait asks anew
            task = loop.create_task(self._fetch(url, params))
            poll = self._polls[key] = _Poll(task)
            task.add_done_callback(poll.settle)
            task.add_done_callback(lambda _: self._forget(key, poll))
        future: asyncio.Future[Response] = loop.create_future()
        poll.futures.append(future)
        poll.active += 1
        try:
            return await future
        finally:
            poll.active -= 1
            if not poll.active and not poll.task.done():
                poll.task.cancel()  # no reader waits for it any more
                self._forget(key, poll)

    def close(self) -> None:
        """Cancel every poll in flight (the session closes), and so their waiters."""
        polls, self._polls = self._polls, {}
        for poll in polls.values():
            poll.task.cancel()

    def _forget(self, key: _Key, poll: _Poll) -> None:
        # A new poll for the same question may have begun since: leave that one.
        if self._polls.get(key) is poll:
            del self._polls[key]
