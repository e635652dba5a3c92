"""Benchmarks that print figures (`python -m bench`); tests never assert on time."""

from __future__ import annotations

import sys
from pathlib import Path

#: The checkout: the bench modules import the library, the handlers (`lambdas/`) and the tests' support.
ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT, ROOT / "shared", ROOT / "lambdas"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
