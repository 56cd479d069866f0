"""``ReferenceServer``: the Durable Streams reference server (Node) as a child process.

Everything here is synchronous and standard-library only, so it runs in plain
(non-async) fixtures, scripts and any event-loop policy. POSIX only (Linux, macOS): the
server runs in its own process group and is stopped by signals to it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, NoReturn, Self

from ._errors import ReferenceServerError
from ._faults import Fault, SseEvent, fault_body
from ._install import find_node, install_server
from ._process import ReadyInfo, drain_stdout, parse_ready_line, signal_group

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ReferenceServer", "running_servers"]

_INJECT_PATH: Final = "/_test/inject-error"
_MAX_PORT: Final = 65535
_READY_TIMEOUT_S: Final = 20.0
_STOP_TIMEOUT_S: Final = 10.0
_KILL_TIMEOUT_S: Final = 5.0
_HTTP_TIMEOUT_S: Final = 10.0
# Only binding the same port again can fail on restart (EADDRINUSE); Node
# sets SO_REUSEADDR so TIME_WAIT is normally harmless, but another process
# may briefly hold the port. The retries cover a few seconds in total.
_RESTART_ATTEMPTS: Final = 8
_RESTART_BACKOFF_S: Final = 0.25
_STDERR_TAIL_CHARS: Final = 4000
_SSE_EVENT_KEYS: Final = {"event_type": "event_type", "eventType": "event_type", "data": "data"}

# A direct opener: a proxy configured in the environment must never see
# traffic meant for a server on the loopback interface.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_live_lock = threading.Lock()
_live: set[ReferenceServer] = set()


class ReferenceServer:
    """A Durable Streams reference server in a child ``node`` process.

    Use it as a context manager (``with ReferenceServer() as server:``) or call
    :meth:`start` and :meth:`stop`. The first start installs the pinned server into the
    user cache (see :func:`install_server`); later starts work offline.

    ``port=0`` lets the OS choose a free port on the first start; later
    :meth:`restart` calls reuse whichever port was chosen, so URLs held by a
    client under test stay valid. With ``data_dir`` the server is file-backed
    (segment logs plus LMDB metadata) and streams, closed state and producer
    (epoch/seq) state survive :meth:`restart`, even after :meth:`kill`.
    Without it everything lives in memory and is lost on restart.

    The server exits by itself when this process goes away, however it dies (it
    watches its stdin pipe and its parent), so no orphan servers linger.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int = 0,
        long_poll_timeout_ms: int | None = None,
        compression: bool = True,
        webhooks: bool = False,
    ) -> None:
        """Configure the server; nothing runs until :meth:`start`.

        ``long_poll_timeout_ms`` defaults to the server's own 30 000 ms. It
        also sets how often an idle SSE connection gets a keep-alive control
        event, so tests that wait on either want it small.

        ``compression=False`` stops the server gzipping reads of 1 KiB or
        more; a truncated or corrupted *compressed* body fails in the
        client's decompressor instead of reaching the protocol layer.

        ``webhooks=True`` enables webhook subscriptions (the server's ``webhooks``
        option): the server then POSTs signed wakes to receiver URLs.

        Raises:
            ValueError: a port or timeout out of range.
        """
        if not 0 <= port <= _MAX_PORT:
            msg = f"port must be in 0..{_MAX_PORT}, got {port}"
            raise ValueError(msg)
        if long_poll_timeout_ms is not None and long_poll_timeout_ms < 0:
            msg = f"long_poll_timeout_ms must be >= 0, got {long_poll_timeout_ms}"
            raise ValueError(msg)
        self._data_dir = data_dir
        self._requested_port = port
        self._long_poll_timeout_ms = long_poll_timeout_ms
        self._compression = compression
        self._webhooks = webhooks
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: IO[bytes] | None = None
        self._last_log = ""
        self._port: int | None = None
        self._url: str | None = None
        self._pid: int | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Launch the server and block until it is listening.

        Raises:
            NodeNotFoundError: Node.js (or, for the first install, npm) is missing.
            ReferenceServerError: the install failed, or the server exited or was not
                ready within ~20 s (its stderr is in the message).
        """
        if self.running:
            msg = "reference server is already running"
            raise ReferenceServerError(msg)
        port = self._port if self._port is not None else self._requested_port
        self._launch(port)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), escalating to SIGKILL after a timeout.

        Safe to call when not running, or after the process already died.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_KILL_TIMEOUT_S)
        self._reap()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would.

        Nothing is flushed or closed on the server side; in file-backed mode
        every acknowledged append has already been fsynced, so it is on disk.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_KILL_TIMEOUT_S)
        self._reap()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data dir.

        Binding the port can fail for a moment after the old process goes
        away, so the start is retried a few times while the error is
        ``EADDRINUSE``.
        """
        self.stop()
        port = self._port if self._port is not None else self._requested_port
        for attempt in range(_RESTART_ATTEMPTS):
            try:
                self._launch(port)
            except ReferenceServerError as exc:
                last_attempt = attempt == _RESTART_ATTEMPTS - 1
                if "EADDRINUSE" not in str(exc) or last_attempt:
                    raise
                time.sleep(_RESTART_BACKOFF_S * (attempt + 1))
            else:
                return

    def __enter__(self) -> Self:
        """Start the server unless it is running already."""
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- state -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self._url is None:
            msg = "reference server has not been started"
            raise ReferenceServerError(msg)
        return self._url

    @property
    def port(self) -> int:
        """TCP port the server listens on (kept across restarts)."""
        if self._port is None:
            msg = "reference server has not been started"
            raise ReferenceServerError(msg)
        return self._port

    @property
    def pid(self) -> int:
        """Pid of the current ``node`` process."""
        if self._pid is None:
            msg = "reference server is not running"
            raise ReferenceServerError(msg)
        return self._pid

    @property
    def data_dir(self) -> Path | None:
        """Directory of the file-backed store, or ``None`` when in memory."""
        return self._data_dir

    def stream_url(self, path: str) -> str:
        """Absolute URL for a stream ``path`` such as ``/tests/abc``."""
        if not path.startswith("/"):
            path = "/" + path
        return self.url + path

    def server_log(self) -> str:
        """Return the tail of the server's stderr (its logging).

        Still available after :meth:`stop` or :meth:`kill`, until the next
        start, so a failing test can include it in its report.
        """
        return self._read_stderr()

    # -- fault injection ---------------------------------------------------

    def inject(self, path: str, fault: Fault) -> None:
        """Arm ``fault`` for the next requests to the stream at ``path``.

        Matching: ``path`` must equal the request's path exactly (no prefix
        match; the query string is ignored); a full URL is reduced to its
        path. One fault per path: arming again replaces the previous one.
        See :class:`Fault` for the effects and which requests they hit.

        Raises:
            ValueError: a path that does not start with ``/``.
            ReferenceServerError: the server refused the fault.
        """
        given: object = fault  # checked as what a caller may really pass
        if not isinstance(given, Fault):
            msg = f"fault must be a Fault, got {type(given).__name__}"
            raise TypeError(msg)
        self._control("POST", json.dumps(fault_body(path, fault)).encode())

    def inject_error(
        self,
        path: str,
        *,
        status: int | None = None,
        count: int | None = None,
        retry_after: int | None = None,
        delay_ms: int | None = None,
        jitter_ms: int | None = None,
        drop_connection: bool = False,
        truncate_body_bytes: int | None = None,
        corrupt_body: bool = False,
        probability: float | None = None,
        method: str | None = None,
        inject_sse_event: SseEvent | Mapping[str, str] | None = None,
    ) -> None:
        """Arm a fault given by keywords: ``inject(path, Fault(...))`` in one call.

        The keywords are :class:`Fault`'s; ``inject_sse_event`` also takes a mapping
        ``{"event_type": ..., "data": ...}``.

        Raises:
            ValueError: no effect or a value out of range (nothing is sent).
            ReferenceServerError: the server refused the fault.
        """
        fault = Fault(
            status=status,
            count=count,
            retry_after=retry_after,
            delay_ms=delay_ms,
            jitter_ms=jitter_ms,
            drop_connection=drop_connection,
            truncate_body_bytes=truncate_body_bytes,
            corrupt_body=corrupt_body,
            probability=probability,
            method=method,
            sse_event=_sse_event(inject_sse_event),
        )
        self.inject(path, fault)

    def clear_errors(self) -> None:
        """Drop every armed fault, on all paths."""
        self._control("DELETE", None)

    # -- internals ---------------------------------------------------------

    def _command(self, server_dir: Path, port: int) -> list[str]:
        """Build the ``node serve.mjs ...`` command line."""
        script = str(server_dir / "serve.mjs")
        cmd = [find_node(), script, "--port", str(port), "--watch-stdin"]
        if self._data_dir is not None:
            cmd += ["--data-dir", str(self._data_dir)]
        if self._long_poll_timeout_ms is not None:
            cmd += ["--long-poll-timeout", str(self._long_poll_timeout_ms)]
        if not self._compression:
            cmd.append("--no-compression")
        if self._webhooks:
            cmd.append("--webhooks")
        return cmd

    def _launch(self, port: int) -> None:
        """Start one process and wait for its ready line, or clean up."""
        server_dir = install_server()
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._command(server_dir, port)
        self._last_log = ""
        # stderr goes to a file rather than a pipe: nobody reads it while
        # tests run, and a full pipe would stall the server mid-request.
        self._stderr_file = tempfile.TemporaryFile(prefix="ds-refserver-")  # noqa: SIM115
        proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            cmd,
            cwd=server_dir,
            # Never written to: the server exits when this pipe reaches EOF,
            # i.e. as soon as this process is gone, however it died.
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            # Own process group, so signals reach the whole server tree and a
            # Ctrl-C aimed at the test run is left for us to handle in order.
            start_new_session=True,
        )
        self._proc = proc
        with _live_lock:
            _live.add(self)
        lines: queue.Queue[bytes | None] = queue.Queue()
        if proc.stdout is not None:
            threading.Thread(
                target=drain_stdout,
                args=(proc.stdout, lines),
                name=f"ds-refserver-stdout-{proc.pid}",
                daemon=True,
            ).start()
        try:
            info = self._await_ready(proc, lines, cmd)
        except BaseException:
            # Includes KeyboardInterrupt: never leave a half-started server.
            self.kill()
            raise
        self._port, self._url, self._pid = info.port, info.url, info.pid

    def _await_ready(
        self,
        proc: subprocess.Popen[bytes],
        lines: queue.Queue[bytes | None],
        cmd: list[str],
    ) -> ReadyInfo:
        """Return the parsed ready line, or raise with the server's stderr."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        stray: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not report ready within {_READY_TIMEOUT_S:.0f} s", cmd, stray)
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                # EOF on stdout: the process is exiting; let it finish so the
                # exit status and all of stderr are available.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_KILL_TIMEOUT_S)
                self._fail(f"exited before it was ready (status {proc.returncode})", cmd, stray)
            text = line.decode("utf-8", "replace").strip()
            info = parse_ready_line(text)
            if info is not None:
                return info
            stray.append(text)

    def _fail(self, what: str, cmd: list[str], stray: list[str]) -> NoReturn:
        """Raise a :class:`ReferenceServerError` with everything known."""
        parts = [f"reference server {what}", f"command: {' '.join(cmd)}"]
        if stray:
            parts.append("unexpected stdout:\n" + "\n".join(stray))
        stderr = self._read_stderr().strip()
        parts.append("stderr:\n" + (stderr or "(empty)"))
        raise ReferenceServerError("\n".join(parts))

    def _read_stderr(self) -> str:
        """Return the tail of the current process's stderr file."""
        f = self._stderr_file
        if f is None or f.closed:
            return self._last_log
        # pread leaves the file offset alone: the child shares this open
        # file description, so seeking here would move where it writes.
        fd = f.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_TAIL_CHARS)
        text = os.pread(fd, size - start, start).decode("utf-8", "replace")
        return ("...\n" + text) if start else text

    def _reap(self) -> None:
        """Release the dead process's pipes and files and forget it."""
        proc = self._proc
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        # Keep the log text so server_log() still works after a stop or kill,
        # which is when a failing test wants it; the file itself must close
        # now or it leaks (a ResourceWarning, fatal under -W error).
        self._last_log = self._read_stderr()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        self._proc = None
        self._pid = None
        with _live_lock:
            _live.discard(self)

    def _control(self, method: str, data: bytes | None) -> None:
        """Call ``/_test/inject-error``; raise on anything but 200."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(  # noqa: S310 - always the server's http URL
            self.url + _INJECT_PATH, data=data, method=method, headers=headers
        )
        try:
            with _OPENER.open(request, timeout=_HTTP_TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            msg = f"{method} {_INJECT_PATH} failed: {exc.code} {detail}"
            raise ReferenceServerError(msg) from exc


def _sse_event(event: SseEvent | Mapping[str, str] | None) -> SseEvent | None:
    """Accept the mapping form ``{"event_type", "data"}`` too."""
    if event is None or isinstance(event, SseEvent):
        return event
    unknown = set(event) - set(_SSE_EVENT_KEYS)
    if unknown:
        msg = f"inject_sse_event: unknown keys {sorted(unknown)}"
        raise ValueError(msg)
    fields = {_SSE_EVENT_KEYS[key]: value for key, value in event.items()}
    if set(fields) != {"event_type", "data"}:
        msg = "inject_sse_event needs both 'event_type' and 'data'"
        raise ValueError(msg)
    return SseEvent(**fields)


def running_servers() -> list[ReferenceServer]:
    """The servers of this process that are started and not yet stopped."""
    with _live_lock:
        return list(_live)


@atexit.register
def _kill_leftovers() -> None:
    """Last resort for servers a test forgot to stop."""
    for server in running_servers():
        with contextlib.suppress(Exception):
            server.stop()
