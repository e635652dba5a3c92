"""Reconciliation, pure: a provider's billed figures against the metered rollups, per model and UTC day.

Inputs are a `BillingReport` (what a billing source read: usage lines with tokens by kind, cost lines
with an amount and, where the provider says it, the model and token kind) and the metered counters of
the rollups' model dimension for the same days. The output is one `ReconciliationRow` per
(provider, model, day) with

- billed tokens by kind and billed cost (per kind where the provider itemises it);
- metered tokens by kind and metered cost;
- `drift_nanos` = billed − metered, and `drift_percent` of the billed cost;
- `unmetered_nanos`: the billed cost of tokens no event explains — per kind, the billed cost of the
  tokens billed beyond the metered ones, at the billed price — plus billed lines no event can
  explain (a tool fee, a model nobody meters);
- `price_drift_nanos` = drift − unmetered: the part that remains at matched tokens (a price);
- `cause`: `match`, `price` (tokens match, cost differs), `unmetered` (billed tokens no event
  explains), `missing_day` (nothing metered that day for a provider metered on other days: the
  events of the day are missing), `overmetered` (more metered than billed);
- `price_feedback`: per token kind whose tokens match, the billed unit price against the price
  llmtally used, and a ready-to-paste override (docs/pricing.md) when they differ.

Money is integer nano-USD; Decimal only for unit prices and percentages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Final

from llmtally.events import Provider
from llmtally.money import nanos_to_usd
from llmtally.rollups import Counters

#: How many API key ids a row keeps (the ids the provider billed the model's usage under).
MAX_KEYS_PER_ROW: Final = 10
_PERCENT: Final = Decimal("0.01")
_MTOK_QUANTUM: Final = Decimal("0.000001")
_MILLION: Final = Decimal(1_000_000)


class TokenKind(StrEnum):
    """The billed token kinds, in the canonical ledger's terms (reasoning is billed as output)."""

    INPUT = "input"
    CACHE_READ = "cache_read"
    CACHE_WRITE = "cache_write"
    OUTPUT = "output"


KINDS: Final = tuple(TokenKind)


class Cause(StrEnum):
    MATCH = "match"
    PRICE = "price"
    UNMETERED = "unmetered"
    MISSING_DAY = "missing_day"
    OVERMETERED = "overmetered"


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Tokens the provider billed: one model, one UTC day, one API key (when the provider groups by key)."""

    day: date
    model: str
    tokens: Mapping[TokenKind, int]
    api_key_id: str | None = None
    requests: int = 0


@dataclass(frozen=True, slots=True)
class CostLine:
    """Money the provider billed: one line item of one UTC day; `model`/`kind` when the provider says them."""

    day: date
    cost_nanos: int
    label: str
    model: str | None = None
    kind: TokenKind | None = None


@dataclass(frozen=True, slots=True)
class BillingReport:
    """What a billing source read for [start, end) (UTC days)."""

    provider: Provider
    start: date
    end: date
    usage: tuple[UsageLine, ...] = ()
    costs: tuple[CostLine, ...] = ()
    #: Which reports the figures came from (shown with each row).
    source: str = ""


@dataclass(slots=True)
class Billed:
    tokens: dict[TokenKind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    cost_by_kind: dict[TokenKind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: Cost lines of the model without a token kind (tool fees, long-context surcharges not itemised…).
    other_nanos: int = 0
    api_keys: set[str] = field(default_factory=set)
    requests: int = 0

    @property
    def cost_nanos(self) -> int:
        return sum(self.cost_by_kind.values()) + self.other_nanos

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())


@dataclass(frozen=True, slots=True)
class Metered:
    tokens: Mapping[TokenKind, int]
    cost_nanos: int
    requests: int

    @classmethod
    def of(cls, counters: Counters) -> Metered:
        return cls(
            tokens={
                TokenKind.INPUT: counters.input_tokens,
                TokenKind.CACHE_READ: counters.cache_read_tokens,
                TokenKind.CACHE_WRITE: counters.cache_write_tokens,
                TokenKind.OUTPUT: counters.output_tokens + counters.reasoning_tokens,
            },
            cost_nanos=counters.cost_nanos,
            requests=counters.requests,
        )

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())


NOTHING_METERED: Final = Metered(tokens=dict.fromkeys(KINDS, 0), cost_nanos=0, requests=0)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a difference counts. Defaults: 2 % drift, $1.00 of unmetered spend a day, 0.5 % token slack."""

    drift_percent: Decimal = Decimal(2)
    unmetered_nanos: int = 1_000_000_000
    #: A drift smaller than this (absolute) never counts, whatever its percentage (rounding of cents).
    min_drift_nanos: int = 10_000_000
    token_tolerance_percent: Decimal = Decimal("0.5")
    #: Price feedback needs this many tokens of a kind (a unit price from a handful of tokens is noise).
    min_tokens_for_price: int = 1000


