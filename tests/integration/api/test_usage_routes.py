"""Usage routes on moto: events go through the real ingest and aggregate handlers, then the API.

Summaries and daily series (rollups only) are compared with a brute-force answer computed from
the raw entries; entries pages, filters, cursors and the CSV export with the raw table itself.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aggregate.handler import lambda_handler as aggregate_handler
from ingest.handler import lambda_handler as ingest_handler
from llmtally.api.csv_export import CSV_COLUMNS
from llmtally.events import UsageEvent, format_timestamp
from llmtally.ingest import RawEntry
from llmtally.money import nanos_to_usd
from llmtally.repositories.usage import UsageRepository
from tests.conftest import MotoServer
from tests.integration.api.conftest import ADMIN_CLAIMS, ALICE, BOB
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    random_events,
    read_stream,
    stream_arn,
    usage_event,
)
from tests.support.apigw import ApiResponse, request
from tests.support.lambda_events import FakeLambdaContext, sqs_event, stream_event_from_records
from tests.support.pipeline import reset_ingest_state
from tests.support.snapshot import TableSnapshot, restore_snapshot, seed_snapshot

# One worker runs the module: the seeded pipeline (`seeded_traffic`) runs once per run, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("usage-routes")]

ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns")
SUMMARY_KEYS = {"total_requests", "total_tokens", "total_cost_usd", "by_provider", "by_operation", "by_model"}
BREAKDOWN_KEYS = {"requests", "tokens", "cost_usd"}


# -- the pipeline ------------------------------------------------------------------------------


@pytest.fixture
def pipeline(stack: MotoServer) -> Iterator[str]:
    reset_ingest_state()
    yield stream_arn()
    reset_ingest_state()


def send(events: Sequence[UsageEvent], arn: str) -> None:
    """Through the ingest handler (an SQS batch per 10 events), then the stream into the aggregate handler."""
    bodies = [event.to_detail() for event in events]
    for start in range(0, len(bodies), 10):
        answer = ingest_handler(sqs_event(bodies[start : start + 10]), FakeLambdaContext())
        assert answer == {"batchItemFailures": []}
    records = read_stream(arn)
    assert aggregate_handler(stream_event_from_records(records, stream_arn=arn), FakeLambdaContext()) == {
        "batchItemFailures": []
    }


def get(path: str, user: str = ALICE, **query: Any) -> ApiResponse:
    return request("GET", path, claims={"sub": user}, query={k: str(v) for k, v in query.items()})


def raw(user: str) -> list[RawEntry]:
    return list(UsageRepository().iter_entries(user))


@pytest.fixture(scope="module")
def seeded_traffic(_moto_server: MotoServer) -> tuple[list[UsageEvent], TableSnapshot]:
    """80 events of alice and bob over the last 14 days (errors, an unpriced model, cache, reasoning)
    through the ingest and aggregate handlers, once per module: the events, and every table after.

    Kept small: the aggregator's updates are moto's slowest path."""
    rng = random.Random(5)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=14)
    events = random_events(rng, 80, [ALICE, BOB], start, hours=14 * 24 - 2)
    return events, seed_snapshot(_moto_server, lambda: send(events, stream_arn()))


@pytest.fixture
def traffic(
    pipeline: str, stack: MotoServer, seeded_traffic: tuple[list[UsageEvent], TableSnapshot]
) -> list[UsageEvent]:
    """The seeded traffic's tables, restored into this test's fresh moto server."""
    events, snapshot = seeded_traffic
    restore_snapshot(stack.client("dynamodb"), snapshot)
    return events


# -- brute force from raw entries ----------------------------------------------------------------


def local_window(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    return (
        datetime(first.year, first.month, first.day, tzinfo=zone),
        datetime(last.year, last.month, last.day, tzinfo=zone) + timedelta(days=1),
    )


def brute_summary(entries: Iterable[RawEntry], low: datetime, high: datetime) -> dict[str, Any]:
    chosen = [e for e in entries if low <= e.timestamp < high]

    def block(rows: list[RawEntry]) -> dict[str, Any]:
        return {
            "requests": len(rows),
            "tokens": sum(e.total_tokens for e in rows),
            "cost_usd": nanos_to_usd(sum(e.cost_nanos for e in rows)),
            "errors": sum(e.status == "error" for e in rows),
            "unpriced_requests": sum(e.cost_source == "unpriced" for e in rows),
        }

    def by(key: Any) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[RawEntry]] = defaultdict(list)
        for entry in chosen:
            groups[key(entry)].append(entry)
        return {name: block(rows) for name, rows in groups.items()}

    total = block(chosen)
    return {
        "total_requests": total["requests"],
        "total_tokens": total["tokens"],
        "total_cost_usd": total["cost_usd"],
        "errors": total["errors"],
        "unpriced_requests": total["unpriced_requests"],
        "input_tokens": sum(e.input_tokens for e in chosen),
        "cache_read_tokens": sum(e.cache_read_tokens for e in chosen),
        "cache_write_tokens": sum(e.cache_write_tokens for e in chosen),
        "output_tokens": sum(e.output_tokens for e in chosen),
        "reasoning_tokens": sum(e.reasoning_tokens for e in chosen),
        "by_provider": by(lambda e: e.provider.value),
        "by_operation": by(lambda e: e.operation_type),
        "by_model": by(lambda e: e.model),
    }


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The API's summary restricted to what the brute force computes."""
    fields = ("requests", "tokens", "cost_usd", "errors", "unpriced_requests")
    out = {key: summary[key] for key in ("total_requests", "total_tokens", "total_cost_usd", "errors")}
    out.update({key: summary[key] for key in ("unpriced_requests", "input_tokens", "cache_read_tokens")})
    out.update({key: summary[key] for key in ("cache_write_tokens", "output_tokens", "reasoning_tokens")})
    for dimension in ("by_provider", "by_operation", "by_model"):
        out[dimension] = {name: {f: row[f] for f in fields} for name, row in summary[dimension].items()}
    return out


