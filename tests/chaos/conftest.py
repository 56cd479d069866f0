"""Chaos scenarios: report the numbers each scenario recorded at the end of the run."""

from __future__ import annotations

import json
import random

import pytest

from tests.chaos._support import RESULTS, SCALE, SEED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what every chaos scenario held, injected and lost (with the seed to replay)."""
    if not RESULTS:
        return
    terminalreporter.section(f"chaos results (CHAOS_SCALE={SCALE}, CHAOS_SEED={SEED})")
    for entry in RESULTS:
        numbers = {k: v for k, v in entry.items() if k not in ("scenario", "scale", "seed")}
        terminalreporter.write_line(f"{entry['scenario']}: {json.dumps(numbers, default=str)}")


@pytest.fixture(autouse=True)
def _seeded_jitter(request: pytest.FixtureRequest) -> None:
    """Seed the global generator, which the library's backoff jitter draws from."""
    random.seed(f"{SEED}/{request.node.nodeid}")
