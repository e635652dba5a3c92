"""Moving a deployment's rollups to the packed layout with `llmtally migrate-rollups`, without losing a cent.

The layout before the packed one: one item per logical rollup key (`pk = R#{user}#{granularity}#
{dimension}`, `sk = {bucket}#{value}`, counters by their full names) at 15m, 1h and 1d (1mo items
from older versions too), for total, provider, model, operation, cell and per tag key `tag:{key}`
and `tagcell:{key}`. The table is built here exactly so for the entries ingested before the deploy
(their raw entries in the usage table, their stream records never delivered again: the old
aggregator applied them), while the entries after the deploy go through today's aggregator into
packed items — some in the same quarters and days as old items. Every read is compared with a
brute-force recomputation from the raw entries, in UTC and in zones 30 and 45 minutes off the hour.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmtally import aws, cli
from llmtally.entries import RawEntry, raw_entry_item
from llmtally.errors import StorageError
from llmtally.events import UsageEvent
from llmtally.migrate import migrate_all, migrate_tenant
from llmtally.money import nanos_to_usd
from llmtally.pricing import PriceBook
from llmtally.queries import Filter, breakdown, daily_usage, summarize
from llmtally.repositories._dynamodb import deserialize, serialize
from llmtally.repositories.legacy_rollups import MIGRATED_ATTRIBUTE
from llmtally.repositories.rollups import RollupRepository
from llmtally.repositories.usage import UsageRepository
from llmtally.resources import ResourceNames
from llmtally.rollups import (
    NO_TAG_VALUE,
    Counters,
    Dimension,
    Granularity,
    RollupKey,
    coalesce,
    entry_tags,
    sum_counters,
)
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    deliver,
    failing_call,
    random_events,
    read_stream,
    stream_arn,
)

pytestmark = pytest.mark.integration

USERS = ("acme", "globex")
TAGS = {"customer": ("c-1", "c-2", "c-3"), "team": ("search", "billing")}
OLD_GRANULARITIES = (Granularity.QUARTER, Granularity.HOUR, Granularity.DAY, Granularity.MONTH)
ZONES = ("UTC", "Asia/Kolkata", "Australia/Eucla")
DAYS = 7


def old_layout(entries: Sequence[RawEntry]) -> dict[RollupKey, Counters]:
    """The rollups the aggregator wrote before the packed layout: every logical key, every granularity."""
    return coalesce(entries, OLD_GRANULARITIES)


def write_old_layout(items: dict[RollupKey, Counters]) -> None:
    client = aws.client("dynamodb")
    table = ResourceNames().rollups_table
    puts = [
        {
            "PutRequest": {
                "Item": serialize(
                    {
                        "pk": key.pk,
                        "sk": key.sk,
                        "expires_at": key.expires_at(400),
                        **{name: amount for name, amount in counters.as_dict().items() if amount},
                    }
                )
            }
        }
        for key, counters in items.items()
    ]
    for index in range(0, len(puts), 25):
        response = client.batch_write_item(RequestItems={table: puts[index : index + 25]})
        assert not response.get("UnprocessedItems")


def old_items() -> dict[tuple[str, str], dict[str, Any]]:
    client = aws.client("dynamodb")
    out = {}
    kwargs: dict[str, Any] = {"TableName": ResourceNames().rollups_table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        for raw in page["Items"]:
            item = deserialize(raw)
            if item["pk"].startswith("R#"):
                out[(item["pk"], item["sk"])] = item
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def packed_snapshot() -> dict[tuple[str, str], dict[str, Counters]]:
    repo = RollupRepository()
    return {(i.key.pk, i.key.sk): i.cells for user in USERS for i in repo.iter_packed(user, TAGS)}


@pytest.fixture
def deployment(moto: MotoServer) -> list[RawEntry]:
    """Five days of tagged entries: those before the deploy in the old layout, the rest (from six
    hours before the deploy: late arrivals share quarters and days with old items) aggregated by
    today's code into packed items. Returns every raw entry."""
    create_tables(aws.client("dynamodb"), ResourceNames())
    now = datetime.now(UTC)
    start = (now - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    deploy = now - timedelta(hours=20, minutes=7)
    rng = random.Random(17)

    def tagged(events: list[UsageEvent]) -> list[UsageEvent]:
        out = []
        for event in events:
            tags = {key: rng.choice(values) for key, values in TAGS.items() if rng.random() < 0.45}
            out.append(event.model_copy(update={"tags": tags}))
        return out

    before = tagged(random_events(rng, 110, USERS, start, int((deploy - start).total_seconds() // 3600)))
    late_start = deploy - timedelta(hours=6)
    after = tagged(random_events(rng, 40, USERS, late_start, int((now - late_start).total_seconds() // 3600)))
    book = PriceBook()
    usage = UsageRepository()
    for event in before:
        assert usage.put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=now))
    old_entries = [e for user in USERS for e in usage.iter_entries(user)]
    write_old_layout(old_layout(old_entries))

    arn = stream_arn()
    applied = read_stream(arn)[-1]["dynamodb"]["SequenceNumber"]  # what the old aggregator applied
    for event in after:
        assert usage.put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=now))
    deliver(read_stream(arn, applied), arn)
    return [e for user in USERS for e in usage.iter_entries(user)]


# -- brute force from the raw entries ---------------------------------------------------------------


def _midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, datetime.min.time(), ZoneInfo(tz))


def _where_value(entry: RawEntry, dimension: str) -> str:
    if dimension == "provider":
        return str(entry.provider)
    if dimension == "model":
        return entry.model
    if dimension == "operation":
        return entry.operation_type
    return entry_tags(entry).get(dimension.removeprefix("tag:"), NO_TAG_VALUE)


def _selected(
    entries: Sequence[RawEntry], user: str, low: datetime, high: datetime, where: Filter | None
) -> list[RawEntry]:
    return [
        e
        for e in entries
        if e.user_id == user
        and low <= e.timestamp < high
        and (where is None or _where_value(e, where.dimension) == where.value)
    ]


BREAKDOWNS: tuple[tuple[str, Filter | None], ...] = (
    ("provider", None),
    ("model", None),
    ("operation", None),
    ("tag:customer", None),
    ("tag:team", None),
    ("model", Filter("tag:customer", "c-1")),
    ("tag:customer", Filter("provider", "openai")),
    ("operation", Filter("model", "gpt-5")),
    ("tag:team", Filter("operation", "conversation")),
)
SUMMARY_FILTERS: tuple[Filter | None, ...] = (None, Filter("tag:customer", "c-2"), Filter("provider", "anthropic"))


def reads(user: str, today: date) -> dict[str, Any]:
    """Everything compared: summaries, daily series and breakdowns, per zone, from the rollups."""
    out: dict[str, Any] = {}
    first = today - timedelta(days=DAYS - 1)
    for tz in ZONES:
        for where in SUMMARY_FILTERS:
            s = summarize(user, first, today, tz, where=where)  # the end date is inclusive
            out[f"summary {tz} {where and where.as_dict()}"] = (
                s.total_requests,
                s.total_tokens,
                s.total_cost_usd,
                s.billed_cost_usd,
                s.errors,
                {p: (b.requests, b.cost_usd) for p, b in s.by_provider.items() if b.requests},
            )
            series = daily_usage(user, DAYS, tz, today=today, where=where).days
            out[f"daily {tz} {where and where.as_dict()}"] = [
                (d.date, d.requests, d.tokens, d.cost_usd, d.errors) for d in series
            ]
        for by, where in BREAKDOWNS:
            result = breakdown(user, by, first, today, tz, where=where, limit=100)
            rows = {(row.value, row.provider): row.counters for row in result.rows}
            out[f"breakdown {tz} {by} {where and where.as_dict()}"] = (rows, result.total.counters)
    return out


def brute(entries: Sequence[RawEntry], user: str, today: date) -> dict[str, Any]:
    """`reads`, computed from the raw entries."""
    out: dict[str, Any] = {}
    first = today - timedelta(days=DAYS - 1)
    for tz in ZONES:
        low, high = _midnight(first, tz), _midnight(today + timedelta(days=1), tz)
        for where in SUMMARY_FILTERS:
            mine = _selected(entries, user, low, high, where)
            total = sum_counters(Counters.of(e) for e in mine)
            providers: dict[str, Counters] = {}
            for e in mine:
                providers.setdefault(str(e.provider), Counters()).add(Counters.of(e))
            out[f"summary {tz} {where and where.as_dict()}"] = (
                total.requests,
                total.total_tokens,
                nanos_to_usd(total.cost_nanos),
                nanos_to_usd(total.billed_cost_nanos),
                total.errors,
                {p: (c.requests, nanos_to_usd(c.cost_nanos)) for p, c in providers.items()},
            )
            days = []
            for offset in range(DAYS):
                day = first + timedelta(days=offset)
                on = sum_counters(
                    Counters.of(e)
                    for e in _selected(entries, user, _midnight(day, tz), _midnight(day + timedelta(days=1), tz), where)
                )
                days.append((day, on.requests, on.total_tokens, nanos_to_usd(on.cost_nanos), on.errors))
            out[f"daily {tz} {where and where.as_dict()}"] = days
        for by, where in BREAKDOWNS:
            rows: dict[tuple[str, str | None], Counters] = {}
            mine = _selected(entries, user, low, high, where)
            for e in mine:
                row = (_where_value(e, by), str(e.provider) if by == "model" else None)
                rows.setdefault(row, Counters()).add(Counters.of(e))
            out[f"breakdown {tz} {by} {where and where.as_dict()}"] = (rows, sum_counters(Counters.of(e) for e in mine))
    return out


def assert_rollups_exact(entries: Sequence[RawEntry]) -> None:
    """Every logical rollup the packed items stand for equals a recomputation from the entries."""
    repo = RollupRepository()
    stored = {i.key: i.counters for u in USERS for i in repo.iter_user_items(u, TAGS) if not i.counters.is_zero()}
    expected = coalesce(entries)
    assert [k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k)] == []


def assert_exact(entries: Sequence[RawEntry]) -> None:
    assert_rollups_exact(entries)
    # and so does every read
    today = datetime.now(UTC).date()
    for user in USERS:
        got, want = reads(user, today), brute(entries, user, today)
        assert got.keys() == want.keys()
        for key, figures in want.items():
            assert got[key] == figures, f"{user}: {key}"


# -- tests ---------------------------------------------------------------------------------------


def _use_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "use_target", lambda *_: type("T", (), {"description": "moto"})())


