"""Run the Durable Streams reference server (Node) as a child process for tests.

The server is ``@durable-streams/server`` pinned in ``tests/server/package.json``
and launched through ``tests/server/serve.mjs``. Install it once with::

    npm ci --prefix tests/server

Typical use from a pytest fixture::

    with ReferenceServer() as server:
        server.inject_error("/my/stream", status=503, count=2)
        ...  # point the client at server.url

Everything here is synchronous and stdlib-only so it can run inside plain
(non-async) fixtures and in any event-loop policy.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, NamedTuple, NoReturn, Self

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

__all__ = ["SERVER_DIR", "ReferenceServer", "ReferenceServerError"]

SERVER_DIR: Final = Path(__file__).resolve().parent / "server"
_SERVE_SCRIPT: Final = SERVER_DIR / "serve.mjs"
_NODE_MODULES: Final = SERVER_DIR / "node_modules"

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

# Python name -> server JSON field, for the fault-injection body.
_FAULT_FIELDS: Final[Mapping[str, str]] = {
    "status": "status",
    "count": "count",
    "retry_after": "retryAfter",
    "delay_ms": "delayMs",
    "jitter_ms": "jitterMs",
    "drop_connection": "dropConnection",
    "truncate_body_bytes": "truncateBodyBytes",
    "corrupt_body": "corruptBody",
    "probability": "probability",
    "method": "method",
}
_SSE_EVENT_FIELDS: Final[Mapping[str, str]] = {
    "event_type": "eventType",
    "eventType": "eventType",
    "data": "data",
}

# A direct opener: a proxy configured in the environment must never see
# traffic meant for a server on the loopback interface.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_live_lock = threading.Lock()
_live: set[ReferenceServer] = set()


class ReferenceServerError(RuntimeError):
    """The reference server could not be started or refused a control call."""


class _ReadyInfo(NamedTuple):
    """The one JSON line ``serve.mjs`` prints once it is listening."""

    url: str
    port: int
    pid: int


def _parse_ready_line(text: str) -> _ReadyInfo | None:
    """Return the ready info if ``text`` is the ready line, else ``None``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    url, port, pid = data.get("url"), data.get("port"), data.get("pid")
    if isinstance(url, str) and isinstance(port, int) and isinstance(pid, int):
        return _ReadyInfo(url=url, port=port, pid=pid)
    return None


def _node_executable() -> str:
    """Return the Node binary to use, honouring ``DURABLE_STREAMS_NODE``."""
    node = os.environ.get("DURABLE_STREAMS_NODE") or shutil.which("node")
    if node is None:
        msg = (
            "node was not found on PATH (set DURABLE_STREAMS_NODE to its "
            "path); the reference server needs Node.js 18 or newer"
        )
        raise ReferenceServerError(msg)
    return node


