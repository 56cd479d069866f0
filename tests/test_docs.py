"""Every Python code block in README.md and docs/ runs against the real server.

The fence convention: a ```python block is a complete program: it reads
``DURABLE_STREAMS_URL``, uses stream paths no other block uses, and exits 0. Fragments,
and ``examples/`` files included with ``--8<--``, use ```py; they are shown, not run here
(the examples run in tests/test_examples.py). Shell commands and output use ```bash,
```console or ```text. Fences must start the line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from durable_streams.testing import ReferenceServer

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for file in files:
        for n, match in enumerate(_BLOCK.finditer(file.read_text()), 1):
            found.append((f"{file.relative_to(ROOT)}#{n}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_code_block_runs(where: str, code: str, server: ReferenceServer, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    # Each block gets fresh stream paths, so blocks can be rerun against one server.
    script.write_text(code.replace('"/readme/', f'"/{tmp_path.name}/readme/'))
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(
    ("where", "code"),
    [(w, c) for w, c in _blocks() if w.startswith("README.md")],
    ids=[w for w, _ in _blocks() if w.startswith("README.md")],
)
def test_readme_block_runs_twice_on_the_same_streams(
    where: str, code: str, server: ReferenceServer, tmp_path: Path
) -> None:
    # A reader who runs an example again must not meet an error of its first run.
    script = tmp_path / "block.py"
    script.write_text(code.replace('"/readme/', f'"/{tmp_path.name}-twice/readme/'))
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{where}, run {run}:\n{result.stdout}\n{result.stderr}"


def test_examples_quickstart_runs(server: ReferenceServer) -> None:
    env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "reader: {'event': 'done'}" in result.stdout
    assert result.stdout.count("reader: {'event': 'tick'") == 5
