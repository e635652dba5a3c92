"""The seed's tracking API, kept by name: `UsageTracker.track_usage` and `UsageTrackerMiddleware`.

Both build a contract-v1 `UsageEvent` and hand it to a `UsagePublisher` (fire-and-forget). Tracking
never breaks the caller: invalid input is logged — field names and error kinds only, never the
values, which could be prompts or keys — and the call returns None.

Costs are exact: `cost_usd` may be a Decimal, an int or a numeric string; a float is read through
its shortest repr (0.1 stays 0.1, never 0.1000000000000000055…). Figures finer than a nano-dollar
are rounded half-to-even to nine decimals, the contract's precision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llmtally.events import MetadataValue, Status, UsageEvent
from llmtally.money import nanos_to_usd, usd_to_nanos
from llmtally.pricing import CostSource

if TYPE_CHECKING:
    from llmtally.publisher import UsagePublisher
    from llmtally.responses import LLMResponse

logger = logging.getLogger("llmtally.usage_tracker")

CostInput = Decimal | int | str | float | None
_MAX_COST_DECIMALS = 9


class InvalidCostError(ValueError):
    """`cost_usd` is not a finite number (its value is deliberately not in the message)."""


def to_cost_decimal(value: CostInput) -> Decimal | None:
    """Exact Decimal USD from what callers pass; never via binary floating point."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidCostError("cost_usd must be a number, not bool")
    try:
        if isinstance(value, float):
            amount = Decimal(repr(value))
        elif isinstance(value, Decimal | int):
            amount = Decimal(value)
        elif isinstance(value, str):
            amount = Decimal(value.strip())
        else:
            raise InvalidCostError(f"cost_usd must be Decimal, int, str or float, not {type(value).__name__}")
    except InvalidOperation as exc:
        raise InvalidCostError("cost_usd is not a number") from exc
    if not amount.is_finite():
        raise InvalidCostError("cost_usd must be finite")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_COST_DECIMALS:
        amount = nanos_to_usd(usd_to_nanos(amount))
    return amount


