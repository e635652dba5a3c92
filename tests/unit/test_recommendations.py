"""Cheaper models per operation: the period's token mix re-priced with the real price book, only
cheaper candidates (at most 5, cheapest first), exact savings; totals read from the operation rollups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from llmtally.events import Provider, TokenCounts
from llmtally.money import usd_to_nanos
from llmtally.pricing import CatalogModel, CostSource, PriceBook, UnitPrices
from llmtally.recommendations import (
    MAX_CANDIDATES,
    cache_hit_rate,
    current_models,
    ledger_of,
    operation_totals,
    recommend,
)
from llmtally.rollups import Counters
from tests.unit.test_queries import MemoryRollups
from tests.unit.test_rollups import Entry

USD = 1_000_000_000
MILLION = 1_000_000


def model(name: str, input_mtok: str, output_mtok: str, *, cache_read: str | None = None) -> CatalogModel:
    prices = UnitPrices(
        Decimal(input_mtok), Decimal(output_mtok), cache_read_mtok=Decimal(cache_read) if cache_read else None
    )
    return CatalogModel(Provider.OPENAI, name, name, "current", prices, CostSource.CATALOG, name)


def counters(**values: int) -> Counters:
    return Counters(requests=values.pop("requests", 10), **values)


def test_candidates_are_the_cheaper_models_with_exact_savings() -> None:
    # Given an operation that paid $20 for 1M input + 1M output tokens
    spent = counters(input_tokens=MILLION, output_tokens=MILLION, cost_nanos=20 * USD)
    models = [model("cheap", "1", "2"), model("pricey", "10", "30"), model("cheapest", "0.5", "1")]
    # When recommendations are made
    [result] = recommend({"conversation": spent}, models)
    # Then the cheaper two are listed, cheapest first, with the saving in nano-USD and percent
    assert [(c.model, c.cost_nanos, c.saving_nanos, c.saving_percent) for c in result.candidates] == [
        ("cheapest", 3 * USD // 2, 37 * USD // 2, Decimal("92.50")),
        ("cheap", 3 * USD, 17 * USD, Decimal("85.00")),
    ]


def test_at_most_five_candidates_and_operations_costliest_first() -> None:
    models = [model(f"m{i}", str(i), str(i)) for i in range(1, 10)]
    big = counters(input_tokens=MILLION, cost_nanos=100 * USD)
    small = counters(input_tokens=MILLION, cost_nanos=3 * USD)
    idle = counters(requests=0)
    results = recommend({"small": small, "big": big, "idle": idle}, models)
    assert [r.operation_type for r in results] == ["big", "small"]
    assert [c.model for c in results[0].candidates] == ["m1", "m2", "m3", "m4", "m5"]
    assert len(results[0].candidates) == MAX_CANDIDATES
    assert [c.model for c in results[1].candidates] == ["m1", "m2"]


def test_an_operation_with_nothing_cheaper_has_no_candidate() -> None:
    [result] = recommend({"op": counters(input_tokens=MILLION, cost_nanos=USD)}, [model("same", "1", "1")])
    assert result.candidates == ()


def test_the_real_price_book_reprices_the_whole_ledger() -> None:
    # Given an operation on Claude Opus 4.1 with cache reads and writes (1h split) and reasoning
    book = PriceBook()
    ledger = TokenCounts(
        input_tokens=2 * MILLION,
        cache_read_tokens=6 * MILLION,
        cache_write_tokens=MILLION,
        cache_write_5m_tokens=400_000,
        cache_write_1h_tokens=600_000,
        output_tokens=500_000,
        reasoning_tokens=300_000,
    )
    paid = book.price(Provider.ANTHROPIC, "claude-opus-4-1-20250805", ledger, at=datetime.now(UTC)).cost_nanos
    spent = Counters(
        requests=100,
        input_tokens=ledger.input_tokens,
        cache_read_tokens=ledger.cache_read_tokens,
        cache_write_tokens=ledger.cache_write_tokens,
        cache_write_5m_tokens=400_000,
        cache_write_1h_tokens=600_000,
        output_tokens=ledger.output_tokens,
        reasoning_tokens=ledger.reasoning_tokens,
        cost_nanos=paid,
    )
    models = current_models(book)
    # Then candidates are current, priced models, each at the price book's own figure for the ledger
    assert all(m.status == "current" and m.prices is not None for m in models)
    assert "claude-3-opus-20240229" not in {m.model for m in models}
    [result] = recommend({"detection_rule": spent}, models)
    assert len(result.candidates) == MAX_CANDIDATES
    for candidate in result.candidates:
        prices = book.unit_prices(Provider(candidate.provider), candidate.model)
        assert candidate.cost_nanos == usd_to_nanos(prices.cost_usd(ledger))
        assert candidate.saving_nanos == paid - candidate.cost_nanos
    assert result.candidates[0].model in {"gpt-5-nano", "amazon.nova-lite-v1:0", "gemini-2.5-flash-lite"}
    assert result.cache_hit_rate == Decimal("0.6667")


def test_ledger_keeps_the_cache_write_split_only_when_it_adds_up() -> None:
    assert (
        ledger_of(
            counters(cache_write_tokens=10, cache_write_1h_tokens=4, cache_write_5m_tokens=6)
        ).cache_write_1h_tokens
        == 4
    )
    # Part of the period had no split reported: the 1h share is unknown, all writes at the base write price
    assert ledger_of(counters(cache_write_tokens=10, cache_write_1h_tokens=4)).cache_write_1h_tokens is None
    assert cache_hit_rate(counters()) == Decimal("0.0000")


def test_operation_totals_sum_each_operation_from_the_rollups() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    entries = [
        Entry(timestamp=start + timedelta(hours=7 * i), operation_type=op, input_tokens=i, cost_nanos=1_000 * i)
        for i in range(1, 60)
        for op in (["conversation"] if i % 3 else ["conversation", "detection_rule"])
    ]
    repository = MemoryRollups(entries)
    totals = operation_totals("acme", date(2026, 11, 3), date(2026, 11, 12), "UTC", repository=repository)
    low, high = datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 13, tzinfo=UTC)
    for op in ("conversation", "detection_rule"):
        chosen = [e for e in entries if e.operation_type == op and low <= e.timestamp < high]
        assert totals[op].requests == len(chosen)
        assert totals[op].input_tokens == sum(e.input_tokens for e in chosen)
        assert totals[op].cost_nanos == sum(e.cost_nanos for e in chosen)


ledger_counts = st.integers(0, 10**9)


@given(ledger_counts, ledger_counts, ledger_counts, ledger_counts, ledger_counts, st.integers(0, 10**6 * USD))
def test_every_candidate_is_cheaper_sorted_and_its_saving_adds_up(
    inp: int, read: int, write: int, out: int, reasoning: int, paid: int
) -> None:
    spent = counters(
        input_tokens=inp,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=out,
        reasoning_tokens=reasoning,
        cost_nanos=paid,
    )
    [result] = recommend({"op": spent}, current_models(PriceBook()))
    costs = [c.cost_nanos for c in result.candidates]
    assert costs == sorted(costs)
    for candidate in result.candidates:
        assert 0 <= candidate.cost_nanos < paid
        assert candidate.saving_nanos == paid - candidate.cost_nanos
        assert Decimal(0) <= candidate.saving_percent <= 100
    assert Decimal(0) <= result.cache_hit_rate <= 1
