"""One more synthesis, with context that moves every threshold, limit and switch of the alarms,
throttles, reserved concurrency and tracing (tests/infra/test_alarms.py, test_limits.py).

Cached per process (the infra tier runs in one xdist group), so the two modules share it: a
session fixture imported into two modules would synthesize twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest

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


_SYNTHESIZED: dict[Path, Synthesized] = {}


def custom_synthesis(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Synthesized:
    """The app with `CUSTOM` context, cdk-nag on (switching tracing off must leave no finding)."""
    if web_dist not in _SYNTHESIZED:
        context = {"aws:cdk:bundling-stacks": [], "webDistDir": str(web_dist), **CUSTOM}
        _SYNTHESIZED[web_dist] = _synth(tmp_path_factory.mktemp("cdk.out.custom"), context, nag=True)
    return _SYNTHESIZED[web_dist]
