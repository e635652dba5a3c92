"""Entries and CSV responses are bounded in reads and in size, whatever the tenant and the filter.

- Reads: a selective filter over a large tenant must not read the whole partition in one response;
  it answers fewer rows (even none) and a cursor once `max_items_examined` items were examined.
- Size: Lambda answers at most 6 MB (the whole proxy answer, JSON-encoded); a page of long rows
  stops at the body budget and carries the cursor of the rest.

Entries are written straight to the usage table (the ingest is tested elsewhere) so a few thousand
cost seconds; the read counts come from DynamoDB's own `ScannedCount` on every Query.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmtally import aws
from llmtally.api import jsonout
from llmtally.api.config import ApiSettings
from llmtally.api.usage import MAX_RESPONSE_BODY_BYTES, EntryFilters, UsageService
from llmtally.entries import raw_entry_item
from llmtally.events import UsageEvent
from llmtally.pricing import PriceBook
from llmtally.repositories._dynamodb import serialize
from llmtally.repositories.rollups import RollupRepository
from llmtally.repositories.usage import UsageRepository
from llmtally.settings import get_settings
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE
from tests.support.apigw import request

pytestmark = pytest.mark.integration

BOOK = PriceBook()
#: The most a Lambda function may answer (bytes of the JSON-encoded proxy response).
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def write_entries(count: int, *, long: bool = False, gpt_every: int = 0) -> list[str]:
    """`count` raw entries of alice, one per second, oldest first; returns their event ids.

    With `gpt_every=n`, every n-th entry (the first included) is of the model `gpt-4o`.

    Long rows carry the longest ids, model, request id and tags the contract allows (~2 KB as CSV).
    """
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    now = datetime.now(UTC)
    client = aws.client("dynamodb")
    table = get_settings().names.usage_table
    ids: list[str] = []
    batch: list[dict[str, Any]] = []
    for index in range(count):
        model = "gpt-4o" if gpt_every and index % gpt_every == 0 else "claude-sonnet-4-5-20250929"
        event = UsageEvent(
            event_id=f"{index:08d}-" + ("e" * 110 if long else "evt"),
            user_id=ALICE,
            request_id=("r" * 128) if long else None,
            timestamp=start + timedelta(seconds=index),
            provider="openai" if model == "gpt-4o" else "anthropic",
            model=(model + "-" + "m" * 200) if long else model,
            operation_type="conversation",
            tags={f"dimension{i}" + "k" * 30: "v" * 128 for i in range(8)} if long else {},
            input_tokens=1000 + index,
            output_tokens=100,
        )
        ids.append(event.event_id)
        item = raw_entry_item(event, BOOK.price_event(event), ttl_days=90, now=now)
        batch.append({"PutRequest": {"Item": serialize(item)}})
        if len(batch) == 25 or index == count - 1:
            client.batch_write_item(RequestItems={table: batch})
            batch = []
    return ids


@pytest.fixture
def scanned(stack: MotoServer) -> Iterator[list[int]]:
    """Every Query's ScannedCount (items DynamoDB examined), in order."""
    client = aws.client("dynamodb")
    counts: list[int] = []

    def hook(parsed: dict[str, Any], **_: Any) -> None:
        counts.append(int(parsed.get("ScannedCount", 0)))

    client.meta.events.register("after-call.dynamodb.Query", hook, unique_id="count-scanned")
    yield counts
    client.meta.events.unregister("after-call.dynamodb.Query", unique_id="count-scanned")


