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
from zoneinfo import ZoneInfo

from llmtally.api.errors import BadRequestError
from llmtally.api.timeparams import parse_timezone
from llmtally.money import nanos_to_usd, usd_to_nanos

if TYPE_CHECKING:
    from llmtally.pricing import PriceBook
    from llmtally.queries import Filter
    from llmtally.repositories.cardinality import TagRegistry
    from llmtally.repositories.rollups import RollupRepository

FORECAST_PARAMS: Final = frozenset({"tz", "where"})
ANOMALIES_PARAMS: Final = frozenset({"days", "tz", "where"})
RECOMMENDATIONS_PARAMS: Final = frozenset({"days", "where"})
ANOMALY_DAYS: Final = (14, 400)
DEFAULT_ANOMALY_DAYS: Final = 90
RECOMMENDATION_DAYS: Final = (1, 90)
DEFAULT_RECOMMENDATION_DAYS: Final = 30


def _touches(day: date, tz: str, months: set[str]) -> bool:
    """Whether local `day` in `tz` overlaps one of the UTC `months` (`YYYY-MM`)."""
    from llmtally.queries import local_midnight, utc_months

    zone = ZoneInfo(tz)
    low, high = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    return not months.isdisjoint(utc_months(low, high))


def _check_days(days: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise BadRequestError(f"days: must be between {low} and {high}")


class InsightsService:
    """Forecast, anomalies and recommendations for one tenant at a time (the caller is already authorized)."""

    def __init__(
        self,
        rollups: Callable[[], RollupRepository],
        price_book: Callable[[], PriceBook],
        *,
        tags: Callable[[], TagRegistry] | None = None,
    ) -> None:
        self._rollups = rollups
        self._price_book = price_book
        self._tags = tags

    def _tag_registry(self) -> TagRegistry:
        if self._tags is not None:
            return self._tags()
        from llmtally.repositories.cardinality import TagRegistry

        return TagRegistry()

    @staticmethod
    def _where(where: str | None) -> Filter | None:
        from llmtally.queries import Filter

        return Filter.parse(where) if where else None

    def _scope(self, user_id: str, where: Filter | None, low: datetime, high: datetime) -> dict[str, Any]:
        """What an insight under `where` covers: the filter, the UTC months in [low, high) in which a
        tag value was past its bound (its calls then rolled up as `(other)`, missing from the value's
        figures), and a note saying so — never a silent whole-account or partial figure."""
        from llmtally.events import OTHER_TAG_VALUE
        from llmtally.queries import utc_months
        from llmtally.rollups import tag_key_of

        scope: dict[str, Any] = {"where": where.as_dict() if where else None, "folded_months": [], "note": None}
        key = tag_key_of(where.dimension) if where else None
        if where is None or key is None:
            return scope
        if where.value == OTHER_TAG_VALUE:
            scope["note"] = (
                f"(other) is the {key} values past the tenant's monthly bound: a different set of values each "
                "UTC month, so its history is not one value's"
            )
            return scope
        folded = self._tag_registry().months_folded(user_id, key, where.value, utc_months(low, high))
        if folded:
            scope["folded_months"] = folded
            scope["note"] = (
                f"{key} {where.value!r} was past the tag's monthly bound in {', '.join(folded)}: its calls then "
                "are counted in (other), not here"
            )
        return scope

    def daily_costs(self, user_id: str, days: int, tz: str, today: date, where: Filter | None = None) -> list[int]:
        """Nano-USD per local day for the `days` days ending `today` (oldest first), zero-filled, of
        the calls `where` selects (all without it).

        Read as consecutive series of at most `MAX_SERIES_DAYS` days each (the anomaly scan needs more).
        """
        from llmtally.queries import MAX_SERIES_DAYS, daily_usage

        costs: list[int] = []
        end = today
        remaining = days
        repository = self._rollups()
        while remaining > 0:
            chunk = min(remaining, MAX_SERIES_DAYS)
            series = daily_usage(user_id, chunk, tz, today=end, repository=repository, where=where)
            costs[:0] = [usd_to_nanos(row.cost_usd) for row in series.days]
            end -= timedelta(days=chunk)
            remaining -= chunk
        return costs

    def forecast(
        self, user_id: str, tz: str | None, *, now: datetime | None = None, where: str | None = None
    ) -> dict[str, Any]:
        """The current local month: spend so far, month-end forecast and an ~80% range (of the calls
        `where` selects, from that filter's daily series)."""
        from llmtally.forecast import SERIES_DAYS, forecast_month
        from llmtally.queries import local_midnight

        zone = parse_timezone(tz)
        chosen = self._where(where)
        today = (now or datetime.now(UTC)).astimezone(zone).date()
        result = forecast_month(self.daily_costs(user_id, SERIES_DAYS, zone.key, today, chosen), today)
        first = local_midnight(today - timedelta(days=SERIES_DAYS - 1), zone)
        scope = self._scope(user_id, chosen, first, local_midnight(result.period_end, zone))
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
            **scope,
        }

    def anomalies(
        self, user_id: str, days: int, tz: str | None, *, now: datetime | None = None, where: str | None = None
    ) -> dict[str, Any]:
        """Unusual local days among the `days` days ending today (today: only a `high` can be flagged),
        of the calls `where` selects. Under a tag value, days of a UTC month in which the value was past
        its bound are not judged (its calls then are in `(other)`: the day would read low)."""
        from llmtally.anomalies import METHOD, WARMUP_DAYS, detect_anomalies
        from llmtally.queries import local_midnight

        _check_days(days, ANOMALY_DAYS)
        zone = parse_timezone(tz)
        chosen = self._where(where)
        today = (now or datetime.now(UTC)).astimezone(zone).date()
        total = days + WARMUP_DAYS
        first_day = today - timedelta(days=total - 1)
        costs = self.daily_costs(user_id, total, zone.key, today, chosen)
        scope = self._scope(
            user_id, chosen, local_midnight(first_day, zone), local_midnight(today + timedelta(days=1), zone)
        )
        folded = set(scope["folded_months"])
        found = [
            a for a in detect_anomalies(costs, first_day, days) if not folded or not _touches(a.day, zone.key, folded)
        ]
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
            **scope,
        }

    def recommendations(
        self, user_id: str, days: int, *, now: datetime | None = None, where: str | None = None
    ) -> dict[str, Any]:
        """Per operation type: the last `days` UTC days' token mix (of the calls `where` selects)
        re-priced on cheaper current models."""
        from llmtally.queries import local_midnight
        from llmtally.recommendations import current_models, operation_totals, recommend

        _check_days(days, RECOMMENDATION_DAYS)
        chosen = self._where(where)
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        totals = operation_totals(user_id, first, today, "UTC", repository=self._rollups(), where=chosen)
        found = recommend(totals, current_models(self._price_book()))
        utc = ZoneInfo("UTC")
        scope = self._scope(user_id, chosen, local_midnight(first, utc), local_midnight(today + timedelta(days=1), utc))
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
            **scope,
        }
