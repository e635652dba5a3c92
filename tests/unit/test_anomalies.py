"""Anomalous days: injected spikes and dips are found on their dates; clean series (noise, trend,
weekday rhythm, weekday-only usage, near-zero spend) raise nothing; today is never flagged low."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.anomalies import (
    MIN_DEVIATION_NANOS,
    THRESHOLD,
    WARMUP_DAYS,
    detect_anomalies,
    is_anomalous,
    score_days,
)

USD = 1_000_000_000
FIRST = date(2026, 3, 2)  # a Monday
SCAN = 90
LENGTH = SCAN + WARMUP_DAYS


def seasonal(seed: int, *, level: int = 5 * USD, noise_percent: int = 8, trend_per_day: int = 0) -> list[int]:
    """Weekends at 40% of weekdays, uniform integer noise of ±`noise_percent`%, an optional linear trend."""
    rng = random.Random(seed)
    out = []
    for i in range(LENGTH):
        day = FIRST + timedelta(days=i)
        base = level + trend_per_day * i
        base = base * 2 // 5 if day.weekday() >= 5 else base
        out.append(base * (100 + rng.randint(-noise_percent, noise_percent)) // 100)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_seasonal_series_raises_nothing(seed: int) -> None:
    assert detect_anomalies(seasonal(seed), FIRST, SCAN) == []


@pytest.mark.parametrize("trend", [20_000_000, -20_000_000])
def test_a_steady_trend_raises_nothing(trend: int) -> None:
    assert detect_anomalies(seasonal(7, trend_per_day=trend, noise_percent=5), FIRST, SCAN) == []


def test_injected_spikes_and_dips_are_found_on_their_dates() -> None:
    # Given a seasonal series with a spike on a Wednesday and a dip (an outage) on a Tuesday
    costs = seasonal(3)
    spike, dip = LENGTH - 40, LENGTH - 20
    costs[spike] *= 4
    costs[dip] = 0
    # When scanned
    found = detect_anomalies(costs, FIRST, SCAN)
    # Then exactly those two days are flagged, high and low, with their figures
    assert [(a.day, a.direction) for a in found] == [
        (FIRST + timedelta(days=spike), "high"),
        (FIRST + timedelta(days=dip), "low"),
    ]
    high, low = found
    assert high.cost_nanos == costs[spike]
    assert high.score >= THRESHOLD
    assert low.cost_nanos == 0
    assert low.score <= -THRESHOLD
    assert abs(high.expected_nanos - costs[spike] // 4) < costs[spike] // 4 // 5
    assert high.score == high.score.quantize(Decimal("0.01"))


def test_weekday_only_usage_raises_nothing_on_weekends() -> None:
    rng = random.Random(11)
    costs = [
        0 if (FIRST + timedelta(days=i)).weekday() >= 5 else 2 * USD + rng.randint(-USD // 10, USD // 10)
        for i in range(LENGTH)
    ]
    assert detect_anomalies(costs, FIRST, SCAN) == []


def test_near_zero_spend_does_not_fire_on_a_fraction_of_a_cent() -> None:
    costs = [1_000 + (i % 3) for i in range(LENGTH)]  # a microdollar a day
    costs[-10] = 9_000_000  # $0.009: a high score (the scale's floor is $0.001), below the minimum deviation
    scored = {s.day: s for s in score_days(costs, FIRST, SCAN)}
    day = FIRST + timedelta(days=LENGTH - 10)
    assert scored[day].score > THRESHOLD
    assert detect_anomalies(costs, FIRST, SCAN) == []
    costs[-10] = MIN_DEVIATION_NANOS * 2
    assert [a.day for a in detect_anomalies(costs, FIRST, SCAN)] == [day]


def test_today_in_progress_is_never_low_but_can_be_high() -> None:
    costs = seasonal(5)
    costs[-1] = 0  # today has barely started
    today = FIRST + timedelta(days=LENGTH - 1)
    assert all(a.day != today for a in detect_anomalies(costs, FIRST, SCAN))
    assert [a.day for a in detect_anomalies(costs, FIRST, SCAN, last_is_partial=False)][-1] == today
    costs[-1] = 50 * USD
    assert [(a.day, a.direction) for a in detect_anomalies(costs, FIRST, SCAN)][-1] == (today, "high")


def test_a_new_user_is_not_scored_before_there_is_history() -> None:
    costs = [0] * 100 + seasonal(1)[:20]
    assert score_days(costs, FIRST, 120) == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        score_days([1, -1], FIRST, 2)
    with pytest.raises(ValueError, match="at least one"):
        score_days([1], FIRST, 0)


@given(st.integers(1, 10**6).map(lambda n: n * 1_000), st.integers(0, 6))
def test_a_constant_series_raises_nothing(level: int, shift: int) -> None:
    assert detect_anomalies([level] * LENGTH, FIRST + timedelta(days=shift), SCAN) == []


@given(st.lists(st.integers(0, 100 * USD), min_size=1, max_size=160), st.integers(1, 120))
def test_every_flagged_day_passes_both_cut_offs_and_lies_in_the_scan(costs: list[int], scan: int) -> None:
    scored = score_days(costs, FIRST, scan)
    first_scanned = FIRST + timedelta(days=max(0, len(costs) - scan))
    assert all(s.day >= first_scanned for s in scored)
    flagged = {a.day for a in detect_anomalies(costs, FIRST, scan, last_is_partial=False)}
    assert flagged == {s.day for s in scored if is_anomalous(s)}
    for s in scored:
        if s.day in flagged:
            assert abs(s.score) >= THRESHOLD
            assert abs(s.deviation) >= MIN_DEVIATION_NANOS


@given(st.integers(0, 10**6), st.sampled_from([2, 3, 5]))
def test_no_anomaly_on_a_clean_seasonal_series_of_any_level(seed: int, level_usd: int) -> None:
    assert detect_anomalies(seasonal(seed, level=level_usd * USD, noise_percent=3), FIRST, SCAN) == []


def test_intermittent_usage_flags_only_days_far_above_its_active_days() -> None:
    # A tenant active about three days in seven, in sessions of $0.02–$0.08, one day of $2
    rng = random.Random(5)
    costs = [rng.randrange(20_000_000, 80_000_000) if rng.random() < 0.4 else 0 for _ in range(200)]
    costs[180] = 2_000_000_000
    found = detect_anomalies(costs, date(2026, 5, 1), 120, last_is_partial=False)
    assert [(a.day, a.direction) for a in found] == [(date(2026, 5, 1) + timedelta(days=180), "high")]
