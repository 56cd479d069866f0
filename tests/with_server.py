"""Run a command with a local reference server: ``python -m tests.with_server CMD ...``.

The server's base URL is passed to the command in ``DURABLE_STREAMS_URL``; the server is
stopped when the command ends. The demo, the examples and the docs use this.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests._refserver import ReferenceServer


def main(argv: list[str]) -> int:
    """Start the server, run ``argv`` with ``DURABLE_STREAMS_URL`` set, return its status."""
    if not argv:
        print("usage: python -m tests.with_server COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with ReferenceServer() as server:
        env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
        return subprocess.run(argv, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
