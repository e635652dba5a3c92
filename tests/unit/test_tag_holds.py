"""Strict tag budgets' pure parts: the hold named in an event's metadata, what a call's holds put in
its event, and the ledger period each hold is released from (docs/budgets.md, "Strict tag budgets")."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.budget_alerts import _TagBudget
from llmtally.budgets import (
    STRICT_PERIOD_METADATA,
    TAG_HOLD_METADATA,
    Budget,
    TagScope,
    format_tag_hold,
    parse_tag_hold,
)
from llmtally.events import check_metadata
from llmtally.providers.budget import StrictHold
from llmtally.repositories.budgets import new_hold_id

C42 = TagScope(key="customer", value="c-42")


@given(hold_id=st.text("0123456789abcdef", min_size=1, max_size=32), at=st.integers(0, 10**12 - 1))
def test_a_hold_reads_back_as_written(hold_id: str, at: int) -> None:
    # Given a hold id and the instant it was taken, When written as metadata and read back
    # Then both come back unchanged
    assert parse_tag_hold(format_tag_hold(hold_id, at)) == (hold_id, at)


@given(text=st.one_of(st.text(max_size=80), st.integers(), st.none(), st.booleans()))
def test_any_metadata_value_parses_to_a_hold_or_to_nothing(text: object) -> None:
    # Given an untrusted metadata value (an event from any producer)
    parsed = parse_tag_hold(text)
    # Then it is a well-formed hold or nothing: never an exception, never an odd id
    if parsed is not None:
        hold_id, at = parsed
        assert set(hold_id) <= set("0123456789abcdef")
        assert 0 <= at < 10**12


@pytest.mark.parametrize(
    "text",
    ["", "@1", "abc", "abc@", "ABC@1", "abc@-1", "abc@1.5", "abc@١٢", "a" * 33 + "@1", "abc@1@2", "abc@ 1"],
)
def test_malformed_holds_release_nothing(text: str) -> None:
    assert parse_tag_hold(text) is None


def reservation(tag: TagScope | None, period: str = "2026-11") -> SimpleNamespace:
    return SimpleNamespace(tag=tag, period=period)


def test_a_calls_holds_name_the_ledgers_the_aggregator_releases() -> None:
    hold_id = new_hold_id()
    # Given only the tenant's strict budget: the period only, as before tag budgets were strict
    assert StrictHold((reservation(None),), hold_id, 1_796_000_000).metadata() == {STRICT_PERIOD_METADATA: "2026-11"}
    # Given only tag budgets: the hold id and instant only (no tenant ledger to release from)
    tags_only = StrictHold((reservation(C42),), hold_id, 1_796_000_000)
    assert tags_only.metadata() == {TAG_HOLD_METADATA: f"{hold_id}@1796000000"}
    assert tags_only.period is None
    # Given both: both, and valid event metadata
    both = StrictHold((reservation(None), reservation(C42)), hold_id, 1_796_000_000).metadata()
    assert both == {STRICT_PERIOD_METADATA: "2026-11", TAG_HOLD_METADATA: f"{hold_id}@1796000000"}
    assert check_metadata(dict(both)) == both


def test_holds_are_released_from_the_period_they_were_taken_in_in_the_budgets_zone() -> None:
    # Given a Los Angeles tag budget and two holds, taken ten minutes either side of local midnight
    # of November 1st (07:00Z)
    budget = Budget(limit_nanos=10**9, timezone="America/Los_Angeles")
    before = int(datetime(2026, 11, 1, 6, 50, tzinfo=UTC).timestamp())
    after = int(datetime(2026, 11, 1, 7, 10, tzinfo=UTC).timestamp())
    scoped = _TagBudget(C42, budget, budget.period(datetime(2026, 11, 1, 8, tzinfo=UTC)), {"aa": before, "bb": after})
    # Then each is released from its own period's ledger
    assert scoped.holds_by_period() == {"2026-10": ["aa"], "2026-11": ["bb"]}
