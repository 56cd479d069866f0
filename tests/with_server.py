"""Run a command with a local reference server: ``python -m tests.with_server CMD ...``.

The server's base URL is passed to the command in ``DURABLE_STREAMS_URL``; the server is
stopped when the command ends. The demo, the examples and the docs use this. It is the
testing kit's ``python -m durable_streams.testing run CMD ...``, under its old name.
"""

from __future__ import annotations

import sys

from durable_streams.testing.__main__ import main as kit_main


def main(argv: list[str]) -> int:
    """Start the server, run ``argv`` with ``DURABLE_STREAMS_URL`` set, return its status."""
    if not argv:
        print("usage: python -m tests.with_server COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return kit_main(["run", "--", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
