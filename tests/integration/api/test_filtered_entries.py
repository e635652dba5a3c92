"""The recent calls and the CSV export follow the dashboard's filter chip (`where`), end to end on moto.

`where` is the summary's filter, parsed by the same `Filter.parse` (same 400s). A tag matches the
value a call was *rolled up* under (`llmtally.rollups.entry_tags`): the folded `(other)` for a value
past the tenant's bound, else the value as sent — so the filtered entries are exactly the calls the
filtered summary counts. The read and body bounds hold: a selective tag filter answers sparse pages
(even empty ones) with a cursor, and following the cursor returns every match once.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally import aws
from llmtally.api.config import ApiSettings
from llmtally.api.usage import EntryFilters, UsageService
from llmtally.entries import RawEntry, raw_entry_item
from llmtally.events import UsageEvent
from llmtally.money import nanos_to_usd
from llmtally.pricing import PriceBook
from llmtally.repositories._dynamodb import serialize
from llmtally.repositories.rollups import RollupRepository
from llmtally.repositories.usage import UsageRepository
from llmtally.rollups import entry_tags
from llmtally.settings import get_settings
from tests.conftest import MotoServer
from tests.integration.api import test_entries_bounds, test_usage_breakdown_routes
from tests.integration.api.conftest import ALICE
from tests.integration.api.test_usage_breakdown_routes import brute
from tests.integration.api.test_usage_routes import get
from tests.integration.test_aggregate import cheap_transaction_backups  # noqa: F401  (an autouse fixture)

pytestmark = pytest.mark.integration

#: The fixtures shared with the bounds and breakdown tests (the ingest's tagged calls; ScannedCount per Query).
tagged_calls = test_usage_breakdown_routes.tagged
scanned_counts = test_entries_bounds.scanned

BOOK = PriceBook()


def csv_ids(text: str) -> list[str]:
    return [row["event_id"] for row in csv.DictReader(io.StringIO(text))]


def test_entries_and_export_follow_every_kind_of_where(tagged_calls: list[RawEntry]) -> None:
    # Given alice's tagged calls: acme (2), initech, hooli (past the bound of 2: rolled up as
    # (other)) and one call without a customer
    def expected(**match: str) -> list[str]:
        chosen = [e for e in tagged_calls if all(_attributes(e).get(k) == v for k, v in match.items())]
        return [e.event_id for e in sorted(chosen, key=lambda e: e.sk, reverse=True)]

    cases = {
        "tag:customer:acme": {"tag:customer": "acme"},
        "tag:customer:(other)": {"tag:customer": "(other)"},
        "tag:feature:search": {"tag:feature": "search"},
        "provider:anthropic": {"provider": "anthropic"},
        "model:gpt-4o": {"model": "gpt-4o"},
        "operation:conversation": {"operation": "conversation"},
    }
    for where, match in cases.items():
        # When the recent calls and the export are asked under the filter
        page = get(f"/api/llm-usage/{ALICE}", where=where).json()
        export = get(f"/api/llm-usage/{ALICE}/export", where=where)
        # Then both hold exactly the calls the filter's rollups count, newest first
        ids = expected(**match)
        assert ids, where
        assert [row["event_id"] for row in page["entries"]] == ids, where
        assert csv_ids(export.text) == ids, where
        assert page["next_cursor"] is None
    # And acme's entries add up to acme's summary, to the nano-dollar
    acme = get(f"/api/llm-usage/{ALICE}", where="tag:customer:acme").json()["entries"]
    summary = get(f"/api/llm-usage/{ALICE}/summary", where="tag:customer:acme").json()
    assert sum((Decimal(str(row["cost_usd"])) for row in acme), Decimal(0)) == Decimal(str(summary["total_cost_usd"]))
    acme_cost = nanos_to_usd(brute(tagged_calls, **{"tag:customer": "acme"}).cost_nanos)
    assert acme_cost == Decimal(str(summary["total_cost_usd"]))
    # And the folded call shows the customer it was sent with, while matching (other)
    (folded,) = get(f"/api/llm-usage/{ALICE}", where="tag:customer:(other)").json()["entries"]
    assert folded["tags"]["customer"] == "hooli"
    # And the chip combines with the route's own filters (AND)
    both = get(f"/api/llm-usage/{ALICE}", where="tag:customer:acme", provider="openai").json()["entries"]
    assert [row["event_id"] for row in both] == expected(**{"tag:customer": "acme", "provider": "openai"})
    same = get(f"/api/llm-usage/{ALICE}", where="provider:openai", provider="openai").json()["entries"]
    assert [row["event_id"] for row in same] == expected(provider="openai")


def _attributes(e: RawEntry) -> dict[str, str]:
    return {
        "provider": e.provider.value,
        "model": e.model,
        "operation": e.operation_type,
        **{f"tag:{k}": v for k, v in entry_tags(e).items()},
    }


@pytest.mark.parametrize("path", [f"/api/llm-usage/{ALICE}", f"/api/llm-usage/{ALICE}/export"])
def test_a_bad_or_contradictory_where_is_the_summarys_400(stack: MotoServer, path: str) -> None:
    # When the entries or the export are asked with a malformed where
    for where in ("customer", "tag:customer", "colour:red", "tag:Bad Key:x"):
        response = get(path, where=where)
        summary = get(f"/api/llm-usage/{ALICE}/summary", where=where)
        # Then it is a 400 with the summary's own message
        assert response.status == summary.status == 400, where
        assert response.json() == summary.json()
    # And a where that contradicts the route's own parameter says so
    response = get(path, where="provider:anthropic", provider="openai")
    assert response.status == 400
    assert "where: names another provider" in response.text
    # And a provider that does not exist matches nothing (as the summary's zeros), without a read
    nothing = get(path, where="provider:nobody")
    assert nothing.status == 200
    assert (nothing.json()["entries"] == []) if path.endswith(ALICE) else (nothing.text.count("\r\n") == 1)


def write_tagged(count: int) -> list[str]:
    """`count` raw entries of alice, one per second; every 10th is customer acme, every 10th from the
    5th was folded to (other) (sent as `big-<n>`), the rest are `c-<n>`. Returns acme's ids, newest first."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    client = aws.client("dynamodb")
    table = get_settings().names.usage_table
    acme: list[str] = []
    batch: list[dict[str, Any]] = []
    for index in range(count):
        customer = "acme" if index % 10 == 0 else (f"big-{index}" if index % 10 == 5 else f"c-{index}")
        event = UsageEvent(
            event_id=f"{index:08d}-evt",
            user_id=ALICE,
            timestamp=start + timedelta(seconds=index),
            provider="openai",
            model="gpt-4o",
            operation_type="conversation",
            tags={"customer": customer},
            input_tokens=1000 + index,
            output_tokens=100,
        )
        if customer == "acme":
            acme.append(event.event_id)
        rollup = {"customer": "(other)"} if customer.startswith("big-") else None
        item = raw_entry_item(event, BOOK.price_event(event), ttl_days=90, now=start, rollup_tags=rollup)
        batch.append({"PutRequest": {"Item": serialize(item)}})
        if len(batch) == 25 or index == count - 1:
            client.batch_write_item(RequestItems={table: batch})
            batch = []
    return list(reversed(acme))


