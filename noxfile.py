"""Project tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``demo`` (and ``nox -l`` for all)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON = "3.11"


def _server(session: nox.Session) -> None:
    """Install the pinned reference server (npm) that tests and the demo run against."""
    session.run("npm", "ci", "--prefix", "tests/server", "--no-audit", "--no-fund", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against the real reference server."""
    session.install("-e", ".[tests]")
    _server(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the tests."""
    session.install("-e", ".[typecheck]")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start a local reference server, then create, write and tail a stream live."""
    session.install("-e", ".")
    _server(session)
    session.run("python", "-m", "tests.with_server", "python", "examples/quickstart.py")
