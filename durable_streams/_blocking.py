"""The machinery of the blocking facade: one event loop in a background thread.

:class:`LoopThread` starts an anyio blocking portal (an asyncio loop in a daemon thread)
on first use, runs the async core's coroutines there on behalf of calling threads, and
stops it on :meth:`LoopThread.close`. Nothing here knows the protocol: the blocking
classes (``_blocking_*.py``) only say which async method each of theirs runs.

What this module guarantees, so the classes need not:

* a blocking call from a thread that runs an event loop (the portal's own included) is
  refused with :class:`UsageError`, instead of blocking that loop or deadlocking;
* a call interrupted while it waits (``KeyboardInterrupt`` from Ctrl-C, or any other
  exception a signal handler raises) cancels its task, waits briefly for the
  cancellation to finish (so its connection is closed), and re-raises;
* after close, calls raise :class:`ResourceClosedError`; a call still waiting when the
  session closes raises it too;
* a loop thread left running at interpreter exit is closed by an ``atexit`` hook, within
  a deadline, so exit never hangs on it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import enum
import inspect
import itertools
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Concatenate, Generic, NoReturn, ParamSpec, Protocol, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._errors import DurableStreamsError, ResourceClosedError, UsageError

__all__ = [
    "LoopDict",
    "LoopThread",
    "Twin",
    "forwards_rest_to",
    "forwards_to",
    "refuse_in_event_loop",
    "twin",
]

_T = TypeVar("_T")
_V = TypeVar("_V")
_A = TypeVar("_A")
_P = ParamSpec("_P")
_S = TypeVar("_S")
_X = TypeVar("_X")

# How long an interrupted call waits for its task to finish cancelling (closing its
# connection) before the interrupt is re-raised anyway.
CANCEL_GRACE = 5.0
# How long closing a session nobody closed (garbage collected, or left at exit) may take.
ABANDON_GRACE = 5.0

_names = itertools.count(1)
_live: weakref.WeakSet[LoopThread] = weakref.WeakSet()
# Context managers of loop threads that did not stop within ABANDON_GRACE: kept, so that
# collecting them does not join their (daemon) thread and hang whoever collects them.
_stuck: list[AbstractContextManager[BlockingPortal]] = []


class AsyncCloseable(Protocol):
    """What a session hands out and closes on its own close: readers and producers."""

    async def aclose(self) -> None:
        """Release the object."""


def refuse_in_event_loop() -> None:
    """Raise :class:`UsageError` if this thread runs an event loop (a notebook's excepted).

    A blocking call there would stop that loop until it returns, and in the facade's own
    loop thread it would wait for itself forever. A Jupyter notebook runs every cell in
    its kernel's event loop, and a cell that blocks is what a notebook expects, so there
    the call goes ahead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if _in_notebook_cell():
        return
    raise UsageError(
        "durable_streams.sync blocks the calling thread, and this thread runs an event "
        "loop: use the async API here (durable_streams.Session, with await), or call the "
        "blocking API from another thread (for example through asyncio.to_thread)"
    )


def _in_notebook_cell() -> bool:
    """Whether this is an IPython kernel's thread (Jupyter), whose loop runs the cells."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    shell = ipython.get_ipython()
    return (
        shell is not None
        and getattr(shell, "kernel", None) is not None
        and threading.current_thread() is threading.main_thread()
    )


class _State(enum.Enum):
    IDLE = "idle"  # no thread yet: nothing was asked of the session
    RUNNING = "running"
    FORKED = "forked"  # running in the parent of this process: its thread is not here
    CLOSED = "closed"


class LoopThread:
    """An event loop in a background thread, started on first use; one per session.

    Thread-safe: any number of threads may call :meth:`run` at once; each call is a task
    of its own on the one loop, so calls from different threads run concurrently there.
    The async objects are only ever touched on that loop.
    """

    def __init__(self, final: Callable[[], Awaitable[None]]) -> None:
        self._final = final  # what closes last, on the loop: the async session's aclose
        self._lock = threading.Lock()
        self._state = _State.IDLE
        self._portal: BlockingPortal | None = None
        self._cm: AbstractContextManager[BlockingPortal] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Readers and producers handed out, closed with the session; touched on the loop.
        self._handles: weakref.WeakSet[AsyncCloseable] = weakref.WeakSet()

    # -- state ------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the thread was started (and not yet closed)."""
        return self._state is _State.RUNNING

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` (or :meth:`abandon`) was called."""
        return self._state is _State.CLOSED

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, once started."""
        return self._thread

    def _in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _running_portal(self) -> BlockingPortal:
        portal = self._portal
        if portal is not None and self._state is _State.RUNNING:
            return portal
        with self._lock:
            if self._state is _State.CLOSED:
                raise ResourceClosedError("this session was closed")
            if self._state is _State.FORKED:
                raise UsageError(
                    "this session was used before the process forked, and its loop thread "
                    "stayed in the parent; create (or first use) sessions after forking, "
                    "in each worker process"
                )
            if self._portal is None:
                self._start()
            assert self._portal is not None
            return self._portal

    def _start(self) -> None:
        cm = start_blocking_portal("asyncio", name=f"durable_streams.sync-{next(_names)}")
        portal = cm.__enter__()
        self._loop, self._thread = portal.call(_loop_and_thread)
        self._cm, self._portal = cm, portal
        self._state = _State.RUNNING
        _live.add(self)

    def _closed_error(self, exc: BaseException) -> BaseException:
        """``exc`` (the portal refusing a call) as the user should see it."""
        if self._state is _State.CLOSED:
            return ResourceClosedError("this session was closed")
        return exc

    # -- calls ------------------------------------------------------------------------

    def run(
        self, make: Callable[[], Awaitable[_T]], *, keep: Callable[[_T], None] | None = None
    ) -> _T:
        """Run the coroutine ``make()`` on the loop and wait for its outcome here.

        Its result is returned and its exception raised in this thread (the same object).
        If the wait is interrupted (``KeyboardInterrupt``), the task is cancelled, given
        :data:`CANCEL_GRACE` seconds to finish, and the interruption re-raised. A call
        that completed in that same instant cannot return its result: it is passed to
        ``keep`` instead (a reader holds the message it took, to hand it out next).

        Raises:
            UsageError: this thread runs an event loop.
            ResourceClosedError: the session is closed, or closed during the call.
        """
        refuse_in_event_loop()
        portal = self._running_portal()
        call = _Call(make)
        try:
            future = portal.start_task_soon(call.run)
        except RuntimeError as exc:  # the portal stopped meanwhile
            raise self._closed_error(exc) from None
        except BaseException as exc:  # noqa: BLE001 - re-raised by _interrupted
            # Interrupted while the task was being spawned: it may run all the same.
            self._interrupted(call, exc, keep)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # Only close() cancels the portal's tasks.
            raise ResourceClosedError("the session was closed during this call") from None
        except BaseException as exc:
            if future.done() and not future.cancelled() and future.exception() is exc:
                raise  # the call's own error
            self._interrupted(call, exc, keep)

    def _interrupted(
        self, call: _Call[_T], exc: BaseException, keep: Callable[[_T], None] | None
    ) -> NoReturn:
        """Stop ``call`` after ``exc`` interrupted the wait for it, then re-raise ``exc``.

        The task is cancelled on the loop (a reader then closes its connection and keeps
        its position) and given :data:`CANCEL_GRACE` seconds to finish; a second Ctrl-C
        meanwhile stops the wait. A call that completed before its cancellation reached
        it gives its result to ``keep``.
        """
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                loop.call_soon_threadsafe(call.cancel)
        call.finished.wait(CANCEL_GRACE)
        if call.returned and keep is not None:
            keep(call.value)
        raise exc

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run the quick, synchronous ``fn()`` on the loop thread and return its result.

        Raises:
            UsageError: this thread runs an event loop.
            ResourceClosedError: the session is closed.
        """
        refuse_in_event_loop()
        portal = self._running_portal()
        try:
            return portal.call(_boxed, fn)[0]
        except RuntimeError as exc:
            if self.started:
                raise
            raise self._closed_error(exc) from None

    def peek(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` (a read or a quick update of state the loop also uses), safely.

        On the loop thread while it runs, so ``fn`` sees the state between two steps of
        the async code; here once the loop is stopped (or never started), when nothing
        else touches that state. Never starts the loop, never refuses.
        """
        portal = self._portal
        if portal is None or self._state is not _State.RUNNING or self._in_loop_thread():
            return fn()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return fn()  # in someone's event loop: a read there must not block it
        try:
            return portal.call(_boxed, fn)[0]
        except RuntimeError:
            if self.started:
                raise
            return fn()

    def track(self, handle: AsyncCloseable) -> None:
        """Close ``handle`` with the session if it is still open then (on the loop)."""
        self._handles.add(handle)

    def release(self, obj: object) -> None:
        """Drop the last reference to ``obj`` on the loop thread (from a ``__del__``).

        An async object's own finalizer (a reader's closes its connection) must run on
        the loop that owns what it closes. Never waits.
        """
        loop = self._loop
        if loop is None or self._in_loop_thread():
            return
        # A closed loop raises RuntimeError: whatever obj held was closed with it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_drop, obj)

    # -- closing ----------------------------------------------------------------------

    def close(self, *, abort: bool = False, timeout: float | None = None) -> None:
        """Close the handles still open, then the async session, then stop the thread.

        Safe to call twice. Readers are closed; producers are closed (sending what they
        hold), or with ``abort`` stopped at once (unsent messages fail). Calls still
        waiting in other threads raise :class:`ResourceClosedError`. The first error of a
        producer's close is raised once everything is stopped.
        """
        with self._lock:
            if self._state is _State.CLOSED:
                return
            started = self._state is _State.RUNNING
            self._state = _State.CLOSED
        _live.discard(self)
        portal = self._portal
        if not started or portal is None:
            return
        try:
            future = portal.start_task_soon(self._shutdown, abort)
            try:
                future.result(timeout)
            except TimeoutError:
                future.cancel()
        finally:
            self._stop(timeout)

    def abandon(self) -> None:
        """Close a loop thread nobody closed (from ``__del__`` or at exit), within a deadline.

        As :meth:`close`: producers send what they hold, if they can within
        :data:`ABANDON_GRACE` seconds; after that everything is stopped.
        """
        if self._in_loop_thread():
            # Dropped on its own loop (in a callback): stop without waiting for itself.
            with self._lock:
                self._state = _State.CLOSED
            _live.discard(self)
            if self._portal is not None and self._loop is not None:
                _stop_soon(self._portal, self._loop)
            return
        try:
            self.close(timeout=ABANDON_GRACE)
        except Exception:  # noqa: BLE001 - nobody is left to raise it to
            warnings.warn(
                "closing an abandoned durable_streams.sync.Session failed",
                ResourceWarning,
                stacklevel=2,
            )

    async def _shutdown(self, abort: bool) -> None:
        error: DurableStreamsError | None = None
        try:
            for handle in list(self._handles):
                try:
                    if abort:
                        # A producer cancelled while closing stops at once (its documented
                        # behaviour); a reader closes without waiting either way.
                        with anyio.CancelScope() as scope:
                            scope.cancel()
                            await handle.aclose()
                    else:
                        await handle.aclose()
                except DurableStreamsError as exc:  # raised once everything is closed
                    error = error or exc
        finally:
            # The connection pool is closed even when this close is cancelled (a deadline).
            with anyio.CancelScope(shield=True):
                await self._final()
        if error is not None:
            raise error

    def _stop(self, timeout: float | None) -> None:
        portal, loop, thread, cm = self._portal, self._loop, self._thread, self._cm
        assert portal is not None
        assert loop is not None
        assert thread is not None
        assert cm is not None
        _stop_soon(portal, loop)
        thread.join(timeout)
        if thread.is_alive():
            _stuck.append(cm)
            return
        cm.__exit__(None, None, None)


def _stop_soon(portal: BlockingPortal, loop: asyncio.AbstractEventLoop) -> None:
    """Ask the portal to stop, cancelling its tasks, without waiting for the loop.

    Not ``portal.call(portal.stop)``: a loop that is stuck must not make close() (or an
    abandoned session's finalizer) hang with it.
    """
    stop = portal.stop(cancel_remaining=True)
    try:
        asyncio.run_coroutine_threadsafe(stop, loop)
    except RuntimeError:  # the loop is already closed
        stop.close()


class _Interrupted(Exception):  # noqa: N818 - never seen: it ends a task nobody waits for
    """The outcome of a call whose caller was interrupted and stopped waiting."""


class _Call(Generic[_T]):
    """One blocking call's task, with what its caller needs after an interruption."""

    __slots__ = ("_cancelled", "_make", "_scope", "finished", "returned", "value")

    def __init__(self, make: Callable[[], Awaitable[_T]]) -> None:
        self._make = make
        self.finished = threading.Event()
        self.returned = False  # the call completed; its result is in value
        self.value: _T
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False  # both touched on the loop thread only

    async def run(self) -> _T:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:  # cancelled before it began
                    scope.cancel()
                self.value = await self._make()
                self.returned = True
                return self.value
            raise _Interrupted  # cancelled by cancel(): its caller no longer waits
        finally:
            self.finished.set()

    def cancel(self) -> None:
        """Cancel the call (on the loop thread), whether or not it has begun."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()


def _loop_and_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    return asyncio.get_running_loop(), threading.current_thread()


def _boxed(fn: Callable[[], _T]) -> tuple[_T]:
    """``fn()`` in a tuple: the portal would await a result that is awaitable (a receipt)."""
    return (fn(),)


def _drop(obj: object) -> None:
    """Nothing: the callback's arguments are released after it ran, on the loop thread."""


def _forked() -> None:
    # In the child only the forking thread exists: the loop threads stayed behind.
    for loop_thread in list(_live):
        loop_thread._state = _State.FORKED
    _live.clear()


os.register_at_fork(after_in_child=_forked)


@atexit.register
def _close_at_exit() -> None:
    for loop_thread in list(_live):
        warnings.warn(
            "a durable_streams.sync.Session was never closed; closing it at exit",
            ResourceWarning,
            stacklevel=1,
        )
        loop_thread.abandon()


# -- the blocking classes' building blocks ----------------------------------------------


class Twin(Generic[_A]):
    """Base of the blocking classes: the async object fronted and the loop it runs on."""

    _async: _A
    _loop: LoopThread

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A twin is made outside the class body's namespace: name it after its class, so
        # help(), tracebacks and the API reference place it there.
        for name, member in vars(cls).items():
            if inspect.isfunction(member) and getattr(member, "__wrapped__", None):
                member.__qualname__ = f"{cls.__qualname__}.{name}"
                member.__module__ = cls.__module__


def twin(
    method: Callable[Concatenate[_A, _P], Awaitable[_T]],
) -> Callable[Concatenate[Twin[_A], _P], _T]:
    """The blocking form of the async ``method``: same arguments, same result and errors.

    The async method runs on the loop; the calling thread waits for it. The signature
    and documentation are the async method's (``inspect.signature`` follows
    ``__wrapped__``).
    """

    def blocking(self: Twin[_A], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        target = self._async
        return self._loop.run(lambda: method(target, *args, **kwargs))

    blocking.__name__ = method.__name__
    blocking.__wrapped__ = method  # type: ignore[attr-defined]
    blocking.__doc__ = (
        f"Blocking form of :meth:`durable_streams.{method.__qualname__}`; it waits in the "
        f"calling thread.\n\n{inspect.cleandoc(method.__doc__ or '')}"
    )
    return blocking


def forwards_to(
    target: Callable[Concatenate[Any, _P], object],
) -> Callable[[Callable[..., _T]], Callable[Concatenate[Any, _P], _T]]:
    """Give the decorated ``(self, *args, **kwargs)`` method the parameters of ``target``.

    For the type checker, and for ``inspect.signature``; the defaults stay the async
    method's alone. The decorated method keeps its docstring and return type.
    """

    def decorate(method: Callable[..., _T]) -> Callable[Concatenate[Any, _P], _T]:
        method.__signature__ = _merged(method, target, keep=1)  # type: ignore[attr-defined]
        return method

    return decorate


def forwards_rest_to(
    target: Callable[Concatenate[Any, Any, _P], object],
) -> Callable[[Callable[Concatenate[_S, _X, ...], _T]], Callable[Concatenate[_S, _X, _P], _T]]:
    """As :func:`forwards_to`, but the first parameter after ``self`` is the method's own.

    For a method whose first argument takes more than the async one's (a blocking
    :class:`Stream` as a fork source; a plain iterable of chunks).
    """

    def decorate(
        method: Callable[Concatenate[_S, _X, ...], _T],
    ) -> Callable[Concatenate[_S, _X, _P], _T]:
        method.__signature__ = _merged(method, target, keep=2)  # type: ignore[attr-defined]
        return method

    return decorate


def _merged(method: Callable[..., object], target: Callable[..., object], *, keep: int) -> Any:
    """``method``'s signature with its parameters after the first ``keep`` from ``target``."""
    own, theirs = inspect.signature(method), inspect.signature(target)
    parameters = [*list(own.parameters.values())[:keep], *list(theirs.parameters.values())[keep:]]
    return own.replace(parameters=parameters)


class LoopDict(MutableMapping[str, _V]):
    """A mutable view of a dict the loop reads (a session's headers and parameters).

    Reads and changes run on the loop thread (see :meth:`LoopThread.peek`), so a change
    from any thread lands between two requests, never in the middle of one.
    """

    __slots__ = ("_data", "_loop")

    def __init__(self, loop: LoopThread, data: dict[str, _V]) -> None:
        self._loop = loop
        self._data = data

    def __getitem__(self, key: str) -> _V:
        return self._loop.peek(lambda: self._data[key])

    def __setitem__(self, key: str, value: _V) -> None:
        self._loop.peek(lambda: self._data.__setitem__(key, value))

    def __delitem__(self, key: str) -> None:
        self._loop.peek(lambda: self._data.__delitem__(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._loop.peek(lambda: list(self._data)))

    def __len__(self) -> int:
        return self._loop.peek(lambda: len(self._data))

    def __repr__(self) -> str:
        return repr(self._loop.peek(lambda: dict(self._data)))
