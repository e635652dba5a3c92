"""Cheaper models per operation: what the last N days would have cost on each current model.

For each operation type, the token mix of the period (uncached input, cache reads, cache writes
with their 5-minute / 1-hour split, visible output, reasoning) comes from the rollups' operation
dimension, summed over the period — items read are bounded by days × operation types, never by
events. That ledger is re-priced on every *current* model of the curated list
(`llmtally/data/models.json`) with `PriceBook.unit_prices(...).cost_usd(...)`, the same price data
and bucket mapping ingest uses (an override file included). A model that cannot be priced is
left out.

Simplifications, stated so nobody reads more into the figures than is there:

- Linear prices: each bucket is billed at the model's base (first-tier) price per token. Tiered
  long-context prices (e.g. above 200k input tokens per *request*) cannot be applied to a
  period's totals, since they depend on each request's size, so a candidate's figure is what the
  same traffic costs when no request crosses a tier. The actual cost is what was billed per call.
- Same token mix: a different model would tokenize the same text differently and may write more or
  less output or reasoning; the cache hit rate is assumed to carry over (OpenAI and Gemini cache
  automatically; Anthropic needs cache breakpoints).
- Quality is not judged: a cheaper model is only a candidate to evaluate.
- Requests that were unpriced count in the token mix but add $0 to the actual cost, so their
  operation's savings are understated, never overstated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Final

from llmtally.events import TokenCounts
from llmtally.money import usd_to_nanos
from llmtally.rollups import Counters, Dimension

if TYPE_CHECKING:
    from llmtally.pricing import CatalogModel, PriceBook
    from llmtally.queries import Filter
    from llmtally.repositories.rollups import RollupRepository

MAX_CANDIDATES: Final = 5
_RATE_QUANTUM: Final = Decimal("0.0001")
_PERCENT_QUANTUM: Final = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: str
    model: str
    cost_nanos: int
    saving_nanos: int
    saving_percent: Decimal


@dataclass(frozen=True, slots=True)
class OperationRecommendation:
    operation_type: str
    counters: Counters
    cache_hit_rate: Decimal
    candidates: tuple[Candidate, ...]


def ledger_of(counters: Counters) -> TokenCounts:
    """A period's summed counters as one token ledger (the 5m/1h split only where it adds up)."""
    split = counters.cache_write_1h_tokens > 0 and (
        counters.cache_write_5m_tokens + counters.cache_write_1h_tokens == counters.cache_write_tokens
    )
    return TokenCounts(
        input_tokens=counters.input_tokens,
        cache_read_tokens=counters.cache_read_tokens,
        cache_write_tokens=counters.cache_write_tokens,
        cache_write_5m_tokens=counters.cache_write_5m_tokens if split else None,
        cache_write_1h_tokens=counters.cache_write_1h_tokens if split else None,
        output_tokens=counters.output_tokens,
        reasoning_tokens=counters.reasoning_tokens,
    )


def cache_hit_rate(counters: Counters) -> Decimal:
    """Cache reads over all input tokens (uncached + cache reads + cache writes), 4 places."""
    prompt = counters.input_tokens + counters.cache_read_tokens + counters.cache_write_tokens
    if not prompt:
        return Decimal(0).quantize(_RATE_QUANTUM)
    return (Decimal(counters.cache_read_tokens) / prompt).quantize(_RATE_QUANTUM, ROUND_HALF_EVEN)


def current_models(book: PriceBook) -> list[CatalogModel]:
    """The curated current models that have a price (catalog or override)."""
    return [entry for entry in book.catalog() if entry.status == "current" and entry.prices is not None]


def recommend(
    operations: Mapping[str, Counters],
    models: Sequence[CatalogModel],
    *,
    limit: int = MAX_CANDIDATES,
) -> list[OperationRecommendation]:
    """Per operation (costliest first): up to `limit` candidates cheaper than the actual cost, cheapest first."""
    out: list[OperationRecommendation] = []
    for operation, counters in operations.items():
        if not counters.requests:
            continue
        ledger = ledger_of(counters)
        actual = counters.cost_nanos
        priced: list[Candidate] = []
        for entry in models:
            if entry.prices is None:
                continue
            cost = usd_to_nanos(entry.prices.cost_usd(ledger))
            if cost >= actual:
                continue
            saving = actual - cost
            percent = (Decimal(saving * 100) / actual).quantize(_PERCENT_QUANTUM, ROUND_HALF_EVEN)
            priced.append(Candidate(entry.provider.value, entry.model, cost, saving, percent))
        priced.sort(key=lambda c: (c.cost_nanos, c.provider, c.model))
        out.append(OperationRecommendation(operation, counters, cache_hit_rate(counters), tuple(priced[:limit])))
    out.sort(key=lambda r: (-r.counters.cost_nanos, r.operation_type))
    return out


def operation_totals(
    user_id: str,
    first: date,
    last: date,
    tz: str,
    *,
    repository: RollupRepository,
    where: Filter | None = None,
) -> dict[str, Counters]:
    """Each operation type's counters summed over whole local days [first, last] (rollups only), of
    the calls `where` selects if given (then from the partition carrying both the operation and the
    filter's dimension: the (model, operation) cells or the tag's cells)."""
    from llmtally.queries import local_midnight, range_totals, totals_by, zone

    local = zone(tz)
    low: datetime = local_midnight(first, local)
    high: datetime = local_midnight(last + timedelta(days=1), local)
    if where is not None:
        return totals_by(user_id, Dimension.OPERATION.value, low, high, where, repository=repository)
    return range_totals(user_id, low, high, (Dimension.OPERATION,), repository=repository).by_dimension[
        Dimension.OPERATION
    ]


__all__ = [
    "MAX_CANDIDATES",
    "Candidate",
    "OperationRecommendation",
    "cache_hit_rate",
    "current_models",
    "ledger_of",
    "operation_totals",
    "recommend",
]
