"""Raw entries of a tenant: filters, both orders, pagination that covers every row once, cursors
that cannot be replayed against another tenant or query."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmtally.errors import InvalidCursorError
from llmtally.events import Provider, Status, UsageEvent
from llmtally.ingest import raw_entry_item
from llmtally.pricing import PriceBook
from llmtally.repositories import UsageQuery, UsageRepository
from llmtally.resources import ResourceNames
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.support.bad_inputs import valid_detail

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MODELS = {
    Provider.ANTHROPIC: ["claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022"],
    Provider.OPENAI: ["gpt-4o", "gpt-4o-mini"],
    Provider.GOOGLE: ["gemini-2.5-pro"],
}
OPERATIONS = ["query_generation", "conversation", "detection_rule"]


def make_events() -> list[UsageEvent]:
    events = []
    providers = itertools.cycle(MODELS)
    for i in range(70):
        provider = next(providers)
        events.append(
            UsageEvent.model_validate(
                valid_detail(
                    NOW,
                    event_id=f"evt-{i:05d}-repo",
                    user_id="tenant-1" if i % 10 else "tenant-2",
                    provider=provider.value,
                    model=MODELS[provider][i % len(MODELS[provider])],
                    operation_type=OPERATIONS[i % 3],
                    status="error" if i % 7 == 0 else "ok",
                    # several entries share a millisecond: the event id breaks the tie
                    timestamp=(NOW - timedelta(minutes=(i // 2) * 17)).isoformat(),
                ),
                context={"now": NOW},
            )
        )
    return events


EVENTS = make_events()


@pytest.fixture
def repo(moto: MotoServer) -> UsageRepository:
    from llmtally import aws

    create_tables(aws.client("dynamodb"), ResourceNames())
    repository = UsageRepository()
    book = PriceBook()
    for event in EVENTS:
        assert repository.put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=NOW))
    return repository


def expected(query: UsageQuery) -> list[str]:
    rows = [
        e
        for e in EVENTS
        if e.user_id == query.user_id
        and (query.provider is None or e.provider is query.provider)
        and (query.operation_type is None or e.operation_type == query.operation_type)
        and (query.model is None or e.model == query.model)
        and (query.status is None or e.status is query.status)
        and (query.start is None or e.timestamp >= query.start)
        and (query.end is None or e.timestamp < query.end)
    ]
    return sorted((e.sort_key for e in rows), reverse=query.order == "newest")


def read_all(repo: UsageRepository, query: UsageQuery, limit: int) -> tuple[list[str], int]:
    keys: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = repo.query_entries(query, limit=limit, cursor=cursor)
        pages += 1
        assert len(page.entries) <= limit
        assert all(entry.user_id == query.user_id for entry in page.entries)
        keys.extend(entry.sk for entry in page.entries)
        cursor = page.cursor
        if cursor is None:
            return keys, pages


QUERIES: list[dict[str, Any]] = [
    {},
    {"provider": Provider.OPENAI},
    {"operation_type": "conversation"},
    {"provider": Provider.ANTHROPIC, "operation_type": "query_generation"},
    {"model": "gpt-4o-mini"},
    {"status": Status.ERROR},
    {"start": NOW - timedelta(hours=3), "end": NOW - timedelta(hours=1)},
    {"start": NOW - timedelta(hours=4)},
    {"end": NOW - timedelta(hours=5)},
    {"provider": Provider.GOOGLE, "status": Status.OK, "start": NOW - timedelta(hours=6)},
]


@pytest.mark.parametrize("order", ["newest", "oldest"])
@pytest.mark.parametrize("filters", QUERIES, ids=[",".join(map(str, q)) or "all" for q in QUERIES])
def test_pages_cover_every_matching_row_exactly_once_in_order(
    repo: UsageRepository, filters: dict[str, Any], order: str
) -> None:
    query = UsageQuery(user_id="tenant-1", order=order, **filters)  # type: ignore[arg-type]
    want = expected(query)
    assert want, "each query must match something"
    for limit in (1, 7, 100) if len(want) <= 25 else (7, 100):
        keys, pages = read_all(repo, query, limit)
        assert keys == want, limit
        if limit == 7 and not set(filters) & {"model", "status"}:
            # Without post-filters every page is full but the last (which may come back empty)
            assert -(-len(want) // 7) <= pages <= len(want) // 7 + 1


def test_one_page_newest_first_by_default(repo: UsageRepository) -> None:
    page = repo.query_entries(UsageQuery(user_id="tenant-2"), limit=3)
    assert [e.sk for e in page.entries] == expected(UsageQuery(user_id="tenant-2"))[:3]
    assert page.cursor is not None


def test_entries_of_another_tenant_are_never_returned(repo: UsageRepository) -> None:
    keys, _ = read_all(repo, UsageQuery(user_id="tenant-2"), 50)
    assert len(keys) == 7


def test_another_tenants_cursor_is_refused(repo: UsageRepository) -> None:
    cursor = repo.query_entries(UsageQuery(user_id="tenant-1"), limit=5).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursorError, match="another user"):
        repo.query_entries(UsageQuery(user_id="tenant-2"), limit=5, cursor=cursor)


def test_a_tampered_cursor_is_refused(repo: UsageRepository) -> None:
    cursor = repo.query_entries(UsageQuery(user_id="tenant-1"), limit=5).cursor
    assert cursor is not None
    tampered = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    with pytest.raises(InvalidCursorError):
        repo.query_entries(UsageQuery(user_id="tenant-1"), limit=5, cursor=tampered)


def test_a_cursor_for_a_changed_filter_is_refused(repo: UsageRepository) -> None:
    cursor = repo.query_entries(UsageQuery(user_id="tenant-1"), limit=5).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursorError, match="different query"):
        repo.query_entries(UsageQuery(user_id="tenant-1", provider=Provider.OPENAI), limit=5, cursor=cursor)


def test_iter_entries_yields_a_range_oldest_first_for_rebuilds(repo: UsageRepository) -> None:
    start, end = NOW - timedelta(hours=5), NOW - timedelta(hours=2)
    got = [e.sk for e in repo.iter_entries("tenant-1", start, end)]
    assert got == expected(UsageQuery(user_id="tenant-1", start=start, end=end, order="oldest"))
    assert len(list(repo.iter_entries("tenant-1"))) == 63


def test_get_and_put_if_absent(repo: UsageRepository) -> None:
    event = EVENTS[1]
    entry = repo.get(event.user_id, event.sort_key)
    assert entry is not None
    assert entry.event_id == event.event_id
    assert entry.total_tokens == 2000
    assert repo.get(event.user_id, "2026-01-01T00:00:00.000Z#nope") is None
    item = raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=NOW)
    assert repo.put_if_absent(item) is False


def test_a_limit_outside_bounds_is_refused(repo: UsageRepository) -> None:
    with pytest.raises(ValueError, match="limit"):
        repo.query_entries(UsageQuery(user_id="tenant-1"), limit=0)