def test_the_migration_moves_every_cent_and_a_second_run_changes_nothing(
    deployment: list[RawEntry], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = deployment
    today = datetime.now(UTC).date()
    # Before the migration, periods before the deploy read low: only the packed items' share
    low_before = reads("acme", today)
    truth = brute(entries, "acme", today)
    key = f"summary UTC {None}"
    assert 0 < low_before[key][0] < truth[key][0]

    # When `llmtally migrate-rollups --all` runs
    _use_moto(monkeypatch)
    assert cli.main(["migrate-rollups", "--all"]) == 0
    printed = capsys.readouterr().out
    assert "acme:" in printed
    assert "globex:" in printed
    assert "do not add up" not in printed

    # Then summaries, daily series and breakdowns, filtered or not, in every zone, are exact
    assert_exact(entries)
    # And every old leaf (cell, tagcell at 15m and 1d) is marked; nothing else is
    for (pk, _), item in old_items().items():
        granularity, dimension = pk.split("#", 3)[2:]
        leaf = granularity in ("15m", "1d") and (dimension == Dimension.CELL or dimension.startswith("tagcell:"))
        assert item.get(MIGRATED_ATTRIBUTE, False) is leaf, pk

    # And a second run (one tenant, by API) moves nothing and changes nothing
    snapshot = packed_snapshot()
    report = migrate_tenant("acme", TAGS, registry_keys=False)
    assert report["items_migrated"] == 0
    assert report["transactions"] == 0
    assert report["items_already_migrated"] == report["items_read"] > 0
    assert report["unmatched"] == []
    assert packed_snapshot() == snapshot  # so every read above still holds


@pytest.mark.parametrize("lost", [False, True], ids=["refused", "answer-lost"])
def test_an_interrupted_migration_rerun_gives_the_same_result(deployment: list[RawEntry], lost: bool) -> None:
    # Given a migration that stops at its 4th transaction (refused, or landed with its answer lost)
    with failing_call("TransactWriteItems", nth=4, after=lost) as calls, pytest.raises(StorageError):
        migrate_all()
    assert calls[0] == 4
    leaves = [k for k in old_items() if k[0].split("#")[2] in ("15m", "1d") and "cell" in k[0].split("#", 3)[3]]
    marked = sum(1 for item in old_items().values() if item.get(MIGRATED_ATTRIBUTE))
    assert 0 < marked < len(leaves)
    # When it is run again (twice)
    reports = migrate_all()
    assert sum(r["items_already_migrated"] for r in reports) == marked
    assert sum(r["items_migrated"] for r in reports) == len(leaves) - marked
    migrate_all()
    # Then every rollup is exact, as if it had never stopped (the reads of exact rollups are the
    # first test's)
    assert_rollups_exact(deployment)


def test_cells_that_do_not_add_up_to_the_total_are_reported(deployment: list[RawEntry]) -> None:
    # Given an old day whose cells were never written (a deployment older than the cell dimension)
    old = old_items()
    day_cells = [k for k in old if k[0] == "R#acme#1d#cell"]
    victim = sorted(day_cells)[0]
    aws.client("dynamodb").delete_item(
        TableName=ResourceNames().rollups_table, Key=serialize({"pk": victim[0], "sk": victim[1]})
    )
    # When it is migrated
    report = migrate_tenant("acme", TAGS, registry_keys=False)
    # Then that day is named (a rebuild of it restores it from the raw entries)
    bucket = victim[1].split("#", 1)[0]
    assert report["unmatched"] == [f"1d {bucket} total"]