# -- summary -----------------------------------------------------------------------------------


def test_the_seed_example_shape_and_figures(pipeline: str) -> None:
    # Given the seed's worked example (Claude 3.5 Sonnet, 1,500 in + 500 out = $0.0120) and a gpt-4o call
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    seed = UsageEvent(
        event_id="evt-seed-0001",
        user_id=ALICE,
        timestamp=at,
        provider="anthropic",
        model="claude-3-5-sonnet-20241022",
        operation_type="query_generation",
        status="ok",
        input_tokens=1500,
        output_tokens=500,
        latency_ms=842,
    )
    other = UsageEvent.model_validate(
        {
            **seed.to_detail(),
            "event_id": "evt-seed-0002",
            "provider": "openai",
            "model": "gpt-4o-2024-08-06",
            "operation_type": "detection_rule",
            "input_tokens": 1000,
            "output_tokens": 1000,
        }
    )
    send([seed, other], pipeline)
    # When alice asks for that day's summary
    response = get(f"/api/llm-usage/{ALICE}/summary", start=at.date().isoformat(), end=at.date().isoformat())
    # Then the seed's shape, with exact money
    assert response.status == 200, response.text
    body = response.json()
    assert set(body) >= SUMMARY_KEYS
    for dimension in ("by_provider", "by_operation", "by_model"):
        for row in body[dimension].values():
            assert set(row) >= BREAKDOWN_KEYS
    assert body["total_requests"] == 2
    assert body["total_tokens"] == 4000
    assert body["total_cost_usd"] == Decimal("0.0245")
    assert body["avg_cost_per_request_usd"] == Decimal("0.01225")
    assert body["by_provider"]["anthropic"] == {
        **body["by_provider"]["anthropic"],
        "requests": 1,
        "tokens": 2000,
        "cost_usd": Decimal("0.012"),
    }
    assert body["by_operation"]["detection_rule"]["cost_usd"] == Decimal("0.0125")
    assert body["by_model"]["claude-3-5-sonnet-20241022"]["requests"] == 1
    assert body["errors"] == 0
    assert body["unpriced_requests"] == 0
    assert '"total_cost_usd":0.024500000' in response.text  # a JSON number, digit for digit


def test_summary_equals_the_brute_force_answer_in_every_zone(traffic: list[UsageEvent]) -> None:
    # Given 80 events through the pipeline; a window of 8 local days that cuts through the data
    entries = raw(ALICE)
    for tz in ZONES:
        today = datetime.now(ZoneInfo(tz)).date()
        first, last = today - timedelta(days=10), today - timedelta(days=3)
        # When alice asks for its summary in the zone
        response = get(f"/api/llm-usage/{ALICE}/summary", start=first.isoformat(), end=last.isoformat(), tz=tz)
        # Then it equals the recomputation from the raw entries in that local window
        assert response.status == 200, response.text
        body = response.json()
        expected = brute_summary(entries, *local_window(first, last, tz))
        assert expected["total_requests"] > 0
        assert comparable(body) == expected, tz
        assert body["timezone"] == tz
        # And it read rollups bounded by days × dimensions, never one item per event
        assert body["items_read"] <= 8 * 4 * 24
    # And with no range, the last 30 days ending today (UTC) — bob's whole traffic
    body = get(f"/api/llm-usage/{BOB}/summary", user=BOB).json()
    today = datetime.now(UTC).date()
    low, high = local_window(today - timedelta(days=29), today, "UTC")
    assert comparable(body) == brute_summary(raw(BOB), low, high)
    assert body["total_requests"] == sum(1 for e in traffic if e.user_id == BOB)