@dataclass(frozen=True, slots=True)
class PriceFeedback:
    kind: TokenKind
    tokens: int
    billed_mtok: Decimal
    metered_mtok: Decimal | None
    #: A complete override entry for docs/pricing.md's file, effective from the day.
    suggested_override: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "tokens": self.tokens,
            "billed_mtok": str(self.billed_mtok),
            "metered_mtok": None if self.metered_mtok is None else str(self.metered_mtok),
            "suggested_override": self.suggested_override,
        }


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    user_id: str
    provider: Provider
    model: str
    day: date
    billed_tokens: Mapping[TokenKind, int]
    billed_cost_nanos: int
    billed_cost_by_kind: Mapping[TokenKind, int]
    billed_other_nanos: int
    metered_tokens: Mapping[TokenKind, int]
    metered_cost_nanos: int
    metered_requests: int
    unmetered_nanos: int
    cause: Cause
    provisional: bool
    api_key_ids: tuple[str, ...] = ()
    price_feedback: tuple[PriceFeedback, ...] = ()

    @property
    def drift_nanos(self) -> int:
        return self.billed_cost_nanos - self.metered_cost_nanos

    @property
    def price_drift_nanos(self) -> int:
        return self.drift_nanos - self.unmetered_nanos

    @property
    def drift_percent(self) -> Decimal | None:
        return percent(self.drift_nanos, self.billed_cost_nanos)


def percent(part: int, whole: int) -> Decimal | None:
    """`part` in % of `whole`, two decimals (half-even); None when `whole` is 0."""
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(_PERCENT, rounding=ROUND_HALF_EVEN)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days_between(start: date, end: date) -> list[date]:
    """[start, end) as a list of days."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


# -- billed figures per (day, model) ---------------------------------------------------------------


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


#: A dated snapshot's suffix: `-2024-07-18` (OpenAI), `-20250929` (Anthropic), `-0613` (older OpenAI).
_SNAPSHOT: Final = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


def _is_snapshot_of(snapshot: str, alias: str) -> bool:
    """`gpt-4o-mini-2024-07-18` is a snapshot of `gpt-4o-mini`, not of `gpt-4o`."""
    return snapshot.startswith(alias + "-") and _SNAPSHOT.fullmatch(snapshot[len(alias) :]) is not None


def match_model(billed: str, metered: Iterable[str], provider: Provider) -> str | None:
    """The metered model name a billed model name stands for, if any.

    Exact first; then a dated snapshot and its alias (`gpt-4o-mini-2024-07-18` ↔ `gpt-4o-mini`, never
    `gpt-4o`);
    for Bedrock, whose Cost Explorer usage types name models in their own words
    (`Claude3.5Sonnet`), the metered id whose normalized form contains the billed name's.
    """
    names = sorted(set(metered), key=lambda m: (-len(m), m))
    lowered = billed.lower()
    for name in names:
        if name.lower() == lowered:
            return name
    for name in names:
        low = name.lower()
        if _is_snapshot_of(lowered, low) or _is_snapshot_of(low, lowered):
            return name
    if provider is Provider.BEDROCK:
        wanted = _normalized(billed)
        if len(wanted) >= 4:
            hits = [name for name in names if wanted in _normalized(name)]
            if hits:
                return hits[0]
    return None


def billed_by_model(
    report: BillingReport, metered_models: Mapping[date, Iterable[str]]
) -> dict[tuple[date, str], Billed]:
    """The report's lines summed per (day, model), billed names mapped onto metered ones where they match."""
    out: dict[tuple[date, str], Billed] = {}
    known: dict[date, list[str]] = {day: list(models) for day, models in metered_models.items()}

    def key(day: date, model: str) -> tuple[date, str]:
        matched = match_model(model, known.get(day, ()), report.provider)
        return day, matched or model

    for line in report.usage:
        billed = out.setdefault(key(line.day, line.model), Billed())
        for kind, tokens in line.tokens.items():
            billed.tokens[kind] += tokens
        billed.requests += line.requests
        if line.api_key_id:
            billed.api_keys.add(line.api_key_id)
    for cost in report.costs:
        billed = out.setdefault(key(cost.day, cost.model or cost.label), Billed())
        if cost.kind is not None:
            billed.cost_by_kind[cost.kind] += cost.cost_nanos
        else:
            billed.other_nanos += cost.cost_nanos
    return out


