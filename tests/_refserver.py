"""TRANSITIONAL: the reference server helper is ``durable_streams.testing`` now.

This re-export keeps ``from tests._refserver import ReferenceServer`` working until
those imports are switched; then it goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from durable_streams.testing import ReferenceServer, ReferenceServerError

__all__ = ["SERVER_DIR", "ReferenceServer", "ReferenceServerError"]

SERVER_DIR: Final = Path(__file__).resolve().parent / "server"
