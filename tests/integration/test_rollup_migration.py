"""Moving a deployment's rollups to the issue 17 layout with `llmtally rebuild`, without losing a cent.

The layout before: 15-minute, hour, day and month items of total, provider, model and operation,
written in transactions, no tag dimensions, no cells. The table is built here exactly so (from raw
entries already ingested, some tagged), then read by today's code before and after the documented
migration (`llmtally rebuild --user … --days 89`, docs/pipeline.md, "Migrating to the tag layout").
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from llmtally import aws, cli
from llmtally.entries import RawEntry, raw_entry_item
from llmtally.events import UsageEvent
from llmtally.pricing import PriceBook
from llmtally.queries import Filter, breakdown, daily_usage, summarize
from llmtally.repositories.rollups import MAX_TRANSACTION_ITEMS, RollupItem, RollupRepository
from llmtally.repositories.usage import UsageRepository
from llmtally.resources import ResourceNames
from llmtally.rollups import (
    Counters,
    Dimension,
    Granularity,
    RollupKey,
    coalesce,
    entry_tags,
    model_value,
    sum_counters,
)
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    random_events,
)

pytestmark = pytest.mark.integration

USER = "acme"
CUSTOMERS = ("c-1", "c-2", "c-3")
OLD_GRANULARITIES = (Granularity.QUARTER, Granularity.HOUR, Granularity.DAY, Granularity.MONTH)


def old_layout(entries: list[RawEntry]) -> dict[RollupKey, Counters]:
    """The rollups the aggregator wrote before issue 17."""
    out: dict[RollupKey, Counters] = {}
    for entry in entries:
        contribution = Counters.of(entry)
        provider = entry.provider.value
        for granularity in OLD_GRANULARITIES:
            bucket = granularity.floor(entry.timestamp)
            for dimension, value in (
                (Dimension.TOTAL, "*"),
                (Dimension.PROVIDER, provider),
                (Dimension.MODEL, model_value(provider, entry.model)),
                (Dimension.OPERATION, entry.operation_type),
            ):
                out.setdefault(RollupKey(USER, granularity, dimension, bucket, value), Counters()).add(contribution)
    return out


def stored() -> dict[RollupKey, Counters]:
    from llmtally.repositories._dynamodb import deserialize

    client = aws.client("dynamodb")
    out = {}
    kwargs = {"TableName": ResourceNames().rollups_table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        for raw in page["Items"]:
            item = deserialize(raw)
            if item["pk"].startswith("R#"):
                parsed = RollupItem.from_attributes(item)
                out[parsed.key] = parsed.counters
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_rebuild_moves_old_rollups_to_the_tag_layout_with_equal_summaries_and_series(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given raw entries of the last 5 days, a third of them tagged, and the rollups the previous
    # version aggregated from them
    create_tables(aws.client("dynamodb"), ResourceNames())
    now = datetime.now(UTC)
    start = (now - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(17)
    events: list[UsageEvent] = []
    for event in random_events(rng, 60, [USER], start, 24 * 4):
        tags = {"customer": rng.choice(CUSTOMERS)} if rng.random() < 0.34 else {}
        events.append(event.model_copy(update={"tags": tags}))
    book = PriceBook()
    usage = UsageRepository()
    for event in events:
        assert usage.put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=now))
    entries = list(usage.iter_entries(USER))
    repo = RollupRepository()
    updates = [repo.delta(key, counters) for key, counters in old_layout(entries).items()]
    for index in range(0, len(updates), MAX_TRANSACTION_ITEMS):
        repo.transact(updates[index : index + MAX_TRANSACTION_ITEMS])
    # When today's code reads them (before the migration)
    zones = ("UTC", "Asia/Kolkata", "Australia/Eucla")
    today = now.date()
    before = [summarize(USER, today - timedelta(days=6), today, tz).model_dump() for tz in zones]
    series_before = [daily_usage(USER, 7, tz, today=today).days for tz in zones]
    # Then the summaries and series are already right: quarter, hour and day items were written
    assert before[0]["total_requests"] == len(entries)
    assert before[0]["total_cost_usd"] == summarize(USER, start.date(), today).total_cost_usd

    # When the documented migration runs: `llmtally rebuild --user acme --days 89`
    monkeypatch.setattr(cli, "use_target", lambda *_: type("T", (), {"description": "moto"})())
    assert cli.main(["rebuild", "--user", USER, "--days", "89"]) == 0

    # Then summaries and series are equal, to the nano-dollar, in every zone
    def figures(summary: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in summary.items() if k not in ("items_read", "queries")}

    after = [summarize(USER, today - timedelta(days=6), today, tz).model_dump() for tz in zones]
    assert [figures(a) for a in after] == [figures(b) for b in before]
    assert [daily_usage(USER, 7, tz, today=today).days for tz in zones] == series_before
    # And every rollup of the new layout (cells, tag dimensions) equals a recomputation
    new_layout = {k: v for k, v in stored().items() if k.granularity is not Granularity.MONTH and not v.is_zero()}
    assert new_layout == coalesce(entries)
    # And the tag breakdown and a where filter answer exactly
    result = breakdown(USER, "tag:customer", today - timedelta(days=6), today)
    by_value = {row.value: row.counters for row in result.rows}
    for customer in CUSTOMERS:
        mine = [e for e in entries if entry_tags(e).get("customer") == customer]
        assert by_value.get(customer, Counters()) == sum_counters(Counters.of(e) for e in mine)
    assert result.total.counters == sum_counters(Counters.of(e) for e in entries)
    some_model = entries[0].model
    filtered = summarize(USER, today - timedelta(days=6), today, where=Filter("model", some_model))
    assert filtered.total_requests == sum(1 for e in entries if e.model == some_model)
    # And a second run changes nothing
    assert cli.main(["rebuild", "--user", USER, "--days", "89"]) == 0
    assert {k: v for k, v in stored().items() if k.granularity is not Granularity.MONTH and not v.is_zero()} == (
        coalesce(entries)
    )
