"""Month-end spend forecast with an ~80% range, from a user's daily costs in their timezone.

The period is the local calendar month: it starts at local midnight of the 1st and ends at local
midnight of the next 1st. Input is the daily cost series (integer nano-USD per local day, oldest
first) whose last element is *today*, which is still in progress.

Method (`seasonal_trend`, with at least `MIN_TREND_DAYS` completed days of history):

1. History: the last `HISTORY_DAYS` (8 weeks) *completed* days, leading zero days dropped (the user
   had not started yet). Today is never part of the model: a half day is not a day.
2. Weekday factors (with at least `MIN_SEASONAL_DAYS` days): each day's ratio to its centred 7-day
   mean, median per weekday, normalised to average 1 (`llmtally.robust.weekday_factors`).
3. Level and trend: a Theil–Sen line through the deseasonalised last `TREND_DAYS` (4 weeks) days.
4. Expected cost of a future day = max(0, line) × its weekday factor. The forecast is
   month-to-date of completed days + max(today's actual so far, today's expected) + the expected
   costs of the days after today. Today's actual is a lower bound of today's total, so the
   forecast is never below month-to-date.
5. Range: the 5% and 95% quantiles of the model's one-day-ahead prediction errors over the last
   4 weeks (each day predicted from the days before it, as the anomaly detector does), scaled to
   the sum of the h remaining days as for a regression prediction: × h × √(1/h + 1/m + c²/Sxx),
   where m is the fitted days, c the distance between the fitted window's centre and the
   horizon's, and Sxx = m(m²−1)/12 — day-to-day noise averages out over the horizon (the 1/h term)
   while an error in the level (1/m) or the slope (c²/Sxx) does not. The low end is never below
   month-to-date. The 5/95% per-day quantiles (not 10/90%) were chosen on `python -m bench insights`:
   the month-end total then falls in the range about 80% of the time (79% at days 7/14/21);
   spikes still to come are not modelled, and 10/90% covered 64–66%.

Short histories fall back to simpler methods with a wide range:

- `run_rate` (1 to 13 completed days): the mean completed day; remaining spend between half of and
  twice the projection (or the spread of the observed days, whichever is wider).
- `first_day` (no completed day with usage, spend today): today's spend so far taken as the daily
  rate — a lower bound, the day is not over; range from "nothing more" to three times the projection.
- `none` (no usage at all): zeros.

Intermittent usage (`intermittent`: more than 40% idle days in the last 4 weeks — sessions a few
days a week) defeats a line and weekday factors, which chase the last sessions (on the bench the
trend forecast was 1.3–1.7× worse than the naive run rate there). Its remaining days are forecast
at the mean completed day of the last 8 weeks, the range from the days' standard deviation: the sum
of h days ± 1.2816 × sd × √h (the central 80% of a sum of many days).

No float anywhere: money is integer nano-USD, statistics are `Decimal` (see `llmtally.robust`);
figures are rounded half to even to nano-USD at the end.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Final, Literal

from llmtally.robust import fit_seasonal_trend, quantile, round_nanos

HISTORY_DAYS: Final = 56
TREND_DAYS: Final = 28
MIN_TREND_DAYS: Final = 14
MIN_SEASONAL_DAYS: Final = 21
#: Days of series the forecast needs: the history, then today.
SERIES_DAYS: Final = HISTORY_DAYS + 1
#: Fewest one-day-ahead prediction errors the range is built on (else the fit's residuals).
MIN_ERRORS: Final = 7
LOW_QUANTILE: Final = Decimal("0.05")
HIGH_QUANTILE: Final = Decimal("0.95")
#: `run_rate`: the remaining spend's range is at least [½, 2] × the projection.
RUN_RATE_LOW: Final = Decimal("0.5")
RUN_RATE_HIGH: Final = Decimal(2)
#: `first_day`: the range's high end is this many times the projection.
FIRST_DAY_HIGH: Final = 3

Method = Literal["seasonal_trend", "trend", "intermittent", "run_rate", "first_day", "none"]
#: More idle days than this share of the last `TREND_DAYS` completed days: `intermittent`.
INTERMITTENT_ZERO_SHARE: Final = Decimal("0.4")
#: The standard normal's 90% quantile: an ~80% central range for a sum of many days.
Z_80: Final = Decimal("1.2816")


@dataclass(frozen=True, slots=True)
class MonthForecast:
    """The current local month's spend so far and forecast, in integer nano-USD."""

    period_start: date
    period_end: date  # the 1st of the next month (exclusive)
    days_elapsed: int  # today included
    days_in_period: int
    month_to_date_nanos: int
    forecast_nanos: int
    low_nanos: int
    high_nanos: int
    method: Method

    @property
    def period(self) -> str:
        return f"{self.period_start.year:04d}-{self.period_start.month:02d}"


def month_bounds(today: date) -> tuple[date, date, int]:
    """(first day, first day of the next month, days in the month) of the month holding `today`."""
    start = today.replace(day=1)
    days = calendar.monthrange(today.year, today.month)[1]
    return start, start + timedelta(days=days), days


