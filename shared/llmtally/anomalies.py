"""Days whose cost is unusual for that user, robust to trend and weekday rhythm.

Each scanned day t is judged against the days before it — never against itself or later days, so
a day is flagged with what was known when it ended:

1. expected(t) = level(t) × weekday factor (`llmtally.robust.fit_seasonal_trend`): weekday factors
   from medians of ratios to the centred 7-day mean over the previous `FACTOR_DAYS` (8 weeks, once
   there are 3), the level from a Theil–Sen line through the deseasonalised previous
   `TRAILING_DAYS` (4 weeks), extrapolated one day.
2. scale = 1.4826 × MAD of the *prediction errors* (cost − expected, each made the same way from
   its own past) of the previous `SCALE_DAYS` days, at least `SCALE_FLOOR_NANOS`. Prediction
   errors, not the fit's in-sample residuals: a line and seven factors fitted to four weeks hug
   those weeks, and in-sample residuals understated the real one-day-ahead error by about half
   (a clean seasonal series then "fired" on 5% of its days; see docs/insights.md).
3. score = (cost − expected) / scale; flagged when |score| ≥ `THRESHOLD` (3.5, the usual
   modified-z cut-off) *and* |cost − expected| ≥ max(`MIN_DEVIATION_NANOS`, `MIN_RELATIVE_DEVIATION`
   × expected), so a near-zero or near-constant series does not fire on a cent.

Intermittent usage — more than `INTERMITTENT_ZERO_SHARE` of the previous `SCALE_DAYS` days cost
nothing (a tenant who uses LLMs a few days a week, in sessions) — breaks step 1: the level sits
between the zero days and the active ones, so every active day looks high and every idle day low.
There a day is judged against the active days instead: expected = the median cost of the previous
`SCALE_DAYS` days with usage, scale = 1.4826 × their MAD, and only `high` is flagged (an idle day is
normal), at twice a typical active day or more (a MAD of a few active days is noisy); with fewer
than `MIN_ACTIVE_DAYS` active days nothing is flagged.

A day is predicted once there are `MIN_HISTORY_DAYS` days since the first day with usage, and
scored once `MIN_SCALE_DAYS` earlier days were predicted. Today is in progress: it can be flagged
`high` (what is spent so far is a lower bound) but never `low`. No float: `Decimal` statistics
(`llmtally.robust`), integer nano-USD; the score is a Decimal with two places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

from llmtally.robust import MAD_TO_SIGMA, fit_seasonal_trend, mad, median, round_nanos

TRAILING_DAYS: Final = 28
FACTOR_DAYS: Final = 56
MIN_HISTORY_DAYS: Final = 14
MIN_SEASONAL_DAYS: Final = 21
#: Prediction errors of earlier days that set a day's scale: the last `SCALE_DAYS`, at least `MIN_SCALE_DAYS`.
SCALE_DAYS: Final = 28
MIN_SCALE_DAYS: Final = 7
THRESHOLD: Final = Decimal("3.5")
MIN_DEVIATION_NANOS: Final = 10_000_000  # $0.01
MIN_RELATIVE_DEVIATION: Final = Decimal("0.2")
SCALE_FLOOR_NANOS: Final = 1_000_000  # $0.001
#: Above this share of idle days in the previous `SCALE_DAYS`, usage is intermittent (see the module doc).
INTERMITTENT_ZERO_SHARE: Final = Decimal("0.4")
MIN_ACTIVE_DAYS: Final = 5
#: ...and a day is flagged only at this multiple of a typical active day (a MAD of a few active days is noisy).
INTERMITTENT_MIN_RATIO: Final = 2
#: Days of series needed before the first scanned day for it to be scored.
WARMUP_DAYS: Final = FACTOR_DAYS + SCALE_DAYS
METHOD: Final = (
    "expected = trailing 28-day Theil–Sen level × weekday factor (8 weeks of medians); "
    "score = (cost − expected) / (1.4826 × MAD of the previous 28 days' prediction errors); "
    "flagged when |score| ≥ 3.5 and |cost − expected| ≥ max($0.01, 20% of expected); "
    "intermittent usage (over 40% idle days): against the median and MAD of the active days, high only, "
    "at twice the median or more"
)
_SCORE_QUANTUM: Final = Decimal("0.01")

Direction = Literal["high", "low"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    day: date
    cost_nanos: int
    expected_nanos: int
    score: Decimal
    direction: Direction


@dataclass(frozen=True, slots=True)
class DayScore:
    """A scored day (flagged or not): what the detector saw."""

    day: date
    cost_nanos: int
    expected: Decimal
    scale: Decimal
    score: Decimal
    #: Judged against the active days of intermittent usage: only `high` can be flagged.
    intermittent: bool = False

    @property
    def deviation(self) -> Decimal:
        return self.cost_nanos - self.expected


def predict(costs: Sequence[int], first_day: date, t: int, started: int) -> Decimal | None:
    """Day t's expected cost from the days before it (None with under `MIN_HISTORY_DAYS` of history)."""
    low = max(started, t - FACTOR_DAYS)
    window = costs[low:t]
    if len(window) < MIN_HISTORY_DAYS:
        return None
    weekdays = [(first_day + timedelta(days=i)).weekday() for i in range(low, t)]
    model = fit_seasonal_trend(window, weekdays, trend_days=TRAILING_DAYS, seasonal=len(window) >= MIN_SEASONAL_DAYS)
    return model.expected(len(window), (first_day + timedelta(days=t)).weekday())


