"""Per-tenant cardinality bounds at ingest: models beyond the bound fold into `(other)` — priced on
the model that was called, the sent name kept, counted in the rollups, never dropped — the same way
on every delivery. (The registry's conditional write itself is tested on the emulator:
tests/integration/test_ingest_pipeline.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.entries import RawEntry
from llmtally.events import OTHER_TAG_VALUE
from llmtally.ingest import Ingestor
from llmtally.pricing import PriceBook
from llmtally.rebuild import quarter_contributions
from llmtally.repositories.cardinality import OTHER_MODEL, CardinalityRegistry, ModelRegistry, OperationTypeRegistry
from llmtally.rollups import Counters, Dimension, Granularity, coalesce
from llmtally.settings import Settings, get_settings
from tests.support.bad_inputs import valid_detail
from tests.unit.test_ingest import MemoryRejects, MemoryUsage

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
MODELS = ["claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "claude-sonnet-4-5", "claude-opus-4-1"]


class MemoryTable:
    """The registry's conditional `ADD` on a string set, in memory (same condition, same answers)."""

    def __init__(self) -> None:
        self.sets: dict[tuple[str, str], set[str]] = {}
        self.writes: list[str] = []  # the setting type of each write

    def update_item(self, **kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        from llmtally.repositories._dynamodb import deserialize

        key = deserialize(kwargs["Key"])
        self.writes.append(key["setting_type"])
        values = deserialize(kwargs["ExpressionAttributeValues"])
        current = self.sets.setdefault((key["user_id"], key["setting_type"]), set())
        if values[":value"] in current or len(current) < values[":limit"]:
            current.update(values[":new"])
            return
        error = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}}
        raise ClientError(error, "UpdateItem")


@pytest.fixture
def table() -> MemoryTable:
    return MemoryTable()


def ingestor(table: MemoryTable, limit: int) -> tuple[Ingestor, MemoryUsage]:
    usage = MemoryUsage()
    models = ModelRegistry(client=table, table_name="settings", limit=limit)
    operations = OperationTypeRegistry(client=table, table_name="settings")
    rejects: Any = MemoryRejects()
    ingest = Ingestor(usage, rejects, operations, PriceBook(), ttl_days=90, clock=lambda: NOW, models=models)  # type: ignore[arg-type]
    return ingest, usage


def send(ingest: Ingestor, i: int, model: str, *, user: str = "user-1", provider: str = "anthropic") -> Any:
    body = json.dumps(valid_detail(NOW, event_id=f"evt-model-{i:04d}", model=model, user_id=user, provider=provider))
    return ingest.ingest(body, message_id=f"m-{i}")


def test_models_beyond_the_tenant_bound_fold_into_other_priced_and_kept(table: MemoryTable) -> None:
    # Given a tenant bounded to 2 models
    ingest, usage = ingestor(table, limit=2)
    # When it sends 4 distinct models (and the first again)
    outcomes = [send(ingest, i, model) for i, model in enumerate([*MODELS, MODELS[0]])]
    items = sorted(usage.items.values(), key=lambda item: item["event_id"])
    # Then the first 2 are kept, the others stored as `(other)` with the sent name beside them
    assert [item["model"] for item in items] == [MODELS[0], MODELS[1], OTHER_MODEL, OTHER_MODEL, MODELS[0]]
    assert [item.get("original_model") for item in items] == [None, None, MODELS[2], MODELS[3], None]
    assert [o.model_folded for o in outcomes] == [False, False, True, True, False]
    assert all(o.status == "stored" for o in outcomes)
    # And each is priced on the model that was called: a folded entry keeps its real cost
    entry = RawEntry.from_item(items[2])
    expected = PriceBook().price(entry.provider, MODELS[2], entry.tokens(), at=entry.timestamp)
    assert (entry.cost_source.value, entry.cost_nanos) == ("catalog", expected.cost_nanos)
    assert entry.cost_nanos > 0
    # And the rollups see one `(other)` row that counts both folded calls and their cost
    rolled = coalesce(RawEntry.from_item(item) for item in items)
    model_rows: dict[str, Counters] = {}
    for k, v in rolled.items():
        if k.dimension == Dimension.MODEL and k.granularity is Granularity.DAY:
            model_rows.setdefault(k.value, Counters()).add(v)
    assert set(model_rows) == {f"anthropic#{MODELS[0]}", f"anthropic#{MODELS[1]}", f"anthropic#{OTHER_MODEL}"}
    assert model_rows[f"anthropic#{OTHER_MODEL}"].requests == 2
    assert model_rows[f"anthropic#{OTHER_MODEL}"].cost_nanos == items[2]["cost_nanos"] + items[3]["cost_nanos"]


