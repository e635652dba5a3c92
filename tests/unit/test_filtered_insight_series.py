"""The insights' filtered inputs equal brute force: under any `where`, each operation's counters
(the recommendations' token mix) and the daily cost series (the forecast's and the anomaly scan's)
are exactly the selected calls', in odd timezones too. Rollups in memory (`test_queries.MemoryRollups`)."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.api.insights import InsightsService
from llmtally.pricing import default_price_book
from llmtally.queries import Filter, InvalidQueryError, local_midnight
from llmtally.recommendations import operation_totals
from llmtally.rollups import Counters
from tests.unit.test_queries import WHERES, ZONES, MemoryRollups, _attrs, tagged_entries
from tests.unit.test_rollups import Entry


def _selected(entries: list[Entry], where: Filter | None) -> list[Entry]:
    return [e for e in entries if where is None or _attrs(e).get(where.dimension) == where.value]


@given(tagged_entries, st.sampled_from(WHERES), st.sampled_from(ZONES))
def test_each_operations_counters_under_a_filter_equal_brute_force(
    entries: list[Entry], where: Filter | None, tz: str
) -> None:
    # Given tagged calls over three weeks and any filter
    first, last = date(2025, 2, 22), date(2025, 3, 10)
    low, high = local_midnight(first, ZoneInfo(tz)), local_midnight(last + timedelta(days=1), ZoneInfo(tz))
    # When each operation's counters are read under the filter
    totals = operation_totals("acme", first, last, tz, repository=MemoryRollups(entries), where=where)
    # Then they are the selected calls' of the range, operation by operation
    expected: dict[str, Counters] = {}
    for e in _selected(entries, where):
        if low <= e.timestamp < high:
            expected.setdefault(e.operation_type, Counters()).add(Counters.of(e))
    assert {op: c for op, c in totals.items() if c.requests} == expected


@given(tagged_entries, st.sampled_from(WHERES), st.sampled_from(ZONES))
def test_the_daily_cost_series_under_a_filter_equals_brute_force(
    entries: list[Entry], where: Filter | None, tz: str
) -> None:
    # Given the same calls, and the insights service over them
    repo = MemoryRollups(entries)
    service = InsightsService(lambda: repo, default_price_book)
    today, days = date(2025, 3, 12), 21
    # When the daily costs are read under the filter
    costs = service.daily_costs("acme", days, tz, today, where)
    # Then each local day's cost is the selected calls' of that day
    zone = ZoneInfo(tz)
    expected = [0] * days
    first = today - timedelta(days=days - 1)
    for e in _selected(entries, where):
        index = (e.timestamp.astimezone(zone).date() - first).days
        if 0 <= index < days:
            expected[index] += e.cost_nanos
    assert costs == expected


def test_the_untagged_remainder_is_refused_as_a_filter_rather_than_answered_zero() -> None:
    # When a where names the breakdown's (none) row (no call is rolled up under it)
    # Then it is refused with the reason, on every route that parses where (they share the parser)
    with pytest.raises(InvalidQueryError, match=r"\(none\) \(the calls without the key\) is the breakdown's remainder"):
        Filter.parse("tag:customer:(none)")
    # And (other), a value calls are rolled up under, is a filter
    assert Filter.parse("tag:customer:(other)") == Filter("tag:customer", "(other)")
