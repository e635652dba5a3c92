"""Cost insights for the HTTP API: month-end forecast, anomalous days, cheaper models per operation.

Plain functions over the rollups (never the raw entries): the forecast and the anomaly scan read
the zero-filled daily series (`llmtally.queries.daily_usage`), the recommendations the operation
dimension summed over the period (`llmtally.recommendations.operation_totals`). The statistics
live in `llmtally.forecast`, `llmtally.anomalies` and `llmtally.recommendations`; this module
validates parameters (400s via `BadRequestError`), reads, and shapes the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from llmtally.api.errors import BadRequestError
from llmtally.api.timeparams import parse_timezone
from llmtally.money import nanos_to_usd, usd_to_nanos

if TYPE_CHECKING:
    from llmtally.pricing import PriceBook
    from llmtally.repositories.rollups import RollupRepository

FORECAST_PARAMS: Final = frozenset({"tz"})
ANOMALIES_PARAMS: Final = frozenset({"days", "tz"})
RECOMMENDATIONS_PARAMS: Final = frozenset({"days"})
ANOMALY_DAYS: Final = (14, 400)
DEFAULT_ANOMALY_DAYS: Final = 90
RECOMMENDATION_DAYS: Final = (1, 90)
DEFAULT_RECOMMENDATION_DAYS: Final = 30


def _check_days(days: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise BadRequestError(f"days: must be between {low} and {high}")


class InsightsService:
    """Forecast, anomalies and recommendations for one tenant at a time (the caller is already authorized)."""

    def __init__(self, rollups: Callable[[], RollupRepository], price_book: Callable[[], PriceBook]) -> None:
        self._rollups = rollups
        self._price_book = price_book

    def daily_costs(self, user_id: str, days: int, tz: str, today: date) -> list[int]:
        """Nano-USD per local day for the `days` days ending `today` (oldest first), zero-filled.

        Read as consecutive series of at most `MAX_SERIES_DAYS` days each (the anomaly scan needs more).
        """
        from llmtally.queries import MAX_SERIES_DAYS, daily_usage

        costs: list[int] = []
        end = today
        remaining = days
        repository = self._rollups()
        while remaining > 0:
            chunk = min(remaining, MAX_SERIES_DAYS)
            series = daily_usage(user_id, chunk, tz, today=end, repository=repository)
            costs[:0] = [usd_to_nanos(row.cost_usd) for row in series.days]
            end -= timedelta(days=chunk)
            remaining -= chunk
        return costs

    def forecast(self, user_id: str, tz: str | None, *, now: datetime | None = None) -> dict[str, Any]:
        """The current local month: spend so far, month-end forecast and an ~80% range."""
        from llmtally.forecast import SERIES_DAYS, forecast_month
        from llmtally.queries import local_midnight

        zone = parse_timezone(tz)
        today = (now or datetime.now(UTC)).astimezone(zone).date()
        result = forecast_month(self.daily_costs(user_id, SERIES_DAYS, zone.key, today), today)
        return {
            "user_id": user_id,
            "timezone": zone.key,
            "period": result.period,
            "period_start": local_midnight(result.period_start, zone),
            "period_end": local_midnight(result.period_end, zone),
            "days_elapsed": result.days_elapsed,
            "days_in_period": result.days_in_period,
            "month_to_date_usd": nanos_to_usd(result.month_to_date_nanos),
            "forecast_usd": nanos_to_usd(result.forecast_nanos),
            "low_usd": nanos_to_usd(result.low_nanos),
            "high_usd": nanos_to_usd(result.high_nanos),
            "method": result.method,
        }

    def anomalies(self, user_id: str, days: int, tz: str | None, *, now: datetime | None = None) -> dict[str, Any]:
        """Unusual local days among the `days` days ending today (today: only a `high` can be flagged)."""
        from llmtally.anomalies import METHOD, WARMUP_DAYS, detect_anomalies

        _check_days(days, ANOMALY_DAYS)
        zone = parse_timezone(tz)
        today = (now or datetime.now(UTC)).astimezone(zone).date()
        total = days + WARMUP_DAYS
        costs = self.daily_costs(user_id, total, zone.key, today)
        found = detect_anomalies(costs, today - timedelta(days=total - 1), days)
        return {
            "user_id": user_id,
            "timezone": zone.key,
            "days": days,
            "method": METHOD,
            "anomalies": [
                {
                    "date": a.day,
                    "cost_usd": nanos_to_usd(a.cost_nanos),
                    "expected_usd": nanos_to_usd(a.expected_nanos),
                    "score": a.score,
                    "direction": a.direction,
                }
                for a in found
            ],
        }

    def recommendations(self, user_id: str, days: int, *, now: datetime | None = None) -> dict[str, Any]:
        """Per operation type: the last `days` UTC days' token mix re-priced on cheaper current models."""
        from llmtally.recommendations import current_models, operation_totals, recommend

        _check_days(days, RECOMMENDATION_DAYS)
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        totals = operation_totals(user_id, first, today, "UTC", repository=self._rollups())
        found = recommend(totals, current_models(self._price_book()))
        return {
            "user_id": user_id,
            "days": days,
            "operations": [
                {
                    "operation_type": r.operation_type,
                    "requests": r.counters.requests,
                    "cost_usd": nanos_to_usd(r.counters.cost_nanos),
                    "input_tokens": r.counters.input_tokens,
                    "cache_read_tokens": r.counters.cache_read_tokens,
                    "cache_write_tokens": r.counters.cache_write_tokens,
                    "output_tokens": r.counters.output_tokens,
                    "reasoning_tokens": r.counters.reasoning_tokens,
                    "cache_hit_rate": r.cache_hit_rate,
                    "candidates": [
                        {
                            "provider": c.provider,
                            "model": c.model,
                            "cost_usd": nanos_to_usd(c.cost_nanos),
                            "saving_usd": nanos_to_usd(c.saving_nanos),
                            "saving_percent": c.saving_percent,
                        }
                        for c in r.candidates
                    ],
                }
                for r in found
            ],
        }
