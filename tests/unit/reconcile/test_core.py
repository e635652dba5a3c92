"""Reconciliation, pure: each injected discrepancy is found and attributed to its cause."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from llmtally.events import Provider
from llmtally.pricing import PriceOverride
from llmtally.reconcile.core import (
    BillingReport,
    Cause,
    CostLine,
    Metered,
    ReconciliationRow,
    Thresholds,
    TokenKind,
    UsageLine,
    day_totals,
    drift_alert_due,
    match_model,
    reconcile,
    unmetered_alert_due,
)

D1, D2, D3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
MODEL = "gpt-4o-mini-2024-07-18"
#: gpt-4o-mini per 1M tokens: input $0.15, cached input $0.075, output $0.60
PRICES = {
    TokenKind.INPUT: Decimal("0.15"),
    TokenKind.CACHE_READ: Decimal("0.075"),
    TokenKind.CACHE_WRITE: Decimal("0.15"),
    TokenKind.OUTPUT: Decimal("0.60"),
}
T = Thresholds()


def tokens(i: int = 0, cr: int = 0, cw: int = 0, o: int = 0) -> dict[TokenKind, int]:
    return {TokenKind.INPUT: i, TokenKind.CACHE_READ: cr, TokenKind.CACHE_WRITE: cw, TokenKind.OUTPUT: o}


def cost(toks: dict[TokenKind, int], prices: dict[TokenKind, Decimal] = PRICES) -> dict[TokenKind, int]:
    return {k: int(Decimal(v) * prices[k] * 1000) for k, v in toks.items()}  # nano-USD: tokens/1e6 × $ × 1e9


def billed(
    day: date,
    toks: dict[TokenKind, int],
    prices: dict[TokenKind, Decimal] = PRICES,
    key: str = "key_a",
    model: str = MODEL,
) -> tuple[list[UsageLine], list[CostLine]]:
    costs = cost(toks, prices)
    return (
        [UsageLine(day, model, toks, key, 10)],
        [CostLine(day, costs[k], f"{model}, {k.value}", model, k) for k in toks if costs[k]],
    )


def metered(toks: dict[TokenKind, int]) -> Metered:
    return Metered(tokens=toks, cost_nanos=sum(cost(toks).values()), requests=10)


def run(
    usage: list[UsageLine],
    costs: list[CostLine],
    meter: dict[date, dict[str, Metered]],
    start: date = D1,
    end: date = D3,
    settled_before: date = date(2026, 12, 1),
) -> list[ReconciliationRow]:
    report = BillingReport(Provider.OPENAI, start, end, tuple(usage), tuple(costs))
    return reconcile(
        "alice", report, meter, thresholds=T, settled_before=settled_before, unit_prices=lambda p, m, d: PRICES
    )


DAY_TOKENS = tokens(i=1_000_000, cr=200_000, o=300_000)


def test_a_bill_that_matches_the_meter_is_a_match_with_nothing_unmetered() -> None:
    # Given two days billed exactly as metered
    u1, c1 = billed(D1, DAY_TOKENS)
    u2, c2 = billed(D2, DAY_TOKENS)
    # When reconciled
    rows = run(u1 + u2, c1 + c2, {D1: {MODEL: metered(DAY_TOKENS)}, D2: {MODEL: metered(DAY_TOKENS)}})
    # Then each day is a match: no drift, no unmetered spend, no price feedback, no alert due
    assert [(r.day, r.cause, r.drift_nanos, r.unmetered_nanos, r.price_feedback) for r in rows] == [
        (D1, Cause.MATCH, 0, 0, ()),
        (D2, Cause.MATCH, 0, 0, ()),
    ]
    assert not any(drift_alert_due(t, T) or unmetered_alert_due(t, T) for t in day_totals(rows))


def test_a_wrong_price_is_attributed_to_the_model_and_kind_with_an_override() -> None:
    # Given output billed at $0.66/MTok while llmtally rates it at $0.60 (tokens identical)
    wrong = {**PRICES, TokenKind.OUTPUT: Decimal("0.66")}
    u, c = billed(D1, DAY_TOKENS, wrong)
    # When reconciled
    (row,) = run(u, c, {D1: {MODEL: metered(DAY_TOKENS)}}, end=D2)
    # Then the cause is the price, nothing is unmetered, and the feedback names output at $0.66
    assert row.cause is Cause.PRICE
    assert row.unmetered_nanos == 0
    assert row.drift_nanos == 18_000_000  # 300k × $0.06 / 1M = $0.018
    (feedback,) = row.price_feedback
    assert (feedback.kind, feedback.billed_mtok, feedback.metered_mtok) == (
        TokenKind.OUTPUT,
        Decimal("0.66"),
        Decimal("0.60"),
    )
    # And the suggested override is a valid entry of the override file, effective from the day
    override = PriceOverride.model_validate(feedback.suggested_override)
    assert override.output_mtok == Decimal("0.66")
    assert override.input_mtok == Decimal("0.15")
    assert override.effective_from is not None
    assert override.effective_from.date() == D1
    # And the day's drift alert is due, the unmetered one is not
    (totals,) = day_totals([row])
    assert drift_alert_due(totals, T)
    assert not unmetered_alert_due(totals, T)


def test_an_unmetered_script_on_another_key_is_unmetered_spend_at_the_billed_price() -> None:
    # Given the metered service's tokens plus a notebook's (another API key) on the same model
    extra = tokens(i=8_000_000, o=2_000_000)
    u1, c1 = billed(D1, DAY_TOKENS, key="key_service")
    u2, c2 = billed(D1, extra, key="key_notebook")
    # When reconciled against the service's metering only
    (row,) = run(u1 + u2, c1 + c2, {D1: {MODEL: metered(DAY_TOKENS)}}, end=D2)
    # Then the notebook's cost is unmetered spend (8M × $0.15 + 2M × $0.60 = $2.40), not a price
    assert row.cause is Cause.UNMETERED
    assert row.unmetered_nanos == 2_400_000_000
    assert row.price_drift_nanos == 0
    assert row.api_key_ids == ("key_notebook", "key_service")
    assert row.price_feedback == ()
    (totals,) = day_totals([row])
    assert unmetered_alert_due(totals, T)
    assert not drift_alert_due(totals, T)


def test_a_missing_day_of_events_is_told_apart_from_an_unmetered_model() -> None:
    # Given three billed days, and no events at all on the second
    lines = [billed(d, DAY_TOKENS) for d in (D1, D2, D3)]
    usage = [x for u, _ in lines for x in u]
    costs = [x for _, c in lines for x in c]
    meter = {D1: {MODEL: metered(DAY_TOKENS)}, D2: {}, D3: {MODEL: metered(DAY_TOKENS)}}
    # When reconciled
    rows = run(usage, costs, meter, end=date(2026, 11, 4))
    # Then the second day is a missing day, its whole bill unmetered; the others match
    assert [(r.day, r.cause) for r in rows] == [(D1, Cause.MATCH), (D2, Cause.MISSING_DAY), (D3, Cause.MATCH)]
    assert rows[1].unmetered_nanos == rows[1].billed_cost_nanos > 0


def test_a_model_nobody_meters_is_unmetered_not_a_missing_day() -> None:
    # Given a metered model and a second model only the bill knows
    u1, c1 = billed(D1, DAY_TOKENS)
    u2, c2 = billed(D1, tokens(i=1_000_000), model="gpt-4.1-nano-2025-04-14")
    rows = run(u1 + u2, c1 + c2, {D1: {MODEL: metered(DAY_TOKENS)}}, end=D2)
    assert {r.model: r.cause for r in rows} == {MODEL: Cause.MATCH, "gpt-4.1-nano-2025-04-14": Cause.UNMETERED}


def test_late_billing_data_is_provisional_and_never_alerts() -> None:
    # Given yesterday's bill with only half the tokens in yet (the provider is still counting)
    half = tokens(i=500_000, cr=100_000, o=150_000)
    u, c = billed(D2, half)
    # When reconciled with yesterday inside the settle window
    (row,) = run(u, c, {D2: {MODEL: metered(DAY_TOKENS)}}, start=D2, settled_before=D2)
    # Then it is provisional and overmetered, and no alert is due
    assert row.provisional
    assert row.cause is Cause.OVERMETERED
    (totals,) = day_totals([row])
    assert not drift_alert_due(totals, T)
    assert not unmetered_alert_due(totals, T)


def test_billed_snapshot_names_match_the_metered_alias() -> None:
    assert match_model("gpt-4o-mini-2024-07-18", ["gpt-4o-mini"], Provider.OPENAI) == "gpt-4o-mini"
    assert match_model("gpt-4o-2024-08-06", ["gpt-4o-mini"], Provider.OPENAI) is None
    assert match_model("gpt-4o-mini-2024-07-18", ["gpt-4o"], Provider.OPENAI) is None
    assert match_model("claude-sonnet-4-5-20250929", ["claude-sonnet-4-5"], Provider.ANTHROPIC) == "claude-sonnet-4-5"
    assert match_model("gpt-4", ["gpt-4-0613"], Provider.OPENAI) == "gpt-4-0613"
    bedrock_id = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
    assert match_model("Claude3.5Sonnet", [bedrock_id], Provider.BEDROCK) == bedrock_id


kinds = st.fixed_dictionaries({k: st.integers(0, 10**8) for k in TokenKind})


@given(kinds, kinds)
def test_drift_decomposes_into_unmetered_and_price(bill: dict[TokenKind, int], meter: dict[TokenKind, int]) -> None:
    # Given any billed and metered token counts at the same prices
    u, c = billed(D1, bill)
    rows = run(u, c, {D1: {MODEL: metered(meter)}}, end=D2)
    for row in rows:
        # Then drift is billed − metered, unmetered spend is within the bill, and the parts add up
        assert row.drift_nanos == row.billed_cost_nanos - row.metered_cost_nanos
        assert 0 <= row.unmetered_nanos <= row.billed_cost_nanos
        assert row.price_drift_nanos + row.unmetered_nanos == row.drift_nanos
        if bill == meter:
            assert row.cause is Cause.MATCH
            assert row.unmetered_nanos == 0


def test_a_mispriced_small_model_alerts_even_when_the_provider_day_is_within_the_threshold() -> None:
    # Given a big model billed as metered and a small one whose output is billed 20% above the catalog
    big = tokens(i=50_000_000, o=10_000_000)
    small = tokens(i=100_000, o=2_000_000)
    u1, c1 = billed(D1, big)
    u2, c2 = billed(D1, small, {**PRICES, TokenKind.OUTPUT: Decimal("0.72")}, model="gpt-4o-mini")
    meter = {D1: {MODEL: metered(big), "gpt-4o-mini": metered(small)}}
    # When reconciled
    rows = run(u1 + u2, c1 + c2, meter, end=D2)
    (totals,) = day_totals(rows)
    # Then the provider-day drift is under 2%, yet the model's price drift raises the drift alert
    assert totals.price_drift_percent is not None
    assert totals.price_drift_percent < 2
    assert drift_alert_due(totals, T)
    assert {r.model: r.cause for r in rows}["gpt-4o-mini"] is Cause.PRICE


def test_a_matching_row_gives_no_price_feedback_even_for_a_blended_kind() -> None:
    # Given cache writes billed at a blend of the 5-minute and 1-hour prices, and metered at the same cost
    toks = tokens(i=1_000_000, cw=1_000_000, o=100_000)
    blended = {**PRICES, TokenKind.CACHE_WRITE: Decimal("0.24")}  # llmtally's 5-minute price is $0.15
    u, c = billed(D1, toks, blended)
    meter = {D1: {MODEL: Metered(tokens=toks, cost_nanos=sum(cost(toks, blended).values()), requests=1)}}
    # When reconciled
    (row,) = run(u, c, meter, end=D2)
    # Then the row matches and claims no price difference
    assert row.cause is Cause.MATCH
    assert row.price_feedback == ()