def score_days(costs: Sequence[int], first_day: date, scan: int) -> list[DayScore]:
    """Scores of the last `scan` days of `costs` (one per local day from `first_day`, oldest first).

    Feed `WARMUP_DAYS` more days than `scan` so the first scanned day can be scored.
    """
    if scan < 1:
        raise ValueError("scan at least one day")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in costs):
        raise ValueError("daily costs are non-negative integers (nano-USD)")
    costs = list(costs)
    started = next((i for i, c in enumerate(costs) if c), len(costs))
    first_scanned = max(0, len(costs) - scan)
    errors: dict[int, Decimal] = {}
    scores: list[DayScore] = []
    for t in range(max(started, first_scanned - SCALE_DAYS), len(costs)):
        expected = predict(costs, first_day, t, started)
        if expected is None:
            continue
        earlier = [errors[i] for i in range(t - SCALE_DAYS, t) if i in errors]
        errors[t] = costs[t] - expected
        if t < first_scanned or len(earlier) < MIN_SCALE_DAYS:
            continue
        day = first_day + timedelta(days=t)
        recent = costs[max(started, t - SCALE_DAYS) : t]
        active = [c for c in recent if c]
        if len(recent) - len(active) > INTERMITTENT_ZERO_SHARE * len(recent):
            if len(active) < MIN_ACTIVE_DAYS:
                continue
            typical = median(active)
            scale = max(MAD_TO_SIGMA * mad(active), Decimal(SCALE_FLOOR_NANOS))
            scores.append(DayScore(day, costs[t], typical, scale, (costs[t] - typical) / scale, intermittent=True))
            continue
        scale = max(MAD_TO_SIGMA * mad(earlier), Decimal(SCALE_FLOOR_NANOS))
        scores.append(DayScore(day, costs[t], expected, scale, (costs[t] - expected) / scale))
    return scores


def is_anomalous(scored: DayScore) -> bool:
    if scored.intermittent and (scored.score < 0 or scored.cost_nanos < INTERMITTENT_MIN_RATIO * scored.expected):
        return False
    floor = max(Decimal(MIN_DEVIATION_NANOS), MIN_RELATIVE_DEVIATION * scored.expected)
    return abs(scored.score) >= THRESHOLD and abs(scored.deviation) >= floor


def detect_anomalies(
    costs: Sequence[int], first_day: date, scan: int, *, last_is_partial: bool = True
) -> list[Anomaly]:
    """The anomalous days among the last `scan` days, oldest first.

    With `last_is_partial` the last day is today, still in progress: it is never flagged low.
    """
    last_day = first_day + timedelta(days=len(costs) - 1)
    out: list[Anomaly] = []
    for scored in score_days(costs, first_day, scan):
        if not is_anomalous(scored):
            continue
        direction: Direction = "high" if scored.score > 0 else "low"
        if direction == "low" and last_is_partial and scored.day == last_day:
            continue
        out.append(
            Anomaly(
                day=scored.day,
                cost_nanos=scored.cost_nanos,
                expected_nanos=round_nanos(scored.expected),
                score=scored.score.quantize(_SCORE_QUANTUM, ROUND_HALF_EVEN),
                direction=direction,
            )
        )
    return out


__all__ = [
    "METHOD",
    "TRAILING_DAYS",
    "WARMUP_DAYS",
    "Anomaly",
    "DayScore",
    "detect_anomalies",
    "is_anomalous",
    "score_days",
]
