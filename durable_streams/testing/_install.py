"""Installing the pinned reference server into a user cache directory, once.

The package ships ``serve.mjs``, ``package.json`` and ``package-lock.json`` (the npm
``@durable-streams/server``, pinned). The first use copies them into
``<cache>/server-<version>-<digest>/`` and runs ``npm ci`` there; the directory name
changes whenever one of the three files does, so an upgrade of this package never runs
an old server, and every later use finds the directory complete and needs no network.

``<cache>`` is ``$DURABLE_STREAMS_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/durable-streams-aio`` (``~/.cache/durable-streams-aio``;
``~/Library/Caches/durable-streams-aio`` on macOS).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Final

from ._errors import NodeNotFoundError, ReferenceServerError

__all__ = [
    "CACHE_ENV",
    "NODE_ENV",
    "NPM_ENV",
    "cache_root",
    "find_node",
    "install_server",
    "server_version",
]

CACHE_ENV: Final = "DURABLE_STREAMS_CACHE_DIR"
NODE_ENV: Final = "DURABLE_STREAMS_NODE"
NPM_ENV: Final = "DURABLE_STREAMS_NPM"

SERVER_PACKAGE: Final = "@durable-streams/server"
_FILES: Final = ("package.json", "package-lock.json", "serve.mjs")
# Written last, inside the directory before it is renamed into place: a directory
# without it is never used.
_MARKER: Final = ".installed.json"
_MIN_NODE: Final = (20, 0)
_NPM_TIMEOUT_S: Final = 600.0
_VERSION_TIMEOUT_S: Final = 30.0
_OUTPUT_TAIL_CHARS: Final = 4000

INSTALL_HINT: Final = (
    "the Durable Streams reference server runs on Node.js 20 or newer, with npm for its "
    "first install. Install Node.js from https://nodejs.org/en/download (npm comes with "
    "it) or with your package manager (Debian/Ubuntu: `apt install nodejs npm`; macOS: "
    "`brew install node`), or point DURABLE_STREAMS_NODE (and DURABLE_STREAMS_NPM) at "
    "the binaries"
)


def cache_root() -> Path:
    """The directory under which installed servers live (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        base = Path(xdg).expanduser()
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "durable-streams-aio"


def _shipped_files() -> dict[str, bytes]:
    """The launcher and the pinned npm manifest and lock file, from the package."""
    node_dir = resources.files("durable_streams.testing") / "_node"
    return {name: node_dir.joinpath(name).read_bytes() for name in _FILES}


def server_version() -> str:
    """The pinned version of ``@durable-streams/server`` this package runs."""
    return _pinned_version(_shipped_files())


def _pinned_version(files: dict[str, bytes]) -> str:
    manifest = json.loads(files["package.json"])
    version = manifest["dependencies"][SERVER_PACKAGE]
    assert isinstance(version, str)
    return version


def _install_name(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in _FILES:
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return f"server-{_pinned_version(files)}-{digest.hexdigest()[:12]}"


def find_node() -> str:
    """The ``node`` binary: ``$DURABLE_STREAMS_NODE``, else the one on ``PATH``.

    Raises:
        NodeNotFoundError: neither exists, with how to install Node.js.
    """
    configured = os.environ.get(NODE_ENV)
    if configured:
        if not _is_executable(configured):
            msg = f"{NODE_ENV}={configured!r} is not an executable file; {INSTALL_HINT}"
            raise NodeNotFoundError(msg)
        return configured
    node = shutil.which("node")
    if node is None:
        msg = f"node was not found on PATH: {INSTALL_HINT}"
        raise NodeNotFoundError(msg)
    return node


def _find_npm(node: str) -> str:
    configured = os.environ.get(NPM_ENV)
    if configured:
        if not _is_executable(configured):
            msg = f"{NPM_ENV}={configured!r} is not an executable file; {INSTALL_HINT}"
            raise NodeNotFoundError(msg)
        return configured
    # npm next to node first: the pair that was installed together.
    beside = Path(node).resolve().parent / "npm"
    npm = str(beside) if _is_executable(str(beside)) else shutil.which("npm")
    if npm is None:
        msg = f"npm was not found (needed once, to install the reference server): {INSTALL_HINT}"
        raise NodeNotFoundError(msg)
    return npm


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _check_node_version(node: str) -> None:
    try:
        out = subprocess.run(  # noqa: S603 - our own command line, no shell
            [node, "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"{node} --version failed ({exc}); {INSTALL_HINT}"
        raise NodeNotFoundError(msg) from exc
    match = re.match(r"v?(\d+)\.(\d+)", out)
    if match is None or (int(match[1]), int(match[2])) < _MIN_NODE:
        msg = f"{node} is Node.js {out or '(unknown version)'}; {INSTALL_HINT}"
        raise NodeNotFoundError(msg)


def install_server(*, cache_dir: Path | None = None) -> Path:
    """The directory of the installed reference server, installing it on first use.

    May block for a while (``npm ci``) the first time; later calls only look at the
    directory and need neither the network nor npm. Safe to run from several processes
    at once: each installs into a directory of its own and the first to finish wins.

    Args:
        cache_dir: where servers are installed; default :func:`cache_root`.

    Raises:
        NodeNotFoundError: no Node.js 20+ or no npm (the message says how to fix it).
        ReferenceServerError: ``npm ci`` failed (its output is in the message).
    """
    files = _shipped_files()
    root = cache_dir if cache_dir is not None else cache_root()
    target = root / _install_name(files)
    if (target / _MARKER).is_file():
        return target
    node = find_node()
    _check_node_version(node)
    npm = _find_npm(node)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        _npm_ci(npm, node, staging)
        marker = {"server": SERVER_PACKAGE, "version": _pinned_version(files)}
        (staging / _MARKER).write_text(json.dumps(marker) + "\n")
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first (the target exists): use its copy.
            if not (target / _MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _npm_ci(npm: str, node: str, directory: Path) -> None:
    """``npm ci`` in ``directory``, preferring npm's cache over the network."""
    cmd = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"]
    env = dict(os.environ)
    # npm is a node script: it must find the same node, also when that is not on PATH.
    env["PATH"] = os.pathsep.join([str(Path(node).resolve().parent), env.get("PATH", "")])
    env.setdefault("npm_config_update_notifier", "false")
    try:
        result = subprocess.run(  # noqa: S603 - our own command line, no shell
            cmd,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"installing the reference server failed: {' '.join(cmd)}: {exc}"
        raise ReferenceServerError(msg) from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-_OUTPUT_TAIL_CHARS:]
        msg = (
            f"installing the reference server failed: `{' '.join(cmd)}` in {directory} "
            f"exited {result.returncode}. The first install needs the npm registry (or a "
            f"warm npm cache); later runs work offline.\n{output}"
        )
        raise ReferenceServerError(msg)
