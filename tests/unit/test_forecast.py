"""Month-end forecast: known answers on synthetic series (flat, trend, weekday rhythm, spikes, short
histories) and properties on any series (the range holds the forecast, nothing below month-to-date)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.forecast import SERIES_DAYS, forecast_month, month_bounds
from llmtally.robust import median, quantile, theil_sen, weekday_factors

USD = 1_000_000_000
TODAY = date(2026, 11, 14)  # a Saturday; 30 days in November


def series_ending(today: date, length: int, value: Callable[[date], int]) -> list[int]:
    """`length` days ending `today`, day d's cost `value(d)`."""
    return [value(today - timedelta(days=length - 1 - i)) for i in range(length)]


def month_sum(today: date, value: Callable[[date], int]) -> int:
    start, end, _ = month_bounds(today)
    return sum(value(start + timedelta(days=i)) for i in range((end - start).days))


# -- robust helpers ---------------------------------------------------------------------------


def test_median_quantile_and_theil_sen_on_known_values() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == Decimal("2.5")
    assert quantile([0, 10], Decimal("0.1")) == 1
    assert quantile([5], Decimal("0.9")) == 5
    line = theil_sen([(t, Decimal(10 + 3 * t)) for t in range(10)] + [(4, Decimal(1000))])
    assert (line.intercept, line.slope) == (Decimal(10), Decimal(3))  # the outlier moves neither
    with pytest.raises(ValueError, match="empty"):
        median([])


def test_weekday_factors_recover_a_rhythm_and_ignore_a_spike() -> None:
    # Given five weeks with weekends at half the weekday level, and one spiked Wednesday
    start = date(2026, 1, 5)  # a Monday
    days = [start + timedelta(days=i) for i in range(35)]
    values = [500 if d.weekday() >= 5 else 1000 for d in days]
    values[16] = 50_000
    # When the factors are estimated
    factors = weekday_factors(values, [d.weekday() for d in days])
    # Then they are the rhythm (normalised to average 1): weekdays 1000/(6000/7), weekends half that
    assert factors is not None
    assert [round(f, 6) for f in factors] == [round(Decimal(7000) / 6000, 6)] * 5 + [round(Decimal(3500) / 6000, 6)] * 2


# -- known answers --------------------------------------------------------------------------------


def test_a_constant_series_forecasts_rate_times_days_with_a_zero_width_range() -> None:
    costs = [2 * USD] * SERIES_DAYS
    result = forecast_month(costs, TODAY)
    assert result.method == "seasonal_trend"
    assert result.month_to_date_nanos == 14 * 2 * USD
    assert result.forecast_nanos == result.low_nanos == result.high_nanos == 30 * 2 * USD
    assert (result.period, result.days_elapsed, result.days_in_period) == ("2026-11", 14, 30)
    assert (result.period_start, result.period_end) == (date(2026, 11, 1), date(2026, 12, 1))


def test_todays_partial_day_counts_as_actual_plus_the_expected_rest() -> None:
    # Today has only a quarter of a normal day so far: the forecast still expects a full day
    costs = [4 * USD] * (SERIES_DAYS - 1) + [USD]
    result = forecast_month(costs, TODAY)
    assert result.month_to_date_nanos == 13 * 4 * USD + USD
    assert result.forecast_nanos == 30 * 4 * USD
    # A day already above the expectation counts as it is
    busy = forecast_month([4 * USD] * (SERIES_DAYS - 1) + [9 * USD], TODAY)
    assert busy.forecast_nanos == 29 * 4 * USD + 9 * USD


def test_a_linear_trend_is_extrapolated() -> None:
    def cost(day: date) -> int:
        return USD + (day - date(2026, 9, 1)).days * 10_000_000  # +$0.01 a day

    result = forecast_month(series_ending(TODAY, SERIES_DAYS, cost), TODAY)
    assert result.method == "seasonal_trend"
    assert abs(result.forecast_nanos - month_sum(TODAY, cost)) <= 100  # nano-USD of Decimal rounding
    assert result.high_nanos - result.low_nanos <= 100


def test_a_weekday_rhythm_is_followed() -> None:
    def cost(day: date) -> int:
        return USD if day.weekday() >= 5 else 3 * USD

    result = forecast_month(series_ending(TODAY, SERIES_DAYS, cost), TODAY)
    assert abs(result.forecast_nanos - month_sum(TODAY, cost)) <= 100
    # The naive run rate (month-to-date ÷ 14 × 30) is off by $0.86 here
    naive = result.month_to_date_nanos * 30 // 14
    assert abs(naive - month_sum(TODAY, cost)) > USD // 2


