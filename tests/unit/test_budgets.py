"""The budget domain: validation, the local period, thresholds, the state, the alert event, the worst case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmtally.budgets import (
    Budget,
    BudgetAction,
    BudgetAlert,
    BudgetStatus,
    SwitchTarget,
    crossed_thresholds,
    period_by_key,
    period_of,
)
from llmtally.events import Provider, TokenCounts
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers.budget import worst_case_nanos

DOLLAR = 10**9


@pytest.mark.parametrize(
    ("tz", "last_of_october", "first_of_november"),
    [
        # UTC−8 in November (PST; PDT ends on the 1st at 02:00): local midnight is 07:00Z on the 1st
        ("America/Los_Angeles", datetime(2026, 11, 1, 6, 59, 59, tzinfo=UTC), datetime(2026, 11, 1, 7, 0, tzinfo=UTC)),
        # UTC+5:30: local midnight of the 1st is 18:30Z on the 31st
        ("Asia/Kolkata", datetime(2026, 10, 31, 18, 29, 59, tzinfo=UTC), datetime(2026, 10, 31, 18, 30, tzinfo=UTC)),
    ],
)
def test_the_period_turns_at_local_midnight_of_the_first(
    tz: str, last_of_october: datetime, first_of_november: datetime
) -> None:
    assert period_of(last_of_october, tz).key == "2026-10"
    november = period_of(first_of_november, tz)
    assert november.key == "2026-11"
    assert november.start_utc == first_of_november
    assert november.start == datetime(2026, 11, 1, tzinfo=ZoneInfo(tz))
    assert november.end == datetime(2026, 12, 1, tzinfo=ZoneInfo(tz))
    assert period_by_key("2026-11", tz) == november


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 1), timezones=st.just(UTC)))
@settings(max_examples=200)
def test_an_instant_lies_in_its_period_in_every_zone(at: datetime) -> None:
    for tz in ("UTC", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        period = period_of(at, tz)
        assert period.contains(at)
        assert period.start_utc < period.end_utc <= period.start_utc + timedelta(days=31, hours=2)


def test_thresholds_are_sorted_distinct_and_bounded() -> None:
    assert Budget(limit_nanos=DOLLAR, thresholds=(100, 50)).thresholds == (50, 100)
    for bad in ((), (50, 50), (0,), (1001,), tuple(range(1, 12))):
        with pytest.raises(ValidationError):
            Budget(limit_nanos=DOLLAR, thresholds=bad)


def test_switch_needs_a_target_and_strict_needs_enforcement() -> None:
    target = SwitchTarget(provider=Provider.OPENAI, model="gpt-5-mini")
    assert Budget(limit_nanos=DOLLAR, action=BudgetAction.SWITCH, switch_to=target, strict=True).strict
    with pytest.raises(ValidationError, match="needs switchTo"):
        Budget(limit_nanos=DOLLAR, action=BudgetAction.SWITCH)
    with pytest.raises(ValidationError, match="only used with the switch action"):
        Budget(limit_nanos=DOLLAR, switch_to=target)
    with pytest.raises(ValidationError, match="block or switch"):
        Budget(limit_nanos=DOLLAR, strict=True)
    with pytest.raises(ValidationError, match="unknown timezone"):
        Budget(limit_nanos=DOLLAR, timezone="Europe/Atlantis")


def test_a_threshold_is_reached_at_its_exact_share_rounded_up() -> None:
    budget = Budget(limit_nanos=3, thresholds=(50, 100))
    assert budget.threshold_nanos(50) == 2  # 1.5 nanos rounds up: 1 nano is not half of 3
    assert crossed_thresholds(budget, 1) == []
    assert crossed_thresholds(budget, 2) == [50]
    assert crossed_thresholds(budget, 3) == [50, 100]


def test_the_state_counts_reservations() -> None:
    budget = Budget(limit_nanos=DOLLAR)
    period = budget.period(datetime(2026, 11, 15, tzinfo=UTC))
    assert BudgetStatus(budget, period, 40 * DOLLAR // 100).state == "ok"
    assert BudgetStatus(budget, period, 40 * DOLLAR // 100, 10 * DOLLAR // 100).state == "warning"
    exhausted = BudgetStatus(budget, period, 90 * DOLLAR // 100, 10 * DOLLAR // 100)
    assert exhausted.exhausted
    assert exhausted.as_api()["remainingUsd"] == Decimal(0)
    assert exhausted.as_api()["percentUsed"] == Decimal("100.0")


def test_the_alert_event_carries_exact_money_and_a_stable_id() -> None:
    alert = BudgetAlert(
        user_id="u1",
        period="2026-11",
        timezone="Asia/Kolkata",
        threshold_percent=80,
        limit_nanos=30 * DOLLAR,
        spent_nanos=usd_to_nanos(Decimal("24.123456789")),
        action=BudgetAction.BLOCK,
        crossed_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    detail = alert.detail()
    assert detail["alert_id"] == "u1:2026-11:80"
    assert (detail["limit_usd"], detail["spent_usd"], detail["percent_used"]) == (
        "30.000000000",
        "24.123456789",
        "80.4",
    )
    assert detail["crossed_at"] == "2026-11-20T10:00:00.000Z"


@given(
    prompt=st.text(max_size=400),
    input_tokens=st.integers(min_value=0, max_value=400),
    cache_write=st.integers(min_value=0, max_value=400),
    output=st.integers(min_value=0, max_value=256),
    reasoning=st.integers(min_value=0, max_value=256),
)
@settings(max_examples=200, deadline=None)
def test_the_worst_case_bounds_any_bill_the_call_can_produce(
    prompt: str, input_tokens: int, cache_write: int, output: int, reasoning: int
) -> None:
    # Any bill whose input buckets hold at most the prompt's bytes and whose output buckets hold
    # at most max_tokens costs no more than the reservation
    bound = len(prompt.encode()) + 16
    max_tokens = 512
    split_in = min(input_tokens, bound)
    tokens = TokenCounts(
        input_tokens=split_in,
        cache_write_tokens=min(cache_write, bound - split_in),
        output_tokens=min(output, max_tokens),
        reasoning_tokens=min(reasoning, max_tokens - min(output, max_tokens)),
    )
    for provider, model in ((Provider.ANTHROPIC, "claude-sonnet-4-6"), (Provider.OPENAI, "gpt-5-mini")):
        worst = worst_case_nanos(provider, model, prompt=prompt, messages=None, system=None, max_tokens=max_tokens)
        assert PriceBook().price(provider, model, tokens).cost_nanos <= worst


def test_strict_cannot_reserve_for_an_unpriced_model() -> None:
    with pytest.raises(ValueError, match="no price is known"):
        worst_case_nanos(Provider.ANTHROPIC, "claude-private-ft", prompt="q", messages=None, system=None, max_tokens=10)