def service(*, max_items_examined: int | None = None, max_body_bytes: int | None = None) -> UsageService:
    return UsageService(
        RollupRepository,
        UsageRepository,
        ApiSettings(),
        max_items_examined=max_items_examined,
        max_body_bytes=max_body_bytes,
    )


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set the API's read and body budgets (small, so a test needs few entries); the handler's
    service is rebuilt with them."""
    from api import deps
    from llmtally.api import usage as usage_api

    def set_budgets(*, max_items_examined: int | None = None, max_body_bytes: int | None = None) -> None:
        if max_items_examined is not None:
            monkeypatch.setattr(usage_api, "MAX_ITEMS_EXAMINED", max_items_examined)
        if max_body_bytes is not None:
            monkeypatch.setattr(usage_api, "MAX_RESPONSE_BODY_BYTES", max_body_bytes)
        deps.reset()

    yield set_budgets
    deps.reset()


# -- reads -------------------------------------------------------------------------------------


def follow(path: str, query: dict[str, str], scanned: list[int]) -> list[tuple[Any, int]]:
    """GET through the API handler, following the cursor; each response with the items it examined."""
    out: list[tuple[Any, int]] = []
    cursor: str | None = None
    while True:
        before = sum(scanned)
        response = request(
            "GET", path, claims={"sub": ALICE}, query={**query, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status == 200, response.text
        out.append((response, sum(scanned) - before))
        if query.get("format") == "csv":
            cursor = response.headers.get("X-Next-Cursor")
        else:
            cursor = response.json()["next_cursor"]
        if cursor is None:
            return out
        assert len(out) < 20, "the pages did not end"


@pytest.mark.parametrize("form", ["csv", "json"])
def test_a_filter_matching_nothing_reads_a_bounded_number_of_items_per_response(
    form: str, scanned: list[int], budgets: Any
) -> None:
    # Given a tenant with 300 entries, none of them of the model asked for, and a read budget of 100
    write_entries(300)
    budgets(max_items_examined=100)
    # When the entries are read through the API, following the cursor
    query = {"model": "gpt-4o", "format": form, **({"limit": "1000"} if form == "json" else {})}
    responses = follow(f"/api/llm-usage/{ALICE}", query, scanned)
    # Then each response examined at most the budget and answered no rows but a cursor until the
    # end, and together they examined each entry once
    assert all(examined <= 100 for _, examined in responses)
    assert len(responses) in (3, 4)  # a 4th, empty one when the 3rd stopped exactly at the last item
    assert sum(examined for _, examined in responses) == 300
    for response, _ in responses:
        assert (response.text.count("\r\n") == 1) if form == "csv" else (response.json()["entries"] == [])


def test_a_selective_filter_pages_through_every_match_within_the_read_budget(scanned: list[int]) -> None:
    # Given 300 entries of which every 10th is of the model asked for
    ids = write_entries(300, gpt_every=10)
    expected = list(reversed(ids[::10]))
    scanned.clear()
    export = service(max_items_examined=70)
    # When the CSV export and the JSON entries route are each followed to the end
    csv_ids: list[str] = []
    cursor: str | None = None
    while True:
        before = len(scanned)
        text, cursor = export.export_csv(ALICE, EntryFilters(model="gpt-4o"), None, cursor)
        assert sum(scanned[before:]) <= 70
        csv_ids += [row["event_id"] for row in csv.DictReader(io.StringIO(text))]
        if cursor is None:
            break
    json_ids: list[str] = []
    cursor = None
    while True:
        before = len(scanned)
        page = export.entries(ALICE, EntryFilters(model="gpt-4o"), 1000, cursor)
        assert sum(scanned[before:]) <= 70
        json_ids += [row["event_id"] for row in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then both return every match exactly once, newest first
    assert csv_ids == expected
    assert json_ids == expected


# -- size --------------------------------------------------------------------------------------


def _lambda_answer_bytes(body: str, headers: dict[str, str]) -> int:
    """The size of the proxy answer Lambda would return for this body and these headers."""
    return len(json.dumps({"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": False}))


def test_the_default_body_budget_leaves_room_under_lambdas_limit() -> None:
    # Given the largest body a page may have and the largest cursor header the route accepts back,
    # When Lambda wraps them in its JSON answer, Then the answer is under 6 MB with room to spare
    headers = {
        "X-Next-Cursor": "c" * 4096,
        "Content-Disposition": "attachment; " + "f" * 300,
        "Cache-Control": "x" * 64,
    }
    envelope = _lambda_answer_bytes("", headers)
    assert MAX_RESPONSE_BODY_BYTES + envelope < LAMBDA_RESPONSE_LIMIT - 1024 * 1024


def test_a_csv_export_of_long_rows_stops_at_the_body_budget_and_pages_the_rest(stack: MotoServer, budgets: Any) -> None:
    # Given 150 long rows (~2 KB each as CSV in Lambda's answer) and a 100 KB body budget
    ids = write_entries(150, long=True)
    budgets(max_body_bytes=100_000)
    # When the export is read through the API handler, following X-Next-Cursor
    responses = follow(f"/api/llm-usage/{ALICE}", {"format": "csv"}, [])
    pages = []
    for response, _ in responses:
        # Then each answer's body, as it travels in Lambda's answer, is within the budget
        assert len(json.dumps(response.text)) - 2 <= 100_000
        pages.append([row["event_id"] for row in csv.DictReader(io.StringIO(response.text))])
    # And the pages hold every row exactly once, newest first
    assert len(pages) == 4
    assert [event_id for page in pages for event_id in page] == list(reversed(ids))


def test_a_json_page_of_long_rows_stops_at_the_body_budget(stack: MotoServer) -> None:
    # Given 100 long rows (~2.6 KB each as JSON) and a 100 KB body budget
    ids = write_entries(100, long=True)
    entries = service(max_body_bytes=100_000)
    # When pages of up to 1,000 are followed
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = entries.entries(ALICE, EntryFilters(), 1000, cursor)
        pages += 1
        # Then each body fits the budget (as it travels, escaped) and the next cursor continues it
        assert len(json.dumps(jsonout.dumps(page))) - 2 <= 100_000
        seen += [row["event_id"] for row in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages >= 3
    assert seen == list(reversed(ids))
