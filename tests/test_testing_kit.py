"""The shipped testing kit (``durable_streams.testing``): the server, its install, the plugin.

Real processes throughout: ``node`` servers, ``npm ci`` into fresh cache directories (the
machine's npm cache makes that quick), and pytest runs in subprocesses for the plugin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import durable_streams as ds
from durable_streams.testing import (
    Fault,
    NodeNotFoundError,
    ReferenceServer,
    ReferenceServerError,
    SseEvent,
    StreamFactory,
    _install,
    install_server,
    server_version,
)
from durable_streams.testing._faults import fault_body
from durable_streams.testing._server import running_servers

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request, no proxy; the status and the body, whatever the status."""
    headers = {"Content-Type": "text/plain"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _DIRECT.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fake_binary(directory: Path, name: str, script: str) -> Path:
    """An executable shell script standing in for ``node`` or ``npm``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


# -- the server's life cycle ---------------------------------------------------------


def test_start_serves_and_stop_ends_the_process() -> None:
    server = ReferenceServer()
    with pytest.raises(ReferenceServerError, match="not been started"):
        _ = server.url
    server.start()
    try:
        pid = server.pid
        assert server.running
        assert alive(pid)
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.stream_url("kit/a") == server.url + "/kit/a"
        assert http("PUT", server.stream_url("/kit/start"), b"")[0] == 201
        assert http("GET", server.stream_url("/kit/missing"))[0] == 404
        with pytest.raises(ReferenceServerError, match="already running"):
            server.start()
    finally:
        server.stop()
    assert (server.running, alive(pid)) == (False, False)
    assert server not in running_servers()
    assert "stopping (SIGTERM)" in server.server_log()  # kept after the stop
    server.stop()  # a second stop does nothing


def test_a_file_backed_server_keeps_streams_and_port_across_restart(tmp_path: Path) -> None:
    with ReferenceServer(data_dir=tmp_path / "data") as server:
        url, port, first_pid = server.stream_url("/kit/durable"), server.port, server.pid
        assert http("PUT", url, b"")[0] == 201
        assert http("POST", url, b"kept")[0] == 204
        server.restart()
        assert (server.port, server.stream_url("/kit/durable")) == (port, url)
        assert server.pid != first_pid
        assert http("GET", url + "?offset=-1") == (200, b"kept")


def test_kill_is_a_crash_that_a_file_backed_server_recovers_from(tmp_path: Path) -> None:
    with ReferenceServer(data_dir=tmp_path / "data") as server:
        url = server.stream_url("/kit/crash")
        assert http("PUT", url, b"")[0] == 201
        assert http("POST", url, b"acked before the crash")[0] == 204
        pid = server.pid
        server.kill()
        assert not server.running
        assert not alive(pid)
        assert "Recovery complete" in server.server_log()  # the log outlives the process
        server.start()
        assert http("GET", url + "?offset=-1") == (200, b"acked before the crash")


def test_an_in_memory_server_forgets_on_restart() -> None:
    with ReferenceServer() as server:
        url = server.stream_url("/kit/memory")
        assert http("PUT", url, b"")[0] == 201
        server.restart()
        assert http("GET", url + "?offset=-1")[0] == 404


def test_bad_options_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="port"):
        ReferenceServer(port=70000)
    with pytest.raises(ValueError, match="long_poll_timeout_ms"):
        ReferenceServer(long_poll_timeout_ms=-1)


# -- fault injection -----------------------------------------------------------------


def test_an_injected_fault_hits_count_requests_of_its_method(server: ReferenceServer) -> None:
    url = server.stream_url("/kit/faulted")
    assert http("PUT", url, b"")[0] == 201
    server.inject("/kit/faulted", Fault(status=503, retry_after=2, count=2, method="post"))
    assert http("GET", url + "?offset=-1")[0] == 200  # another method: untouched
    assert http("POST", url, b"lost") == (503, b"Injected error for testing")
    assert http("POST", url, b"lost")[0] == 503
    assert http("POST", url, b"stored")[0] == 204  # the fault is used up
    assert http("GET", url + "?offset=-1") == (200, b"stored")  # a faulted POST stores nothing


def test_clear_errors_disarms_every_fault(server: ReferenceServer) -> None:
    url = server.stream_url("/kit/cleared")
    assert http("PUT", url, b"")[0] == 201
    server.inject(url, Fault(status=500, count=100))  # a full URL means its path
    assert http("GET", url + "?offset=-1")[0] == 500
    server.clear_errors()
    assert http("GET", url + "?offset=-1")[0] == 200


def test_an_injected_sse_event_comes_first(server: ReferenceServer) -> None:
    url = server.stream_url("/kit/sse-event")
    assert http("PUT", url, b"")[0] == 201
    server.inject_error(
        url, inject_sse_event={"event_type": "surprise", "data": "{}"}, method="GET"
    )
    request = urllib.request.Request(url + "?offset=-1&live=sse")
    with _DIRECT.open(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.readline() == b"event: surprise\n"
        assert response.readline() == b"data: {}\n"
    with pytest.raises(ValueError, match="both"):
        server.inject_error(url, inject_sse_event={"data": "x"})
    with pytest.raises(ValueError, match="unknown keys"):
        server.inject_error(url, inject_sse_event={"event_type": "a", "data": "b", "x": "c"})


def test_a_fault_path_must_be_absolute(server: ReferenceServer) -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        server.inject("kit/relative", Fault(status=503))
    with pytest.raises(TypeError, match="must be a Fault"):
        server.inject("/kit/x", {"status": 503})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        (Fault, ValueError, "needs an effect"),
        (lambda: Fault(count=3), ValueError, "needs an effect"),
        (lambda: Fault(status=99), ValueError, "status must be 100..599"),
        (lambda: Fault(status=503, count=0), ValueError, "count must be >= 1"),
        (lambda: Fault(status=503, probability=1.5), ValueError, "probability"),
        (lambda: Fault(status=503, probability=float("nan")), ValueError, "probability"),
        (lambda: Fault(retry_after=1, delay_ms=5), ValueError, "retry_after needs a status"),
        (lambda: Fault(jitter_ms=5, status=503), ValueError, "jitter_ms needs a delay_ms"),
        (lambda: Fault(status=503, method="GET /x"), ValueError, "HTTP method"),
        (lambda: Fault(status=True), TypeError, "status must be an int"),
        (lambda: Fault(drop_connection=1), TypeError, "bool"),  # type: ignore[arg-type]
        (lambda: SseEvent("a\nb", "c"), ValueError, "one line"),
    ],
)
def test_bad_faults_are_refused_before_anything_is_sent(
    fault: object, error: type[Exception], match: str
) -> None:
    assert callable(fault)
    with pytest.raises(error, match=match):
        fault()


def test_a_fault_in_the_servers_wire_form() -> None:
    fault = Fault(
        status=429,
        retry_after=3,
        delay_ms=10,
        jitter_ms=5,
        count=2,
        probability=0.5,
        method="get",
        sse_event=SseEvent("control", "{}"),
    )
    assert fault.method == "GET"
    assert fault_body("http://h:1/a/b?x=1", fault) == {
        "path": "/a/b",
        "status": 429,
        "retryAfter": 3,
        "delayMs": 10,
        "jitterMs": 5,
        "count": 2,
        "probability": 0.5,
        "method": "GET",
        "injectSseEvent": {"eventType": "control", "data": "{}"},
    }
    assert fault_body("/p", Fault(drop_connection=True)) == {"path": "/p", "dropConnection": True}
    assert fault_body("/p", Fault(truncate_body_bytes=4, corrupt_body=True)) == {
        "path": "/p",
        "truncateBodyBytes": 4,
        "corruptBody": True,
    }


# -- installing the server -----------------------------------------------------------


def test_first_use_installs_into_the_cache_and_later_uses_need_no_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_STREAMS_CACHE_DIR", str(tmp_path / "cache"))
    installed = install_server()
    assert installed.parent == tmp_path / "cache"
    assert installed.name.startswith(f"server-{server_version()}-")
    assert (installed / "serve.mjs").is_file()
    manifest = installed / "node_modules" / "@durable-streams" / "server" / "package.json"
    assert json.loads(manifest.read_text())["version"] == server_version()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [installed.name]  # no leftovers

    # From now on npm is never called: an unusable one changes nothing.
    monkeypatch.setenv("DURABLE_STREAMS_NPM", str(tmp_path / "no-such-npm"))
    assert install_server() == installed
    with ReferenceServer() as server:
        assert http("PUT", server.stream_url("/kit/cached"), b"")[0] == 201


def test_concurrent_first_uses_share_one_install(tmp_path: Path) -> None:
    results: list[Path | BaseException] = []

    def install() -> None:
        try:
            results.append(install_server(cache_dir=tmp_path))
        except BaseException as exc:  # reported below, in the test's thread
            results.append(exc)

    threads = [threading.Thread(target=install) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert all(isinstance(r, Path) for r in results), results
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(str(results[0])).name]


def test_another_launcher_or_lock_file_installs_elsewhere() -> None:
    files = _install._shipped_files()
    changed = {**files, "package-lock.json": files["package-lock.json"] + b"\n"}
    assert _install._install_name(changed) != _install._install_name(files)
    assert _install._install_name(files).startswith(f"server-{server_version()}-")


def test_the_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_STREAMS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert _install.cache_root() == Path("/x/cache/durable-streams-aio")
    monkeypatch.setenv("DURABLE_STREAMS_CACHE_DIR", "/y/ds")
    assert _install.cache_root() == Path("/y/ds")


def test_a_failing_npm_ci_is_reported_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm = fake_binary(tmp_path / "bin", "npm", "echo 'npm error network ENOTFOUND' >&2; exit 1")
    monkeypatch.setenv("DURABLE_STREAMS_NPM", str(npm))
    with pytest.raises(ReferenceServerError, match="ENOTFOUND") as caught:
        install_server(cache_dir=tmp_path / "cache")
    assert "needs the npm registry" in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-installed is kept


# -- without Node.js -----------------------------------------------------------------


def test_without_node_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_STREAMS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DURABLE_STREAMS_NODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    before = running_servers()
    with pytest.raises(NodeNotFoundError) as caught:
        ReferenceServer().start()
    message = str(caught.value)
    assert "node was not found on PATH" in message
    assert "https://nodejs.org" in message
    assert "DURABLE_STREAMS_NODE" in message
    assert running_servers() == before


def test_an_installed_server_without_node_says_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_server()  # the default cache: installed already by the rest of the run
    monkeypatch.delenv("DURABLE_STREAMS_NODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(NodeNotFoundError, match=r"nodejs\.org"):
        ReferenceServer().start()


def test_a_node_too_old_or_not_there_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    old = fake_binary(tmp_path / "bin", "node", "echo v18.19.0")
    monkeypatch.setenv("DURABLE_STREAMS_NODE", str(old))
    with pytest.raises(NodeNotFoundError, match=r"v18\.19\.0.*Node.js 20 or newer"):
        install_server(cache_dir=cache)
    monkeypatch.setenv("DURABLE_STREAMS_NODE", str(tmp_path / "missing-node"))
    with pytest.raises(NodeNotFoundError, match=r"DURABLE_STREAMS_NODE=.*not an executable"):
        install_server(cache_dir=cache)


# -- the command line ----------------------------------------------------------------


def test_the_command_line_runs_a_command_with_a_server() -> None:
    code = "import os, urllib.parse; print(urllib.parse.urlsplit(os.environ['DURABLE_STREAMS_URL']).hostname)"  # noqa: E501
    result = subprocess.run(
        [sys.executable, "-m", "durable_streams.testing", "run", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "127.0.0.1\n"), result.stderr
    failing = [sys.executable, "-m", "durable_streams.testing", "run", "sh", "-c", "exit 3"]
    assert subprocess.run(failing, timeout=60, check=False).returncode == 3
    installed = subprocess.run(
        [sys.executable, "-m", "durable_streams.testing", "install"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(installed.stdout.strip()) == install_server()


# -- the pytest plugin ---------------------------------------------------------------

_USER_TESTS = """
import durable_streams as ds
from durable_streams.testing import Fault, ReferenceServer, StreamFactory
from durable_streams.testing._server import running_servers


def test_nothing_runs_until_a_fixture_is_asked_for():
    assert running_servers() == []


async def test_the_fixtures(
    durable_streams_server: ReferenceServer,
    durable_streams_session: ds.Session,
    durable_streams_stream_factory: StreamFactory,
):
    stream = await durable_streams_stream_factory("orders")
    assert stream.url.startswith(durable_streams_server.url + "/pytest/test_the_fixtures-")
    await stream.append({"n": 1})
    assert await durable_streams_session.stream(stream.url).read_all() == [{"n": 1}]
    other = durable_streams_stream_factory.path("orders")
    assert other != stream.url.removeprefix(durable_streams_server.url)
    durable_streams_server.inject(other, Fault(status=503))


def test_a_failure_shows_the_server_log(durable_streams_server: ReferenceServer):
    raise AssertionError("on purpose")
"""


_ASYNCIO_INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def run_pytest(
    tmp_path: Path,
    *args: str,
    code: str | None = None,
    env: dict[str, str] | None = None,
    ini: str = _ASYNCIO_INI,
) -> str:
    (tmp_path / "test_user.py").write_text(_USER_TESTS)
    (tmp_path / "pytest.ini").write_text(ini)
    argv = [sys.executable, *(["-c", code] if code else ["-m", "pytest"])]
    result = subprocess.run(
        [*argv, "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


def test_the_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "-rA")
    assert "2 passed, 1 failed" in out or "1 failed, 2 passed" in out, out
    assert "durable-streams reference server log (tail)" in out, out
    assert "on purpose" in out


def test_without_pytest_asyncio_the_session_fixture_says_what_is_missing(
    tmp_path: Path,
) -> None:
    # pytest-asyncio made unimportable; with autoloading off, the plugin is named.
    code = (
        "import sys; sys.modules['pytest_asyncio'] = None; import pytest; "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    out = run_pytest(
        tmp_path,
        "-p",
        "durable_streams.testing.plugin",
        "-k",
        "fixtures or nothing",
        code=code,
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        ini="[pytest]\n",
    )
    assert "the durable_streams_session fixture needs pytest-asyncio" in out, out
    assert "1 passed" in out, out


def test_a_stream_factory_names_streams_safely() -> None:
    factory = StreamFactory(ds.Session("http://127.0.0.1:1"), test_name="test_x[a/b c]")
    first, second = factory.path("my orders"), factory.path("my orders")
    assert first != second
    assert first.startswith("/pytest/test_x-a-b-c-")
    assert first.endswith("/my-orders-1")
    assert second.endswith("/my-orders-2")


def test_the_fastapi_example_passes_with_only_the_plugin() -> None:
    """examples/testing_fastapi, run as its own project (its pytest.ini), as docs show."""
    example = Path(__file__).resolve().parent.parent / "examples" / "testing_fastapi"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=example,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert re.search(r"\b9 passed\b", out), out


def test_the_kits_public_names() -> None:
    """``durable_streams.testing.__all__`` changes only on purpose (and is documented)."""
    import durable_streams.testing as kit  # noqa: PLC0415

    assert kit.__all__ == [
        "Fault",
        "NodeNotFoundError",
        "ReferenceServer",
        "ReferenceServerError",
        "SseEvent",
        "StreamFactory",
        "install_server",
        "server_version",
    ]
    documented = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    missing = [n for n in kit.__all__ if f"durable_streams.testing.{n}" not in documented]
    assert missing == []