def prediction_errors(history: Sequence[int], weekdays: Sequence[int], count: int) -> list[Decimal]:
    """One-day-ahead errors of the same model over the last `count` days (each predicted from the days
    before it), or the fit's in-sample residuals when fewer than `MIN_ERRORS` days can be predicted.

    In-sample residuals of a line and seven factors fitted to those very days understate the real
    error (the fit hugs its data); the range built on them covered about half of the true totals.
    """
    n = len(history)
    errors: list[Decimal] = []
    for t in range(max(MIN_TREND_DAYS, n - count), n):
        window = history[max(0, t - HISTORY_DAYS) : t]
        fitted = fit_seasonal_trend(
            window,
            weekdays[max(0, t - HISTORY_DAYS) : t],
            trend_days=TREND_DAYS,
            seasonal=len(window) >= MIN_SEASONAL_DAYS,
        )
        errors.append(history[t] - fitted.expected(len(window), weekdays[t]))
    if len(errors) >= MIN_ERRORS:
        return errors
    model = fit_seasonal_trend(history, weekdays, trend_days=TREND_DAYS, seasonal=n >= MIN_SEASONAL_DAYS)
    return [Decimal(history[t]) - model.expected(t, weekdays[t]) for t in range(n - count, n)]


def forecast_month(costs: Sequence[int], today: date) -> MonthForecast:
    """The month-end forecast from daily costs (nano-USD, oldest first, the last one is today so far).

    Days missing before the series' start count as zero. ValueError for an empty series or a
    negative cost.
    """
    if not costs:
        raise ValueError("the series must end with today's cost")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in costs):
        raise ValueError("daily costs are non-negative integers (nano-USD)")
    start, end, days_in = month_bounds(today)
    today_actual = costs[-1]
    completed = list(costs[:-1])
    elapsed_completed = today.day - 1
    mtd_completed = sum(completed[-elapsed_completed:]) if elapsed_completed else 0
    known = mtd_completed + today_actual
    future_days = days_in - today.day

    history = completed[-HISTORY_DAYS:]
    while history and history[0] == 0:
        history.pop(0)
    n = len(history)

    def answer(forecast: Decimal, low: Decimal, high: Decimal, method: Method) -> MonthForecast:
        value = max(known, round_nanos(forecast))
        return MonthForecast(
            period_start=start,
            period_end=end,
            days_elapsed=today.day,
            days_in_period=days_in,
            month_to_date_nanos=known,
            forecast_nanos=value,
            low_nanos=min(value, max(known, round_nanos(low))),
            high_nanos=max(value, round_nanos(high)),
            method=method,
        )

    if n == 0:
        if today_actual == 0:
            return answer(Decimal(known), Decimal(known), Decimal(known), "none")
        projected = Decimal(today_actual * future_days)
        return answer(known + projected, Decimal(known), known + FIRST_DAY_HIGH * projected, "first_day")

    if n < MIN_TREND_DAYS:
        rate = Decimal(sum(history)) / n
        today_part = max(Decimal(today_actual), rate)
        forecast = mtd_completed + today_part + rate * future_days
        uncertain = forecast - known
        if rate == 0:
            return answer(forecast, forecast, forecast, "run_rate")
        low_factor = min(RUN_RATE_LOW, Decimal(min(history)) / rate)
        high_factor = max(RUN_RATE_HIGH, Decimal(max(history)) / rate)
        return answer(forecast, known + uncertain * low_factor, known + uncertain * high_factor, "run_rate")

    recent = history[-TREND_DAYS:]
    if sum(1 for c in recent if c == 0) > INTERMITTENT_ZERO_SHARE * len(recent):
        rate = Decimal(sum(history)) / n
        spread = (sum(((Decimal(c) - rate) ** 2 for c in history), Decimal(0)) / n).sqrt()
        forecast = mtd_completed + max(Decimal(today_actual), rate) + rate * future_days
        margin = Z_80 * spread * Decimal(future_days + 1).sqrt()
        return answer(forecast, forecast - margin, forecast + margin, "intermittent")

    weekdays = [(today - timedelta(days=n - i)).weekday() for i in range(n)]
    seasonal = n >= MIN_SEASONAL_DAYS
    model = fit_seasonal_trend(history, weekdays, trend_days=TREND_DAYS, seasonal=seasonal)
    method: Method = "seasonal_trend" if model.factors is not None else "trend"

    def expected(offset: int) -> Decimal:  # offset 0 is today
        return model.expected(n + offset, (today + timedelta(days=offset)).weekday())

    today_part = max(Decimal(today_actual), expected(0))
    forecast = mtd_completed + today_part + sum((expected(k) for k in range(1, future_days + 1)), Decimal(0))

    m = min(n, TREND_DAYS)
    residuals = prediction_errors(history, weekdays, m)
    q_low = min(Decimal(0), quantile(residuals, LOW_QUANTILE))
    q_high = max(Decimal(0), quantile(residuals, HIGH_QUANTILE))
    h = future_days + 1
    centre_gap = Decimal(future_days + m + 1) / 2
    sxx = Decimal(m * (m * m - 1)) / 12
    scale = h * (Decimal(1) / h + Decimal(1) / m + centre_gap * centre_gap / sxx).sqrt()
    return answer(forecast, forecast + q_low * scale, forecast + q_high * scale, method)


__all__ = ["HISTORY_DAYS", "SERIES_DAYS", "TREND_DAYS", "MonthForecast", "forecast_month", "month_bounds"]