# -- one row --------------------------------------------------------------------------------------

UnitPriceLookup = Callable[[Provider, str, date], Mapping[TokenKind, Decimal] | None]


def _significant_tokens(billed: int, metered: int, thresholds: Thresholds) -> bool:
    """Whether two token counts differ beyond the tolerance (relative to the larger)."""
    larger = max(billed, metered)
    if larger == 0:
        return False
    return Decimal(abs(billed - metered)) * 100 > thresholds.token_tolerance_percent * Decimal(larger)


def _unmetered_nanos(billed: Billed, metered: Metered, thresholds: Thresholds) -> int:
    """The billed cost of the tokens billed beyond the metered ones, kind by kind, at the billed price."""
    total = 0
    kind_costs_known = any(billed.cost_by_kind.values())
    for kind in KINDS:
        billed_tokens, metered_tokens = billed.tokens[kind], metered.tokens[kind]
        excess = billed_tokens - metered_tokens
        if excess <= 0 or not _significant_tokens(billed_tokens, metered_tokens, thresholds):
            continue
        cost = billed.cost_by_kind[kind]
        total += int((Decimal(cost) * excess / billed_tokens).to_integral_value(rounding=ROUND_HALF_EVEN))
    if not kind_costs_known and billed.total_tokens and metered.total_tokens < billed.total_tokens:
        # Only a model-level cost (no itemised kinds): the unexplained share of the tokens.
        excess_all = billed.total_tokens - metered.total_tokens
        if _significant_tokens(billed.total_tokens, metered.total_tokens, thresholds):
            share = Decimal(billed.other_nanos) * excess_all / billed.total_tokens
            total += int(share.to_integral_value(rounding=ROUND_HALF_EVEN))
        return total
    if metered.total_tokens == 0 and metered.cost_nanos == 0:
        total += billed.other_nanos  # nothing metered: no event explains the model's other lines either
    return total


def _price_feedback(
    provider: Provider,
    model: str,
    day: date,
    billed: Billed,
    metered: Metered,
    thresholds: Thresholds,
    unit_prices: UnitPriceLookup | None,
) -> tuple[PriceFeedback, ...]:
    prices = unit_prices(provider, model, day) if unit_prices is not None else None
    feedback: list[PriceFeedback] = []
    for kind in KINDS:
        tokens, cost = billed.tokens[kind], billed.cost_by_kind[kind]
        if tokens < thresholds.min_tokens_for_price or cost <= 0:
            continue
        if _significant_tokens(tokens, metered.tokens[kind], thresholds):
            continue  # tokens differ: the difference is not (only) the price
        billed_mtok = (nanos_to_usd(cost) * _MILLION / tokens).quantize(_MTOK_QUANTUM, rounding=ROUND_HALF_EVEN)
        metered_mtok = prices.get(kind) if prices is not None else None
        if metered_mtok is not None:
            gap = abs(billed_mtok - metered_mtok)
            if metered_mtok and gap * 100 <= thresholds.drift_percent * metered_mtok:
                continue
            if not metered_mtok and gap == 0:
                continue
        elif metered.cost_nanos:
            continue  # priced by something we cannot itemise (reported cost): no per-kind claim
        feedback.append(
            PriceFeedback(
                kind=kind,
                tokens=tokens,
                billed_mtok=billed_mtok,
                metered_mtok=metered_mtok,
                suggested_override=None,
            )
        )
    if not feedback:
        return ()
    override = suggest_override(provider, model, day, prices or {}, {f.kind: f.billed_mtok for f in feedback})
    return tuple(PriceFeedback(f.kind, f.tokens, f.billed_mtok, f.metered_mtok, override) for f in feedback)


