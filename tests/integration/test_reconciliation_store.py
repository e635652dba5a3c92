"""The reconciliation table: a run replaces its window's rows and never adds to them (any sequence of runs)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally.events import Provider
from llmtally.reconcile.core import Cause, ReconciliationRow, TokenKind
from tests.conftest import MotoServer

pytestmark = pytest.mark.integration

DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(4)]
MODELS = ("gpt-4o-mini", "gpt-4.1", "o4-mini")


def row(day: date, provider: Provider, model: str, billed: int) -> ReconciliationRow:
    kinds = dict.fromkeys(TokenKind, 0)
    return ReconciliationRow(
        user_id="alice",
        provider=provider,
        model=model,
        day=day,
        billed_tokens={**kinds, TokenKind.INPUT: billed},
        billed_cost_nanos=billed,
        billed_cost_by_kind=kinds,
        billed_other_nanos=0,
        metered_tokens=kinds,
        metered_cost_nanos=0,
        metered_requests=0,
        unmetered_nanos=billed,
        cause=Cause.UNMETERED,
        provisional=False,
    )


cells = st.sets(st.tuples(st.sampled_from(DAYS), st.sampled_from(MODELS)), max_size=8)
runs = st.lists(st.tuples(cells, st.integers(1, 10**12), st.integers(0, 2), st.integers(1, 4)), min_size=1, max_size=4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs)
def test_the_stored_rows_are_the_last_run_of_each_day(
    stack: MotoServer, runs: list[tuple[set[tuple[date, str]], int, int, int]]
) -> None:
    from llmtally.repositories.reconciliation import ReconciliationRepository

    store = ReconciliationRepository()
    for item in store.rows("alice", DAYS[0], DAYS[-1]):  # a clean slate per example
        store.replace_rows("alice", item.provider, [item.day], [], computed_at=datetime.now(UTC))
    # Given an Anthropic row that no OpenAI run may touch
    other = row(DAYS[0], Provider.ANTHROPIC, "claude-sonnet-4-5", 7)
    store.replace_rows("alice", Provider.ANTHROPIC, [DAYS[0]], [other], computed_at=datetime.now(UTC))
    expected: dict[tuple[date, str], int] = {}
    # When OpenAI runs replace windows of days, in any order, with any rows
    for cells_of_run, amount, first, length in runs:
        window = DAYS[first : first + length]
        new = [row(d, Provider.OPENAI, m, amount) for d, m in cells_of_run if d in window]
        store.replace_rows("alice", Provider.OPENAI, window, new, computed_at=datetime.now(UTC))
        expected = {k: v for k, v in expected.items() if k[0] not in window}
        expected.update({(r.day, r.model): r.billed_cost_nanos for r in new})
    # Then each day holds exactly the last run's rows for it, and the Anthropic row is untouched
    stored = store.rows("alice", DAYS[0], DAYS[-1])
    assert {(r.day, r.model): r.billed_cost_nanos for r in stored if r.provider is Provider.OPENAI} == expected
    assert [r for r in stored if r.provider is Provider.ANTHROPIC] == [other]


@pytest.fixture
def stack(moto: MotoServer) -> MotoServer:
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    create_tables(moto.client("dynamodb"), get_settings().names)
    return moto