def test_a_tenant_without_usage_gets_zeros(pipeline: str) -> None:
    body = get("/api/llm-usage/carol/summary", user="carol").json()
    assert body["total_requests"] == 0
    assert body["total_cost_usd"] == 0
    assert body["avg_cost_per_request_usd"] == 0
    assert body["by_provider"] == body["by_operation"] == body["by_model"] == {}


# -- daily -------------------------------------------------------------------------------------


def test_daily_is_zero_filled_and_equals_the_brute_force_answer_in_every_zone(traffic: list[UsageEvent]) -> None:
    entries = raw(ALICE)
    for tz in ZONES:
        before = datetime.now(ZoneInfo(tz)).date()
        response = get(f"/api/llm-usage/{ALICE}/daily", days=20, tz=tz)
        after = datetime.now(ZoneInfo(tz)).date()
        assert response.status == 200, response.text
        body = response.json()
        rows = body["daily_usage"]
        assert body["days"] == 20
        assert body["timezone"] == tz
        assert len(rows) == 20
        dates = [date.fromisoformat(row["date"]) for row in rows]
        assert dates[-1] in (before, after)  # "today" as the server saw it
        assert dates == [dates[-1] - timedelta(days=n) for n in range(19, -1, -1)]
        for day, row in zip(dates, rows, strict=True):
            expected = brute_summary(entries, *local_window(day, day, tz))
            assert (row["requests"], row["tokens"], row["cost_usd"], row["errors"], row["unpriced_requests"]) == (
                expected["total_requests"],
                expected["total_tokens"],
                expected["total_cost_usd"],
                expected["errors"],
                expected["unpriced_requests"],
            ), (tz, day)
        assert any(row["requests"] == 0 for row in rows)  # the days before the data: zero rows
        assert sum(row["requests"] for row in rows) == len(entries)


def test_daily_defaults_to_30_days_and_accepts_366(pipeline: str) -> None:
    assert len(get(f"/api/llm-usage/{ALICE}/daily").json()["daily_usage"]) == 30
    assert len(get(f"/api/llm-usage/{ALICE}/daily", days=366, tz="Asia/Kolkata").json()["daily_usage"]) == 366


# -- entries -----------------------------------------------------------------------------------