_OVERRIDE_FIELDS: Final = {
    TokenKind.INPUT: "input_mtok",
    TokenKind.OUTPUT: "output_mtok",
    TokenKind.CACHE_READ: "cache_read_mtok",
    TokenKind.CACHE_WRITE: "cache_write_mtok",
}


def suggest_override(
    provider: Provider,
    model: str,
    day: date,
    current: Mapping[TokenKind, Decimal],
    billed: Mapping[TokenKind, Decimal],
) -> dict[str, Any] | None:
    """An override entry (docs/pricing.md) with the billed unit prices, effective from `day`.

    Kinds not seen in the bill keep the price llmtally uses; an entry needs input and output prices,
    so none is suggested when one of them is known neither way. Checked against `PriceOverride`.
    """
    from llmtally.pricing import PriceOverride

    prices = {**{k: v for k, v in current.items() if v is not None}, **billed}
    if TokenKind.INPUT not in prices or TokenKind.OUTPUT not in prices:
        return None
    entry: dict[str, Any] = {"provider": provider.value, "model": model}
    for kind, name in _OVERRIDE_FIELDS.items():
        if kind in prices:
            entry[name] = format(prices[kind].normalize(), "f")  # "90", "0.66": exact, no exponent
    entry["effective_from"] = day_start(day).isoformat().replace("+00:00", "Z")
    entry["note"] = f"billed by {provider.value} on {day.isoformat()} (llmtally reconcile)"
    try:
        PriceOverride.model_validate(entry)
    except ValueError:
        return None
    return entry


def reconcile_row(
    user_id: str,
    provider: Provider,
    model: str,
    day: date,
    billed: Billed,
    metered: Metered,
    *,
    thresholds: Thresholds,
    provisional: bool,
    missing_day: bool,
    unit_prices: UnitPriceLookup | None = None,
) -> ReconciliationRow:
    unmetered = _unmetered_nanos(billed, metered, thresholds)
    drift = billed.cost_nanos - metered.cost_nanos
    tokens_differ = any(_significant_tokens(billed.tokens[k], metered.tokens[k], thresholds) for k in KINDS)
    if metered.total_tokens == 0 and metered.cost_nanos == 0 and billed.cost_nanos > 0:
        cause = Cause.MISSING_DAY if missing_day else Cause.UNMETERED
    elif tokens_differ and unmetered > 0:
        cause = Cause.UNMETERED
    elif tokens_differ or (billed.cost_nanos == 0 and metered.cost_nanos > 0):
        cause = Cause.OVERMETERED
    elif _significant_drift(drift - unmetered, billed.cost_nanos, thresholds):
        cause = Cause.PRICE
    else:
        cause = Cause.MATCH
    # Unit prices are compared only where the cost differs at matched tokens: a blended figure (5-minute
    # and 1-hour cache writes together, long-context tiers) never produces feedback on a matching row.
    feedback = (
        _price_feedback(provider, model, day, billed, metered, thresholds, unit_prices)
        if _significant_drift(drift - unmetered, billed.cost_nanos, thresholds)
        else ()
    )
    return ReconciliationRow(
        user_id=user_id,
        provider=provider,
        model=model,
        day=day,
        billed_tokens=dict(billed.tokens),
        billed_cost_nanos=billed.cost_nanos,
        billed_cost_by_kind=dict(billed.cost_by_kind),
        billed_other_nanos=billed.other_nanos,
        metered_tokens=dict(metered.tokens),
        metered_cost_nanos=metered.cost_nanos,
        metered_requests=metered.requests,
        unmetered_nanos=unmetered,
        cause=cause,
        provisional=provisional,
        api_key_ids=tuple(sorted(billed.api_keys))[:MAX_KEYS_PER_ROW],
        price_feedback=feedback,
    )