def test_a_folded_entry_is_repriced_on_the_model_that_was_called(table: MemoryTable) -> None:
    # Given a folded entry; when rollups are rebuilt with re-pricing
    ingest, usage = ingestor(table, limit=1)
    send(ingest, 0, MODELS[0])
    send(ingest, 1, MODELS[1])
    folded = RawEntry.from_item(next(i for i in usage.items.values() if i.get("original_model")))
    (total,) = (
        counters
        for key, counters in quarter_contributions([folded], "user-1", PriceBook()).items()
        if key.dimension == Dimension.TOTAL
    )
    # Then it is priced as the model sent, never as an unknown `(other)`
    assert total.cost_nanos == folded.cost_nanos > 0
    assert total.unpriced_requests == 0


def test_a_redelivered_event_folds_the_same_way_in_any_process(table: MemoryTable) -> None:
    # Given a tenant at its bound
    first, _ = ingestor(table, limit=1)
    send(first, 0, MODELS[0])
    send(first, 1, MODELS[1])
    # When another process (a fresh registry cache) receives the same folded event again
    again, usage = ingestor(table, limit=1)
    outcome = send(again, 1, MODELS[1])
    # Then it folds it the same way (the set only grows; the decision is stable)
    assert outcome.model_folded is True
    (item,) = usage.items.values()
    assert (item["model"], item["original_model"]) == (OTHER_MODEL, MODELS[1])


def test_tenants_and_providers_are_bounded_separately_and_decisions_are_cached(table: MemoryTable) -> None:
    ingest, usage = ingestor(table, limit=1)
    send(ingest, 0, "gpt-4o", provider="openai")
    send(ingest, 1, "gpt-4o", provider="openai", user="user-2")  # another tenant: its own bound
    send(ingest, 2, "gpt-4o-mini", provider="openai")  # over user-1's bound
    send(ingest, 3, "gpt-4o-mini", provider="openai")  # cached: no second write
    models = {(i["user_id"], i["event_id"]): i["model"] for i in usage.items.values()}
    assert models[("user-2", "evt-model-0001")] == "gpt-4o"
    assert models[("user-1", "evt-model-0002")] == OTHER_MODEL
    assert table.writes.count("usage#models") == 3


@given(st.lists(st.sampled_from([*MODELS, "gpt-4o", "gpt-4o-mini", "gemini-2.5-pro"]), min_size=1, max_size=30))
def test_never_more_model_rows_than_the_bound_plus_the_fold_and_nothing_dropped(sent: list[str]) -> None:
    # Given any sequence of models from a tenant bounded to 3
    ingest, usage = ingestor(MemoryTable(), limit=3)
    for i, model in enumerate(sent):
        send(ingest, i, model)
    items = list(usage.items.values())
    # Then every event is stored, at most 3 distinct real models plus `(other)` are rolled up,
    # the admitted ones are the first 3 distinct ones sent, and each fold keeps what was sent
    assert len(items) == len(sent)
    first_three = list(dict.fromkeys(sent))[:3]
    assert {i["model"] for i in items} <= {*first_three, OTHER_MODEL}
    for item, model in zip(sorted(items, key=lambda x: x["event_id"]), sent, strict=True):
        assert item.get("original_model", item["model"]) == model


def test_the_bounds_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMTALLY_MAX_MODELS_PER_TENANT", raising=False)
    monkeypatch.delenv("LLMTALLY_MAX_OPERATION_TYPES_PER_TENANT", raising=False)
    assert (Settings().max_models_per_tenant, Settings().max_operation_types_per_tenant) == (100, 64)
    monkeypatch.setenv("LLMTALLY_MAX_MODELS_PER_TENANT", "7")
    monkeypatch.setenv("LLMTALLY_MAX_OPERATION_TYPES_PER_TENANT", "9")
    get_settings.cache_clear()
    try:
        assert (ModelRegistry().limit, OperationTypeRegistry().limit) == (7, 9)
    finally:
        get_settings.cache_clear()


def test_a_scoped_registry_keeps_one_set_per_scope(table: MemoryTable) -> None:
    # The shape a tag-value bound takes: one set per (tenant, tag key)
    tags = CardinalityRegistry("tags", limit=1, fold_value=OTHER_TAG_VALUE, client=table, table_name="settings")
    assert tags.fold("user-1", "acme", scope="customer") == ("acme", None)
    assert tags.fold("user-1", "globex", scope="customer") == (OTHER_TAG_VALUE, "globex")
    assert tags.fold("user-1", "search", scope="feature") == ("search", None)
    assert tags.fold("user-1", OTHER_TAG_VALUE, scope="feature") == (OTHER_TAG_VALUE, None)
    assert set(table.sets) == {("user-1", "usage#tags#customer"), ("user-1", "usage#tags#feature")}


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