def all_pages(user: str, caller: str | None = None, **query: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(500):
        page_query = {**query, **({"cursor": cursor} if cursor else {})}
        response = get(f"/api/llm-usage/{user}", user=caller or user, **page_query)
        assert response.status == 200, response.text
        body = response.json()
        assert body["count"] == len(body["entries"])
        rows.extend(body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("pagination did not end")


def test_entries_pages_cover_every_entry_once_newest_first(traffic: list[UsageEvent]) -> None:
    rows = all_pages(ALICE, limit=7)
    expected = raw(ALICE)
    assert [r["event_id"] for r in rows] == [e.event_id for e in reversed(expected)]
    assert {r["user_id"] for r in rows} == {ALICE}
    oldest = all_pages(ALICE, limit=50, order="oldest")
    assert [r["event_id"] for r in oldest] == [e.event_id for e in expected]
    # And an entry carries the whole ledger and exact money
    entry = expected[-1]
    row = get(f"/api/llm-usage/{ALICE}", limit=1).json()["entries"][0]
    assert row["event_id"] == entry.event_id
    assert row["timestamp"] == format_timestamp(entry.timestamp)
    assert row["cost_usd"] == nanos_to_usd(entry.cost_nanos)
    for column in CSV_COLUMNS:
        assert column in row
    for column in ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens", "total_tokens"):
        assert row[column] == getattr(entry, column)
    assert "sk" not in row
    assert "expires_at" not in row


FILTERS: list[tuple[dict[str, str], Any]] = [
    ({"provider": "openai"}, lambda e: e.provider == "openai"),
    ({"operation": "conversation"}, lambda e: e.operation_type == "conversation"),
    (
        {"provider": "anthropic", "operation": "detection_rule"},
        lambda e: e.provider == "anthropic" and e.operation_type == "detection_rule",
    ),
    ({"model": "gemini-2.5-pro"}, lambda e: e.model == "gemini-2.5-pro"),
    ({"status": "error"}, lambda e: e.status == "error"),
]


def test_filters_and_ranges_return_exactly_the_matching_entries(traffic: list[UsageEvent]) -> None:
    for query, keep in FILTERS:
        rows = all_pages(ALICE, limit=4, **query)
        expected = [e.event_id for e in reversed(raw(ALICE)) if keep(e)]
        assert expected, query
        assert [r["event_id"] for r in rows] == expected, query
    # A range of local days in a :45 zone
    tz = "Asia/Kathmandu"
    today = datetime.now(ZoneInfo(tz)).date()
    first, last = today - timedelta(days=10), today - timedelta(days=5)
    rows = all_pages(ALICE, limit=25, start=first.isoformat(), end=last.isoformat(), tz=tz)
    low, high = local_window(first, last, tz)
    expected = [e.event_id for e in reversed(raw(ALICE)) if low <= e.timestamp < high]
    assert expected
    assert [r["event_id"] for r in rows] == expected
    # An ISO datetime with an offset is an instant; end is exclusive
    middle = raw(ALICE)[len(expected) // 2].timestamp
    rows = all_pages(ALICE, start=format_timestamp(middle), end=format_timestamp(middle + timedelta(hours=30)))
    assert [r["event_id"] for r in rows] == [
        e.event_id for e in reversed(raw(ALICE)) if middle <= e.timestamp < middle + timedelta(hours=30)
    ]


# -- cursors -----------------------------------------------------------------------------------


def _first_cursor(user: str, **query: Any) -> str:
    body = get(f"/api/llm-usage/{user}", user=user, limit=3, **query).json()
    assert body["next_cursor"]
    return str(body["next_cursor"])


def _refused(response: ApiResponse) -> None:
    assert response.status == 400, response.text
    assert response.json()["error"].startswith("invalid cursor")


def test_a_cursor_of_another_tenant_is_refused(traffic: list[UsageEvent]) -> None:
    alices = _first_cursor(ALICE)
    # Bob on his own route with alice's cursor
    _refused(get(f"/api/llm-usage/{BOB}", user=BOB, limit=3, cursor=alices))
    # An admin reading bob with alice's cursor
    _refused(request("GET", f"/api/llm-usage/{BOB}", claims=ADMIN_CLAIMS, query={"limit": "3", "cursor": alices}))
    # Bob cannot take alice's route at all
    assert get(f"/api/llm-usage/{ALICE}", user=BOB, cursor=alices).status == 403
    # A cursor rewritten to name bob (and a sort key of bob's), signature kept: refused everywhere
    payload_part, signature = alices.split(".")
    payload = json.loads(_unb64(payload_part))
    assert payload["u"] == ALICE
    bobs_key = raw(BOB)[5].sk
    forged = _b64(json.dumps({**payload, "u": BOB, "k": bobs_key}, separators=(",", ":")).encode()) + "." + signature
    _refused(get(f"/api/llm-usage/{BOB}", user=BOB, limit=3, cursor=forged))
    _refused(get(f"/api/llm-usage/{ALICE}", limit=3, cursor=forged))
    # A cursor of another query of the same tenant, or garbage
    cursor = _first_cursor(ALICE, provider="openai")
    _refused(get(f"/api/llm-usage/{ALICE}", limit=3, cursor=cursor))  # the filter was dropped
    _refused(get(f"/api/llm-usage/{ALICE}", limit=3, provider="openai", order="oldest", cursor=cursor))
    for garbage in ("x", "a.b", "....", _b64(b"{}") + "." + _b64(b"sig"), "é" * 20):
        _refused(get(f"/api/llm-usage/{ALICE}", limit=3, cursor=garbage))


def _b64(raw_bytes: bytes) -> str:
    return base64.urlsafe_b64encode(raw_bytes).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_with_a_cursor_secret_a_cursor_signed_with_the_default_key_is_refused(
    traffic: list[UsageEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import deps

    default_signed = _first_cursor(ALICE)
    monkeypatch.setenv("LLMTALLY_API_CURSOR_SECRET", "s" * 40)
    deps.reset()
    _refused(get(f"/api/llm-usage/{ALICE}", limit=3, cursor=default_signed))
    # and the cursors it issues work
    assert len(all_pages(ALICE, limit=40)) == len(raw(ALICE))


# -- CSV ---------------------------------------------------------------------------------------


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert tuple(header) == CSV_COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


def test_csv_has_every_ledger_column_and_the_same_rows(traffic: list[UsageEvent]) -> None:
    response = get(f"/api/llm-usage/{ALICE}", format="csv", provider="anthropic")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    assert "X-Next-Cursor" not in response.headers
    rows = parse_csv(response.text)
    entries = [e for e in reversed(raw(ALICE)) if e.provider == "anthropic"]
    assert [r["event_id"] for r in rows] == [e.event_id for e in entries]
    for row, entry in zip(rows, entries, strict=True):
        assert Decimal(row["cost_usd"]) == nanos_to_usd(entry.cost_nanos)
        assert row["cost_source"] == entry.cost_source
        assert int(row["reasoning_tokens"]) == entry.reasoning_tokens
        assert int(row["cache_read_tokens"]) == entry.cache_read_tokens
        assert row["timestamp"] == format_timestamp(entry.timestamp)
    assert response.text.endswith("\r\n")
    # With a limit: the next page's cursor in a header
    first = get(f"/api/llm-usage/{ALICE}", format="csv", limit=30)
    cursor = first.headers["X-Next-Cursor"]
    second = get(f"/api/llm-usage/{ALICE}", format="csv", limit=10_000, cursor=cursor)
    ids = [r["event_id"] for r in parse_csv(first.text) + parse_csv(second.text)]
    assert ids == [e.event_id for e in reversed(raw(ALICE))]
    # and the JSON route continues a CSV cursor (the same query)
    assert get(f"/api/llm-usage/{ALICE}", limit=5, cursor=cursor).json()["entries"][0]["event_id"] == ids[30]


# -- bad input ---------------------------------------------------------------------------------

BAD: list[tuple[str, dict[str, str], str]] = [
    ("/summary", {"start": "2026-13-01"}, "start"),
    ("/summary", {"start": "yesterday"}, "start"),
    ("/summary", {"end": "2026-02-30"}, "end"),
    ("/summary", {"start": "2026-03-10", "end": "2026-03-01"}, "start"),
    ("/summary", {"start": "2020-01-01", "end": "2026-01-01"}, "366"),
    ("/summary", {"start": "0001-01-01", "end": "0001-01-02"}, "start"),
    ("/summary", {"end": "9999-12-31"}, "end"),
    ("/summary", {"tz": "Mars/Olympus_Mons"}, "tz"),
    ("/summary", {"tz": "../../etc/passwd"}, "tz"),
    ("/summary", {"tz": "+05:30"}, "tz"),
    ("/summary", {"startDate": "2026-01-01"}, "'start'"),
    ("/daily", {"days": "0"}, "days"),
    ("/daily", {"days": "367"}, "days"),
    ("/daily", {"days": "-1"}, "days"),
    ("/daily", {"days": "7.5"}, "days"),
    ("/daily", {"days": "ten"}, "days"),
    ("/daily", {"tz": "Not/AZone"}, "tz"),
    ("/daily", {"start": "2026-01-01"}, "start"),
    ("", {"provider": "mistral"}, "provider"),
    ("", {"status": "maybe"}, "status"),
    ("", {"operation": "Bad Op!"}, "operation"),
    ("", {"model": "a b"}, "model"),
    ("", {"operationType": "conversation"}, "'operation'"),
    ("", {"colour": "red"}, "colour"),
    ("", {"limit": "0"}, "limit"),
    ("", {"limit": "1001"}, "limit"),
    ("", {"limit": "20000", "format": "csv"}, "limit"),
    ("", {"format": "xml"}, "format"),
    ("", {"start": "not-a-date"}, "start"),
    ("", {"start": "2026-01-01T25:00:00Z"}, "start"),
    ("", {"start": "0001-01-01T00:00:00+14:00"}, "start"),
    ("", {"start": "2026-03-02", "end": "2026-03-01"}, "end"),
    ("", {"tz": "Europe/Nowhere"}, "tz"),
    ("", {"cursor": "%%%"}, "cursor"),
    ("", {"order": "sideways"}, "order"),
]


@pytest.mark.parametrize(("suffix", "query", "fragment"), BAD, ids=[f"{s or '/'} {q}" for s, q, _ in BAD])
def test_bad_input_is_a_400_with_a_message(pipeline: str, suffix: str, query: dict[str, str], fragment: str) -> None:
    response = request("GET", f"/api/llm-usage/{ALICE}{suffix}", claims={"sub": ALICE}, query=query)
    assert response.status == 400, response.text
    assert fragment in response.json()["error"]


def test_an_invalid_user_id_is_a_400(pipeline: str) -> None:
    for path in ("/api/llm-usage/..%2Fbob/summary", "/api/llm-usage/a%20b/daily", "/api/llm-usage/" + "a" * 200):
        assert request("GET", path, claims=ADMIN_CLAIMS).status in (400, 404)
