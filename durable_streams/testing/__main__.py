"""``python -m durable_streams.testing install | serve | run``: the reference server by hand.

- ``install``: install the pinned server into the user cache (once) and print where.
- ``serve [--port N] [--data-dir DIR] [--long-poll-timeout MS] [--no-compression]
  [--webhooks]``: run it in the foreground until Ctrl-C; it prints one JSON line with
  its URL, and logs to stderr.
- ``run [server options] COMMAND ...``: start a server on a free port, run ``COMMAND``
  with the server's base URL in ``DURABLE_STREAMS_URL``, stop the server; the exit
  status is the command's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._errors import ReferenceServerError
from ._install import find_node, install_server
from ._server import ReferenceServer

__all__ = ["main"]


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--data-dir", type=Path, help="file-backed store (survives restarts)")
    parser.add_argument("--long-poll-timeout", type=int, metavar="MS", help="default 30000")
    parser.add_argument("--no-compression", action="store_true", help="no gzip on reads")
    parser.add_argument("--webhooks", action="store_true", help="enable webhook subscriptions")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m durable_streams.testing",
        description="The Durable Streams reference server (npm @durable-streams/server).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install the pinned server; print its directory")
    _server_options(commands.add_parser("serve", help="run a server in the foreground"))
    run = commands.add_parser("run", help="run COMMAND with DURABLE_STREAMS_URL set")
    _server_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...")
    return parser


def _serve(args: argparse.Namespace) -> int:
    """Replace this process with ``node serve.mjs``: signals go straight to the server."""
    server_dir = install_server()
    node = find_node()
    argv = [node, str(server_dir / "serve.mjs"), "--port", str(args.port)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    if args.long_poll_timeout is not None:
        argv += ["--long-poll-timeout", str(args.long_poll_timeout)]
    if args.no_compression:
        argv.append("--no-compression")
    if args.webhooks:
        argv.append("--webhooks")
    sys.stdout.flush()
    os.execv(node, argv)  # noqa: S606 - the arguments are ours, not a shell's


def _run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("run: a COMMAND is needed", file=sys.stderr)
        return 2
    server = ReferenceServer(
        port=args.port,
        data_dir=args.data_dir,
        long_poll_timeout_ms=args.long_poll_timeout,
        compression=not args.no_compression,
        webhooks=args.webhooks,
    )
    with server:
        env = {**os.environ, "DURABLE_STREAMS_URL": server.url}
        return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "install":
            print(install_server())
            return 0
        if args.command == "serve":
            return _serve(args)
        return _run(args)
    except ReferenceServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
