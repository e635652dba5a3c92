"""The response cache's pure parts: which requests are cacheable, the canonical key, and how a hit is
recorded downstream (raw entry, rollup counters, entries row, CSV). Storage and the tracked provider
run on moto in tests/integration/test_response_cache.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.api.csv_export import CSV_COLUMNS, render_csv
from llmtally.api.usage import entry_row
from llmtally.events import TokenCounts, UsageEvent
from llmtally.ingest import RawEntry, raw_entry_item
from llmtally.pricing import CostSource, PricedCost
from llmtally.repositories._dynamodb import serialize
from llmtally.response_cache import CachedAnswer, UncacheableRequestError, cacheable, key_for
from llmtally.rollups import Counters

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# -- cacheable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("temperature", "expected"), [(0, True), (0.0, True), (None, False), (0.7, False)])
def test_only_temperature_exactly_zero_is_cacheable(temperature: float | None, expected: bool) -> None:
    # None is "the provider's default", which is not deterministic.
    assert cacheable(temperature) is expected


def test_streams_and_booleans_are_never_cacheable() -> None:
    assert cacheable(0, stream=True) is False
    assert cacheable(False) is False
    assert cacheable(1e-12) is False


# -- the key -----------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "user_id": "alice",
    "provider": "anthropic",
    "model": "claude-sonnet-4-5",
    "system": "You write SQL.",
    "messages": [{"role": "user", "content": "errors in the last hour"}],
    "params": {"max_tokens": 1024, "temperature": 0.0, "prompt_cache": None, "extra": {}},
}


def key(**changes: Any) -> str:
    request = {**BASE, **changes}
    return key_for(
        request["user_id"],
        request["provider"],
        request["model"],
        request["system"],
        request["messages"],
        request["params"],
    )


def test_the_key_is_a_stable_sha256_and_ignores_dict_order() -> None:
    first = key()
    assert len(first) == 64
    assert int(first, 16) >= 0
    assert key() == first
    reordered: dict[str, Any] = {"extra": {}, "prompt_cache": None, "temperature": 0.0, "max_tokens": 1024}
    assert key(params=reordered) == first


texts = st.text(max_size=40)
changes = st.one_of(
    st.builds(lambda v: {"user_id": v}, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,20}", fullmatch=True)),
    st.builds(lambda v: {"provider": v}, st.sampled_from(["openai", "google", "bedrock"])),
    st.builds(lambda v: {"model": v}, texts),
    st.builds(lambda v: {"system": v}, st.one_of(st.none(), texts)),
    st.builds(lambda v: {"messages": [{"role": "user", "content": v}]}, texts),
    st.builds(
        lambda v: {"messages": [*BASE["messages"], {"role": "assistant", "content": v}]},
        texts,
    ),
    st.builds(lambda v: {"params": {**BASE["params"], "max_tokens": v}}, st.integers(1, 200_000)),
    st.builds(lambda v: {"params": {**BASE["params"], "prompt_cache": v}}, st.sampled_from(["5m", "1h"])),
    st.builds(
        lambda name, v: {"params": {**BASE["params"], "extra": {name: v}}},
        st.text(min_size=1, max_size=10),
        st.one_of(st.integers(), texts, st.booleans(), st.none()),
    ),
)


@given(changes)
def test_any_change_of_any_part_changes_the_key(change: dict[str, Any]) -> None:
    # Given the base request and one part of it changed (to a different value)
    changed = {**BASE, **change}
    if changed == BASE:
        return  # hypothesis drew the base value itself: the same request, the same key
    # Then the key differs
    assert key(**change) != key()


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,20}", fullmatch=True))
def test_the_same_request_for_two_users_never_shares_a_key(other: str) -> None:
    if other == BASE["user_id"]:
        return
    assert key(user_id=other) != key()


def test_a_parameter_without_a_canonical_form_is_uncacheable_and_not_quoted() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "sk-ant-api03-SECRETSECRETSECRET"

    with pytest.raises(UncacheableRequestError) as caught:
        key(params={**BASE["params"], "extra": {"thing": Opaque()}})
    assert "SECRET" not in str(caught.value)
    with pytest.raises(UncacheableRequestError):
        key(params={**BASE["params"], "extra": {"x": float("nan")}})
    # A Decimal has one: its exact text
    assert key(params={**BASE["params"], "extra": {"x": Decimal("0.5")}}) != key()


# -- a hit downstream ---------------------------------------------------------------------------


def hit_event(**changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "user_id": "alice",
        "timestamp": NOW - timedelta(minutes=1),
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "operation_type": "query_generation",
        "latency_ms": 4,
        "reported_cost_usd": Decimal(0),
        "cache_hit": True,
        "saved_cost_usd": Decimal("0.012"),
    }
    return UsageEvent.model_validate({**fields, **changes}, context={"now": NOW})


def test_a_hit_is_stored_small_and_read_back_from_dynamodb_json() -> None:
    priced = PricedCost(0, CostSource.CATALOG, "genai-prices test")
    item = raw_entry_item(hit_event(), priced, ttl_days=90, now=NOW)
    assert (item["cache_hit"], item["saved_nanos"], item["cost_nanos"], item["total_tokens"]) == (
        True,
        12_000_000,
        0,
        0,
    )
    entry = RawEntry.from_dynamodb(serialize(item))
    assert (entry.cache_hit, entry.saved_nanos, entry.saved_cost_usd) == (True, 12_000_000, Decimal("0.012"))
    # An ordinary event's item carries neither attribute (items stay as small as before)
    plain = raw_entry_item(
        hit_event(cache_hit=False, saved_cost_usd=None, input_tokens=10), priced, ttl_days=90, now=NOW
    )
    assert "cache_hit" not in plain
    assert "saved_nanos" not in plain
    assert RawEntry.from_dynamodb(serialize(plain)).saved_cost_usd is None


def test_a_hit_counts_as_a_request_at_zero_cost_with_its_saving() -> None:
    priced = PricedCost(0, CostSource.CATALOG, "genai-prices test")
    entry = RawEntry.from_item(raw_entry_item(hit_event(), priced, ttl_days=90, now=NOW))
    counters = Counters.of(entry)
    assert (counters.requests, counters.cache_hits, counters.saved_nanos, counters.cost_nanos) == (1, 1, 12_000_000, 0)
    # A re-rate (rebuild) never touches the saving: it is what the first call cost
    rerated = Counters.of(entry, cost_nanos=0, cost_source="catalog")
    assert rerated.saved_nanos == 12_000_000


def test_the_entries_row_and_csv_show_the_hit_in_the_last_columns() -> None:
    priced = PricedCost(0, CostSource.CATALOG, "genai-prices test")
    row = entry_row(RawEntry.from_item(raw_entry_item(hit_event(), priced, ttl_days=90, now=NOW)))
    assert (row["cache_hit"], row["saved_cost_usd"]) == (True, Decimal("0.012000000"))
    assert CSV_COLUMNS[-2:] == ("cache_hit", "saved_cost_usd")
    _header, line = render_csv([row]).splitlines()
    assert line.endswith(",true,0.012000000")


def test_a_cached_answer_becomes_a_zero_token_response_flagged_as_a_hit() -> None:
    answer = CachedAnswer(
        text="SELECT 1",
        model="claude-sonnet-4-6",
        tokens=TokenCounts(input_tokens=1500, output_tokens=500),
        cost_nanos=12_000_000,
        cost_source=CostSource.CATALOG,
        created_at=NOW,
        expires_at=int(NOW.timestamp()) + 3600,
        stop_reason="end_turn",
    )
    response = answer.to_response(provider="anthropic", latency_ms=3)
    assert (response.content, response.cache_hit, response.saved_cost_usd) == ("SELECT 1", True, Decimal("0.012"))
    assert (response.usage.total_tokens, response.usage.cost_usd, response.usage.latency_ms) == (0, Decimal(0), 3)
    # An unpriced first call saved an unknown amount: None, never a made-up $0
    unpriced = replace(answer, cost_source=CostSource.UNPRICED, cost_nanos=0)
    assert unpriced.saved_cost_usd is None