def test_a_spike_in_the_history_barely_moves_the_forecast() -> None:
    costs = [USD] * SERIES_DAYS
    costs[-5] = 500 * USD  # five days ago (this month): it is spend, so month-to-date has it
    result = forecast_month(costs, TODAY)
    expected = 30 * USD + 499 * USD
    assert abs(result.forecast_nanos - expected) <= expected // 100
    assert result.low_nanos <= result.forecast_nanos <= result.high_nanos


def test_short_history_falls_back_to_a_run_rate_with_a_wide_range() -> None:
    # Five completed days of $1 (from the 9th), today $0.50 so far
    costs = [0] * 20 + [USD] * 5 + [USD // 2]
    result = forecast_month(costs, TODAY)
    assert result.method == "run_rate"
    assert result.month_to_date_nanos == 5 * USD + USD // 2
    assert result.forecast_nanos == 5 * USD + USD + 16 * USD
    known = result.month_to_date_nanos
    assert result.low_nanos == known + (result.forecast_nanos - known) // 2
    assert result.high_nanos == known + 2 * (result.forecast_nanos - known)


def test_first_day_and_no_usage() -> None:
    first = forecast_month([0] * 10 + [3 * USD], TODAY)
    assert first.method == "first_day"
    assert (first.month_to_date_nanos, first.forecast_nanos) == (3 * USD, 3 * USD * 17)
    assert first.low_nanos == 3 * USD
    none = forecast_month([0] * 10, TODAY)
    assert none.method == "none"
    assert none.forecast_nanos == none.low_nanos == none.high_nanos == 0


def test_month_bounds_and_the_first_of_the_month() -> None:
    assert month_bounds(date(2028, 2, 10)) == (date(2028, 2, 1), date(2028, 3, 1), 29)
    result = forecast_month([USD] * SERIES_DAYS, date(2026, 12, 1))
    assert result.month_to_date_nanos == USD  # today only: November is another period
    assert result.forecast_nanos == 31 * USD


def test_bad_series_are_refused() -> None:
    with pytest.raises(ValueError, match="today"):
        forecast_month([], TODAY)
    with pytest.raises(ValueError, match="non-negative"):
        forecast_month([1, -1], TODAY)


# -- properties -----------------------------------------------------------------------------------

days_strategy = st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31))
costs_strategy = st.lists(st.integers(0, 50 * USD), min_size=1, max_size=SERIES_DAYS)


@given(costs_strategy, days_strategy)
def test_the_range_holds_the_forecast_and_nothing_is_below_month_to_date(costs: list[int], today: date) -> None:
    result = forecast_month(costs, today)
    month_days = costs[-today.day :]
    assert result.month_to_date_nanos == sum(month_days)
    assert result.month_to_date_nanos <= result.low_nanos <= result.forecast_nanos <= result.high_nanos
    assert result.days_elapsed == today.day
    assert result.period_start <= today < result.period_end


@given(st.integers(1, 100 * USD), days_strategy, st.integers(1, SERIES_DAYS))
def test_a_constant_rate_forecasts_rate_times_days(rate: int, today: date, length: int) -> None:
    costs = [rate] * length
    result = forecast_month(costs, today)
    if length == 1:
        assert result.method == "first_day"
        return
    # Days before the series count as zero: the month-to-date covers only what the series holds
    month_before = min(today.day - 1, length - 1)
    assert result.forecast_nanos == rate * (month_before + 1 + result.days_in_period - today.day)


def test_intermittent_usage_is_forecast_at_its_mean_day() -> None:
    # Sessions every third day at $0.30 for 8 weeks: the mean day is $0.10, whatever the last session
    today = date(2026, 11, 15)
    costs = [300_000_000 if i % 3 == 0 else 0 for i in range(56)] + [0]
    result = forecast_month(costs, today)
    assert result.method == "intermittent"
    completed_mtd = sum(costs[-15:-1])
    mean_day = Decimal(sum(costs[:-1])) / 56
    expected = completed_mtd + mean_day * (30 - 15 + 1)  # today (nothing yet) counts at the mean day
    assert abs(result.forecast_nanos - expected) <= 1
    assert result.low_nanos < result.forecast_nanos < result.high_nanos
