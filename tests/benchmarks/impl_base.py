"""Benchmark child: another checkout's ``impl_ours.py`` with that checkout's library.

Run by ``run.py --baseline DIR`` as ``python impl_base.py DIR '<spec JSON>'`` with
``PYTHONPATH=DIR``. Before handing over it checks that ``durable_streams`` really comes
from ``DIR`` (an editable install of this repository would otherwise win silently) and
exits with status 3 if not. The other checkout's child imports this folder's
``bench_common``, so both are measured by the same harness.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} BASELINE_DIR '<spec JSON>'")
    root = Path(sys.argv[1]).resolve()
    import durable_streams  # noqa: PLC0415 - must be imported after the check above

    found = Path(durable_streams.__file__).resolve()
    if not found.is_relative_to(root):
        sys.stderr.write(f"durable_streams comes from {found}, not from {root}\n")
        raise SystemExit(3)
    bench_dir = root / "tests" / "benchmarks"
    # This folder stays first: the other checkout's impl_ours.py runs on this harness's
    # bench_common (the same measurement for both); its own folder comes next.
    sys.path.insert(1, str(bench_dir))
    sys.argv = [str(bench_dir / "impl_ours.py"), sys.argv[2]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
