"""Project tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``demo`` (and ``nox -l`` for all)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON = "3.11"


def _server(session: nox.Session) -> None:
    """Install the pinned reference server (npm) that tests and the demo run against.

    The testing kit ships it (durable_streams/testing/_node) and installs it once into
    the user cache; this only does that first install up front, so a missing Node.js
    fails here with the kit's message rather than in the first test. Needs the package
    installed in the session.
    """
    session.run("python", "-m", "durable_streams.testing", "install")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against the real reference server."""
    session.install("-e", ".[tests,examples]")
    _server(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def mocked(session: nox.Session) -> None:
    """The exact shape of requests, on a mocked transport (tests/mocked, aioresponses).

    Pinned to aiohttp 3.13 on purpose: aioresponses 0.7.9, its newest release, fails on
    aiohttp >= 3.14 (``ClientResponse.__init__() missing ... 'stream_writer'``; its
    upstream issue 289 is open). aiohttp 3.14.0 is a security release, so the library's
    own range stays open and every other session runs the newest aiohttp; only these
    tests, which need no real network, run on the older one. ``nox -s tests`` leaves
    tests/mocked out (tests/conftest.py); here a missing aioresponses is an error.
    """
    session.install("-e", ".[tests]", "aiohttp>=3.13,<3.14", "aioresponses==0.7.9")
    session.run("pytest", "tests/mocked", *session.posargs)


@nox.session(python=PYTHON)
def fast(session: nox.Session) -> None:
    """The producer, framing and reader tests with the ``fast`` extra (msgspec, orjson).

    ``nox -s tests`` runs on the standard json module (the fallback every user has); this
    runs the code paths the extra switches on, and the extra's own comparison tests.
    """
    session.install("-e", ".[tests,fast]")
    session.run(
        "pytest",
        "tests/test_perf_fastjson.py",
        "tests/protocol",
        *sorted(str(p) for p in Path("tests").glob("test_producer*.py")),
        "tests/test_read.py",
        "tests/test_stream_ops.py",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def wheel_smoke(session: nox.Session) -> None:
    """The testing kit as users get it: from the built wheel, in a fresh virtual environment
    outside the repository with only ``durable-streams-aio[testing]``, a user's test file
    that uses the plugin's fixtures passes (the server installed into an empty cache)."""
    work = Path(tempfile.mkdtemp(prefix="ds-wheel-smoke-"))
    try:
        session.run("python", "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", str(work))
        (wheel,) = work.glob("durable_streams_aio-*.whl")
        venv = work / "venv"
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", f"{wheel}[testing]", external=True)
        project = work / "project"
        project.mkdir()
        for name in ("test_plugin_fixtures.py", "pytest.ini"):
            shutil.copy(Path("examples/testing_fastapi") / name, project)
        env = {"DURABLE_STREAMS_CACHE_DIR": str(work / "cache")}
        with session.chdir(project):
            # The package under test is the wheel's copy, not the repository's.
            check = "import durable_streams.testing as t; assert 'site-packages' in t.__file__"
            session.run(python, "-c", check, external=True)
            session.run(python, "-m", "pytest", "-q", env=env, external=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting) and import-linter (the layering of design.md)."""
    session.install("ruff>=0.6", "import-linter>=2.1", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the tests."""
    # aioresponses for the types of tests/mocked (only its runtime needs aiohttp < 3.14).
    session.install("-e", ".[typecheck]", "aioresponses==0.7.9")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start a local reference server, then create, write and tail a stream live."""
    session.install("-e", ".")
    _server(session)
    session.run("python", "-m", "tests.with_server", "python", "examples/quickstart.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks vs the official clients and raw aiohttp (``nox -s bench -- --quick``).

    Writes docs/benchmarks/results.json and chart.png and the table in docs/benchmarks.md;
    ``-- --help`` lists the driver's options (rounds, cases, implementations).
    """
    # ours runs with the fast extra; the driver's std variant hides it again, and uvloop is
    # there for `-- --impls ours,uvloop`.
    session.install("-e", ".[fast]", "matplotlib", "uvloop")
    _server(session)
    session.run(
        "npm", "ci", "--prefix", "tests/benchmarks/ts", "--no-audit", "--no-fund", external=True
    )
    # The official Python client also imports as durable_streams: it gets a venv of its own.
    pypi_venv = session.cache_dir / "bench-pypi-durable-streams-0.1.0"
    pypi_python = pypi_venv / "bin" / "python"
    if not pypi_python.exists():
        session.run("python", "-m", "venv", "--clear", str(pypi_venv))
    session.run(
        str(pypi_python), "-m", "pip", "install", "-q", "durable-streams==0.1.0", external=True
    )
    session.run(
        "python", "tests/benchmarks/run.py", "--pypi-python", str(pypi_python), *session.posargs
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs --strict); the API reference is from docstrings."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Reliability scenarios at full scale (tests/chaos; `tests` runs them reduced).

    About 20 minutes; see docs/reliability.md. CHAOS_SEED=<n> replays another fault
    schedule; CHAOS_REPORT=<file> also writes each scenario's numbers there as JSON lines.
    """
    session.install("-e", ".[tests]")
    _server(session)
    session.run("pytest", "tests/chaos", *session.posargs, env={"CHAOS_SCALE": "full"})
