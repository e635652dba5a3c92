"""Forecast and anomaly quality on synthetic daily cost series with known answers.

    .venv/bin/python -m bench insights

Series (integer nano-USD, integer noise, no float) are drawn per seed from five scenarios — flat,
trend up (+1%/day of the starting level), trend down (−0.8%/day), strong weekday rhythm (weekends at
30%) — each with ±15% noise and injected spikes (×2.5–5) and dips (×0–0.3) on about 3% of days —
and intermittent (sessions on ~40% of days, ±50% apart, spikes ×3–6 on ~3% of days).

- Forecast: at day 7, 14 and 21 of a month (today half spent), the month-end total is forecast
  and compared with the true total: MAPE, and how often the true total falls in [low, high]
  (the range aims at 80%). Baseline: the naive run rate, month-to-date of the completed days ÷
  those days × days in the month (today's half day left out, which is fairer to it).
- Anomalies: 116 scanned days after the detector's 84-day warm-up; flagged days against the
  injected ones: precision, recall, F1. Baseline: |x − mean| > 3σ over the scanned window.

Nothing is asserted (docs/BENCHMARKS.md records the figures).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from llmtally.anomalies import WARMUP_DAYS, detect_anomalies
from llmtally.forecast import HISTORY_DAYS, forecast_month, month_bounds

USD = 1_000_000_000
SEEDS = 40
SCENARIOS = ("flat", "trend up", "trend down", "weekday rhythm", "intermittent")
CUTOFFS = (7, 14, 21)
SCAN = 116


@dataclass
class Synthetic:
    costs: list[int]
    anomalies: set[int] = field(default_factory=set)


def synthesize(rng: random.Random, scenario: str, first: date, days: int, *, inject: bool = True) -> Synthetic:
    level = rng.randint(2, 20) * USD
    weekend_percent = 30 if scenario == "weekday rhythm" else rng.choice((70, 100))
    slope_bp = {"trend up": 100, "trend down": -80}.get(scenario, 0)  # basis points of the level per day
    out = Synthetic([])
    for i in range(days):
        day = first + timedelta(days=i)
        base = level + level * slope_bp * i // 10_000
        base = max(base, level // 20)
        if day.weekday() >= 5:
            base = base * weekend_percent // 100
        noise = rng.randint(-15, 15)
        cost = base * (100 + noise) // 100
        if scenario == "intermittent":  # sessions on ~40% of days, ±50% apart; only spikes are news
            cost = base * rng.randint(50, 150) // 100 if rng.randint(1, 100) <= 40 else 0
            if inject and rng.randint(1, 100) <= 3:
                cost = base * rng.randint(300, 600) // 100
                out.anomalies.add(i)
            out.costs.append(cost)
            continue
        if inject and rng.randint(1, 100) <= 3:
            spike = rng.randint(1, 2) == 1
            cost = cost * (rng.randint(250, 500) if spike else rng.randint(0, 30)) // 100
            out.anomalies.add(i)
        out.costs.append(cost)
    return out


def pct(value: Decimal) -> str:
    return f"{value * 100:.1f}%"


def bench_forecast() -> None:
    errors: dict[tuple[str, int], list[Decimal]] = {}
    naive_errors: dict[tuple[str, int], list[Decimal]] = {}
    covered: dict[tuple[str, int], int] = {}
    methods: dict[str, int] = {}
    started = time.perf_counter()
    runs = 0
    for seed in range(SEEDS):
        for scenario in SCENARIOS:
            rng = random.Random(seed * 100 + SCENARIOS.index(scenario))
            month_start = date(2026, 1 + seed % 12, 1)
            _, _, days_in = month_bounds(month_start)
            first = month_start - timedelta(days=HISTORY_DAYS)
            series = synthesize(rng, scenario, first, HISTORY_DAYS + days_in)
            truth = sum(series.costs[HISTORY_DAYS:])
            for cutoff in CUTOFFS:
                today = month_start + timedelta(days=cutoff - 1)
                upto = HISTORY_DAYS + cutoff  # index after today
                seen = series.costs[:upto]
                seen[-1] //= 2  # today is half spent
                result = forecast_month(seen, today)
                runs += 1
                methods[result.method] = methods.get(result.method, 0) + 1
                completed = sum(series.costs[HISTORY_DAYS : upto - 1])
                naive = Decimal(completed) / (cutoff - 1) * days_in
                key = (scenario, cutoff)
                errors.setdefault(key, []).append(abs(Decimal(result.forecast_nanos - truth)) / truth)
                naive_errors.setdefault(key, []).append(abs(naive - truth) / truth)
                covered[key] = covered.get(key, 0) + (result.low_nanos <= truth <= result.high_nanos)
    elapsed = time.perf_counter() - started
    print(
        f"forecast: {runs} forecasts ({SEEDS} seeds × {len(SCENARIOS)} scenarios × days {CUTOFFS}), "
        f"{elapsed / runs * 1000:.2f} ms each; methods {methods}"
    )
    print(f"  {'scenario':<16}{'day':>4}{'MAPE':>9}{'naive':>9}{'ratio':>8}{'coverage':>10}")
    for cutoff in CUTOFFS:
        overall: list[Decimal] = []
        overall_naive: list[Decimal] = []
        overall_cover = 0
        for scenario in SCENARIOS:
            key = (scenario, cutoff)
            mape = sum(errors[key], Decimal(0)) / len(errors[key])
            naive = sum(naive_errors[key], Decimal(0)) / len(naive_errors[key])
            overall += errors[key]
            overall_naive += naive_errors[key]
            overall_cover += covered[key]
            print(
                f"  {scenario:<16}{cutoff:>4}{pct(mape):>9}{pct(naive):>9}{mape / naive:>8.2f}"
                f"{pct(Decimal(covered[key]) / len(errors[key])):>10}"
            )
        mape, naive = sum(overall, Decimal(0)) / len(overall), sum(overall_naive, Decimal(0)) / len(overall_naive)
        print(
            f"  {'all':<16}{cutoff:>4}{pct(mape):>9}{pct(naive):>9}{mape / naive:>8.2f}"
            f"{pct(Decimal(overall_cover) / len(overall)):>10}"
        )


def naive_flags(costs: list[int]) -> set[int]:
    """|x − mean| > 3σ over the window (population σ, Decimal)."""
    n = len(costs)
    mean = Decimal(sum(costs)) / n
    sigma = (sum(((Decimal(c) - mean) ** 2 for c in costs), Decimal(0)) / n).sqrt()
    return {i for i, c in enumerate(costs) if abs(Decimal(c) - mean) > 3 * sigma}


def scores(flagged: set[int], truth: set[int]) -> tuple[int, int, int]:
    return len(flagged & truth), len(flagged - truth), len(truth - flagged)


def f1(tp: int, fp: int, fn: int) -> tuple[Decimal, Decimal, Decimal]:
    precision = Decimal(tp) / (tp + fp) if tp + fp else Decimal(0)
    recall = Decimal(tp) / (tp + fn) if tp + fn else Decimal(0)
    both = 2 * precision * recall / (precision + recall) if precision + recall else Decimal(0)
    return precision, recall, both


def bench_anomalies() -> None:
    total = WARMUP_DAYS + SCAN
    ours: dict[str, list[int]] = {s: [0, 0, 0] for s in SCENARIOS}
    base: dict[str, list[int]] = {s: [0, 0, 0] for s in SCENARIOS}
    started = time.perf_counter()
    for seed in range(SEEDS):
        for scenario in SCENARIOS:
            rng = random.Random(10_000 + seed * 100 + SCENARIOS.index(scenario))
            first = date(2026, 1, 1) + timedelta(days=seed)
            series = synthesize(rng, scenario, first, total)
            truth = {i - WARMUP_DAYS for i in series.anomalies if i >= WARMUP_DAYS}
            found = detect_anomalies(series.costs, first, SCAN, last_is_partial=False)
            flagged = {(a.day - first).days - WARMUP_DAYS for a in found}
            for counts, marks in ((ours[scenario], flagged), (base[scenario], naive_flags(series.costs[WARMUP_DAYS:]))):
                for index, value in enumerate(scores(marks, truth)):
                    counts[index] += value
    elapsed = time.perf_counter() - started
    print(
        f"\nanomalies: {SEEDS * len(SCENARIOS)} series × {SCAN} scanned days, "
        f"{elapsed / (SEEDS * len(SCENARIOS)) * 1000:.0f} ms per series"
    )
    print(
        f"  {'scenario':<16}{'injected':>9}{'precision':>11}{'recall':>8}{'F1':>7}   "
        f"{'3σ prec.':>9}{'recall':>8}{'F1':>7}"
    )
    all_ours, all_base = [0, 0, 0], [0, 0, 0]
    for scenario in [*SCENARIOS, "all"]:
        if scenario == "all":
            mine, theirs = all_ours, all_base
        else:
            mine, theirs = ours[scenario], base[scenario]
            all_ours = [a + b for a, b in zip(all_ours, mine, strict=True)]
            all_base = [a + b for a, b in zip(all_base, theirs, strict=True)]
        p, r, f = f1(*mine)
        bp, br, bf = f1(*theirs)
        print(
            f"  {scenario:<16}{mine[0] + mine[2]:>9}{pct(p):>11}{pct(r):>8}{f:>7.2f}   "
            f"{pct(bp):>9}{pct(br):>8}{bf:>7.2f}"
        )


def main() -> None:
    bench_forecast()
    bench_anomalies()


if __name__ == "__main__":
    main()
