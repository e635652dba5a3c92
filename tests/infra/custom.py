"""One more synthesis, with context that moves every threshold, limit and switch of the alarms,
throttles, reserved concurrency and tracing (tests/infra/test_alarms.py, test_limits.py).

Cached per process (the infra tier runs in one xdist group), so the two modules share it: a
session fixture imported into two modules would synthesize twice.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any, Final

from tests.infra.conftest import Synthesized, _synth

CUSTOM: Final[dict[str, Any]] = {
    "apiErrorRateAlarmPercent": 10,
    "apiErrorRateMinRequests": 50,
    "iteratorAgeAlarmSeconds": 120,
    "tracing": False,
    "exportThrottleRate": 3,
    "exportThrottleBurst": 6,
    "connectionTestThrottleRate": 2,
    "connectionTestThrottleBurst": 4,
    "ingestReservedConcurrency": 0,
    "aggregateReservedConcurrency": 0,
    "apiReservedConcurrency": 20,
    "connectionTestReservedConcurrency": 0,
    "notifyReservedConcurrency": 2,
}


@cache
def custom_synthesis(web_dist: Path) -> Synthesized:
    """The app with `CUSTOM` context, cdk-nag on (switching tracing off must leave no finding)."""
    outdir = Path(tempfile.mkdtemp(prefix="cdk.out.custom-"))
    return _synth(outdir, {"aws:cdk:bundling-stacks": [], "webDistDir": str(web_dist), **CUSTOM}, nag=True)