def _describe(exc: Exception) -> str:
    """What was wrong, without any input value (pydantic's messages quote the input)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'event'}: {err['type']}" for err in exc.errors()
        )
    if isinstance(exc, InvalidCostError):
        return str(exc)
    return type(exc).__name__


class UsageTracker:
    """Builds usage events and publishes them (to `publisher`, or the process's default publisher)."""

    def __init__(self, publisher: UsagePublisher | None = None) -> None:
        self._publisher = publisher

    @property
    def publisher(self) -> UsagePublisher:
        if self._publisher is None:
            from llmtally.publisher import default_publisher

            self._publisher = default_publisher()
        return self._publisher

    def track_usage(
        self,
        user_id: str,
        provider: str,
        model: str,
        operation_type: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: CostInput,
        latency_ms: int,
        request_id: str | None,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_5m_tokens: int | None = None,
        cache_write_1h_tokens: int | None = None,
        reasoning_tokens: int = 0,
        status: str = "ok",
        error_type: str | None = None,
        timestamp: datetime | None = None,
        event_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        usage_source: str = "reported",
    ) -> UsageEvent | None:
        """Record one LLM call: the event handed to the publisher, or None if the input was invalid.

        `input_tokens` is *uncached* input (the ledger's buckets never overlap); `cost_usd` is the
        producer's own figure (`reported_cost_usd`; None when unknown) — the ingest prices centrally.
        `tags` are attribution dimensions (≤ 8; see the contract); `usage_source="missing"` records a
        call whose usage the provider never reported (counted as `usage_missing`, never a silent $0).
        The event is returned even if the publisher dropped it (see its `stats()`).
        """
        try:
            fields: dict[str, Any] = {
                "user_id": user_id,
                "provider": provider,
                "model": model,
                "operation_type": operation_type,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_read_tokens": cache_read_tokens,
                "cache_write_tokens": cache_write_tokens,
                "cache_write_5m_tokens": cache_write_5m_tokens,
                "cache_write_1h_tokens": cache_write_1h_tokens,
                "reasoning_tokens": reasoning_tokens,
                "latency_ms": latency_ms,
                "reported_cost_usd": to_cost_decimal(cost_usd),
                "request_id": request_id,
                "metadata": dict(metadata or {}),
                "status": status,
                "error_type": error_type,
                "tags": dict(tags or {}),
                "usage_source": usage_source,
            }
            if timestamp is not None:
                fields["timestamp"] = timestamp
            if event_id is not None:
                fields["event_id"] = event_id
            event = UsageEvent.model_validate(fields)
        except Exception as exc:
            logger.warning("usage not tracked: invalid input (%s)", _describe(exc))
            return None
        try:
            self.publisher.publish(event)
        except Exception:  # publish never raises; building the default publisher might
            logger.warning("usage event %s not published", event.event_id, exc_info=True)
        return event

    def get_usage_summary(
        self,
        user_id: str,
        start_date: date | datetime,
        end_date: date | datetime,
        tz: str = "UTC",
        *,
        where: str | None = None,
    ) -> dict[str, Any]:
        """The seed's summary (`total_requests`, `total_tokens`, `total_cost_usd`, `by_provider`, …).

        Read from the rollups only, never raw entries: the cost does not grow with the events.
        Dates are whole local days in `tz`, both inclusive; datetimes are a half-open [start, end).
        `where` (`"tag:customer:acme"`, `"model:gpt-5"`, …) keeps only the calls it selects.
        Money is Decimal. Raises `InvalidRangeError` for an unaligned or inverted range or a bad filter.
        """
        from llmtally.queries import Filter, summarize

        selected = Filter.parse(where) if where else None
        return summarize(user_id, start_date, end_date, tz, where=selected).model_dump()

    def get_breakdown(
        self,
        user_id: str,
        by: str,
        start_date: date | datetime,
        end_date: date | datetime,
        tz: str = "UTC",
        *,
        where: str | None = None,
        limit: int = 25,
    ) -> dict[str, Any]:
        """Cost by `by` (`provider`, `model`, `operation`, `tag:<key>`), costliest first, from the
        rollups (the API's breakdown: rows, `other`, `folded_values`, `total`; money as Decimal)."""
        from llmtally.queries import Filter, breakdown

        selected = Filter.parse(where) if where else None
        return breakdown(user_id, by, start_date, end_date, tz, where=selected, limit=limit).as_dict()


class UsageTrackerMiddleware:
    """Tracks a provider's `LLMResponse`: every ledger bucket, the latency and the adapter's cost."""

    def __init__(self, tracker: UsageTracker | None = None) -> None:
        self.tracker = tracker or UsageTracker()

    def track_llm_call(
        self,
        user_id: str,
        operation_type: str,
        llm_response: LLMResponse,
        request_id: str | None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> UsageEvent | None:
        """Record the call behind `llm_response`; None if it could not be turned into an event."""
        try:
            usage = llm_response.usage
            # llmtally's adapters say when a stream's usage never arrived (ProviderResponse.usage_source).
            source = str(getattr(llm_response, "usage_source", "reported"))
            # An unpriced cost is 0 by convention, and so is a missing usage's: reporting either would
            # let the ingest bill a silent $0.
            unknown = usage.cost_source is CostSource.UNPRICED or source != "reported"
            cost = None if unknown else usage.cost_usd
            provider = usage.provider or llm_response.provider
            model = usage.model or llm_response.model
        except Exception as exc:
            logger.warning("usage not tracked: unreadable response (%s)", type(exc).__name__)
            return None
        return self.tracker.track_usage(
            user_id,
            provider,
            model,
            operation_type,
            usage.input_tokens,
            usage.output_tokens,
            cost,
            usage.latency_ms,
            request_id,
            metadata,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            status=Status.OK.value,
            usage_source=source,
        )


__all__ = ["InvalidCostError", "UsageTracker", "UsageTrackerMiddleware", "to_cost_decimal"]