def _check_installed() -> None:
    """Fail early, with the fix in the message, when npm deps are missing."""
    if not _SERVE_SCRIPT.is_file():
        msg = f"reference server launcher not found: {_SERVE_SCRIPT}"
        raise ReferenceServerError(msg)
    if not (_NODE_MODULES / "@durable-streams" / "server").is_dir():
        msg = (
            f"reference server dependencies are not installed in {_NODE_MODULES}; "
            "run `npm ci --prefix tests/server` from the repository root"
        )
        raise ReferenceServerError(msg)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid``, ignoring if gone."""
    # The child is started in its own session, so its pgid equals its pid;
    # signalling the group also reaches anything Node may have spawned.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _drain_stdout(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    """Forward stdout lines to ``lines`` and keep draining until EOF.

    Draining for the life of the process means a chatty server can never
    block on a full pipe; ``None`` marks EOF (the process closed stdout).
    """
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        # The pipe was closed under us during teardown; EOF is all we report.
        pass
    finally:
        lines.put(None)


class ReferenceServer:
    """A Durable Streams reference server in a child ``node`` process.

    ``port=0`` lets the OS choose a free port on the first start; later
    :meth:`restart` calls reuse whichever port was chosen, so URLs held by a
    client under test stay valid. With ``data_dir`` the server is file-backed
    (segment logs plus LMDB metadata) and streams, closed state and producer
    (epoch/seq) state survive :meth:`restart`, even after :meth:`kill`.
    Without it everything lives in memory and is lost on restart.
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

        Raises :class:`ReferenceServerError` (a ``RuntimeError``) carrying
        the server's stderr if it exits or is not ready within ~20 s.
        """
        if self.running:
            msg = "reference server is already running"
            raise ReferenceServerError(msg)
        _check_installed()
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
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
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
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_KILL_TIMEOUT_S)
        self._reap()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data dir.

        Binding the port can fail for a moment after the old process goes
        away, so the start is retried a few times while the error is
        ``EADDRINUSE``.
        """
        self.stop()
        _check_installed()
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

    def inject_error(
        self,
        path: str,
        *,
        status: int | None = None,
        count: int | None = None,
        retry_after: int | None = None,
        delay_ms: int | None = None,
        jitter_ms: int | None = None,
        drop_connection: bool | None = None,
        truncate_body_bytes: int | None = None,
        corrupt_body: bool | None = None,
        probability: float | None = None,
        method: str | None = None,
        inject_sse_event: Mapping[str, str] | None = None,
    ) -> None:
        """Arm a fault for the next ``count`` requests to ``path``.

        Matching: ``path`` must equal the request's path exactly (no prefix
        match; the query string is ignored); a full URL is reduced to its
        path. Every request to the path counts, whatever its method (HEAD,
        PUT, ... included) unless ``method`` narrows it. One fault per path:
        arming again replaces the previous one. Faults are checked before
        the request body is read, so a faulted POST appends nothing.

        Fields (``None`` leaves a field out, so the server default applies):

        - ``count``: requests to fault, default 1; decremented per matching
          request, the fault disappears at 0 (``count <= 0`` acts as 1).
        - ``probability``: 0..1; a request that escapes the dice roll is
          served normally and does not use up ``count``.
        - ``delay_ms`` (+ random ``0..jitter_ms``): sleep first; alone, the
          request then proceeds normally.
        - ``drop_connection``: destroy the socket; no status line is sent.
        - ``status`` (+ ``retry_after`` seconds): reply with that status,
          ``text/plain`` body ``Injected error for testing``, no
          ``Stream-*`` headers.
        - ``truncate_body_bytes`` / ``corrupt_body``: only affect 200 GET
          (catch-up or long-poll) bodies; the body is cut / mangled after
          compression, headers (``Stream-Next-Offset`` etc.) are unchanged,
          and framing is chunked so the short body looks complete.
        - ``inject_sse_event``: ``{"event_type": ..., "data": ...}``, sent as
          an ``event: <type>`` line plus a ``data: <data>`` line (note the
          space) right after the SSE headers, before any real event; a
          non-SSE request still uses it up, without effect.

        At least one of ``status``, ``delay_ms``, ``drop_connection``,
        ``truncate_body_bytes``, ``corrupt_body`` or ``inject_sse_event``
        must be given, or the server answers 400 and this raises
        :class:`ReferenceServerError`.
        """
        values: dict[str, object] = {
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "delay_ms": delay_ms,
            "jitter_ms": jitter_ms,
            "drop_connection": drop_connection,
            "truncate_body_bytes": truncate_body_bytes,
            "corrupt_body": corrupt_body,
            "probability": probability,
            "method": method.upper() if method is not None else None,
        }
        body: dict[str, object] = {"path": _path_only(path)}
        body.update(
            {_FAULT_FIELDS[name]: value for name, value in values.items() if value is not None}
        )
        if inject_sse_event is not None:
            body["injectSseEvent"] = _sse_event_body(inject_sse_event)
        self._control("POST", json.dumps(body).encode())

    def clear_errors(self) -> None:
        """Drop every armed fault, on all paths."""
        self._control("DELETE", None)

    # -- internals ---------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        """Build the ``node serve.mjs ...`` command line."""
        cmd = [_node_executable(), str(_SERVE_SCRIPT), "--port", str(port), "--watch-stdin"]
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
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._command(port)
        self._last_log = ""
        # stderr goes to a file rather than a pipe: nobody reads it while
        # tests run, and a full pipe would stall the server mid-request.
        self._stderr_file = tempfile.TemporaryFile(prefix="ds-refserver-")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            cwd=SERVER_DIR,
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
                target=_drain_stdout,
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
    ) -> _ReadyInfo:
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
            info = _parse_ready_line(text)
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
        request = urllib.request.Request(
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


def _path_only(path: str) -> str:
    """Reduce a URL to its path; faults are keyed by the exact path."""
    if "://" in path:
        path = urllib.parse.urlsplit(path).path
    if not path.startswith("/"):
        msg = f"fault path must start with '/', got {path!r}"
        raise ValueError(msg)
    return path


def _sse_event_body(event: Mapping[str, str]) -> dict[str, str]:
    """Translate ``{"event_type", "data"}`` to the server's camelCase."""
    unknown = set(event) - set(_SSE_EVENT_FIELDS)
    if unknown:
        msg = f"inject_sse_event: unknown keys {sorted(unknown)}"
        raise ValueError(msg)
    body = {_SSE_EVENT_FIELDS[key]: value for key, value in event.items()}
    if set(body) != {"eventType", "data"}:
        # The server would otherwise emit the literal text "undefined".
        msg = "inject_sse_event needs both 'event_type' and 'data'"
        raise ValueError(msg)
    return body


@atexit.register
def _kill_leftovers() -> None:
    """Last resort for servers a test forgot to stop."""
    with _live_lock:
        leftovers = list(_live)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.stop()