def test_a_tag_filter_pages_sparsely_within_the_read_budget(stack: MotoServer, scanned_counts: list[int]) -> None:
    # Given 300 entries of which every 10th is acme's and every 10th (from the 5th) was folded to (other)
    acme = write_tagged(300)
    service = UsageService(RollupRepository, UsageRepository, ApiSettings(), max_items_examined=70)
    for where, expected_count in (("tag:customer:acme", 30), ("tag:customer:(other)", 30)):
        # When the JSON entries (pages of 20) and the CSV export are each followed to the end
        filters = EntryFilters(where=where)
        json_ids: list[str] = []
        page_sizes: list[int] = []
        cursor: str | None = None
        while True:
            before = len(scanned_counts)
            page = service.entries(ALICE, filters, 20, cursor)
            # Then no response examined more than the read budget
            assert sum(scanned_counts[before:]) <= 70
            json_ids += [row["event_id"] for row in page["entries"]]
            page_sizes.append(page["count"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        export_ids: list[str] = []
        cursor = None
        while True:
            before = len(scanned_counts)
            text, cursor = service.export_csv(ALICE, filters, None, cursor)
            assert sum(scanned_counts[before:]) <= 70
            export_ids += csv_ids(text)
            if cursor is None:
                break
        # And every match came exactly once, newest first; pages were short (the filter is sparse)
        assert len(json_ids) == len(set(json_ids)) == expected_count
        assert export_ids == json_ids
        assert len(page_sizes) > 1
        assert max(page_sizes) < 20
        if where.endswith("acme"):
            assert json_ids == acme
        else:
            assert all(i.split("-")[0][-1] == "5" for i in json_ids)