def _significant_drift(drift_nanos: int, billed_nanos: int, thresholds: Thresholds) -> bool:
    if abs(drift_nanos) < thresholds.min_drift_nanos:
        return False
    if billed_nanos == 0:
        return True
    return Decimal(abs(drift_nanos)) * 100 > thresholds.drift_percent * Decimal(billed_nanos)


def reconcile(
    user_id: str,
    report: BillingReport,
    metered: Mapping[date, Mapping[str, Metered]],
    *,
    thresholds: Thresholds,
    settled_before: date,
    unit_prices: UnitPriceLookup | None = None,
) -> list[ReconciliationRow]:
    """Every (model, day) of the report's window that was billed or metered, as a row.

    `metered[day][model]` holds the provider's metered models of each day. Days at or after
    `settled_before` are still moving at the provider: their rows are `provisional`.
    """
    billed = billed_by_model(report, {day: models.keys() for day, models in metered.items()})
    metered_days = {
        day for day, models in metered.items() if any(m.total_tokens or m.cost_nanos for m in models.values())
    }
    rows: list[ReconciliationRow] = []
    for day in days_between(report.start, report.end):
        models = set(metered.get(day, {})) | {model for (d, model) in billed if d == day}
        missing_day = day not in metered_days and bool(metered_days)
        for model in sorted(models):
            b = billed.get((day, model), Billed())
            m = metered.get(day, {}).get(model, NOTHING_METERED)
            if b.cost_nanos == 0 and b.total_tokens == 0 and m.cost_nanos == 0 and m.total_tokens == 0:
                continue
            rows.append(
                reconcile_row(
                    user_id,
                    report.provider,
                    model,
                    day,
                    b,
                    m,
                    thresholds=thresholds,
                    provisional=day >= settled_before,
                    missing_day=missing_day,
                    unit_prices=unit_prices,
                )
            )
    return rows


# -- a day's totals (alerts, the API) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayTotals:
    provider: Provider
    day: date
    billed_nanos: int
    metered_nanos: int
    unmetered_nanos: int
    provisional: bool
    #: The model whose price drift is largest relative to its bill: (price drift, billed) in nano-USD.
    worst_model_price_drift: tuple[int, int] = (0, 0)

    @property
    def drift_nanos(self) -> int:
        return self.billed_nanos - self.metered_nanos

    @property
    def price_drift_nanos(self) -> int:
        return self.drift_nanos - self.unmetered_nanos

    @property
    def price_drift_percent(self) -> Decimal | None:
        return percent(self.price_drift_nanos, self.billed_nanos)


def day_totals(rows: Sequence[ReconciliationRow]) -> list[DayTotals]:
    grouped: dict[tuple[Provider, date], list[ReconciliationRow]] = {}
    for row in rows:
        grouped.setdefault((row.provider, row.day), []).append(row)
    return [
        DayTotals(
            provider=provider,
            day=day,
            billed_nanos=sum(r.billed_cost_nanos for r in mine),
            metered_nanos=sum(r.metered_cost_nanos for r in mine),
            unmetered_nanos=sum(r.unmetered_nanos for r in mine),
            provisional=any(r.provisional for r in mine),
            worst_model_price_drift=max(
                ((r.price_drift_nanos, r.billed_cost_nanos) for r in mine if r.cause is Cause.PRICE),
                key=lambda pair: Decimal(abs(pair[0])) / max(pair[1], 1),
                default=(0, 0),
            ),
        )
        for (provider, day), mine in sorted(grouped.items())
    ]


def drift_alert_due(totals: DayTotals, thresholds: Thresholds) -> bool:
    """The drift not explained by unmetered spend is above the threshold — for the provider's day, or
    for one model whose tokens match (a price) — on a settled day."""
    if totals.provisional:
        return False
    worst_drift, worst_billed = totals.worst_model_price_drift
    return _significant_drift(totals.price_drift_nanos, totals.billed_nanos, thresholds) or _significant_drift(
        worst_drift, worst_billed, thresholds
    )


def unmetered_alert_due(totals: DayTotals, thresholds: Thresholds) -> bool:
    return not totals.provisional and totals.unmetered_nanos >= thresholds.unmetered_nanos > 0
