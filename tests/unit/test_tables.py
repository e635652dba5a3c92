"""Table specs: one source of truth, tenant-scoped GSIs, the keys the contract fixes."""

from __future__ import annotations

from llmtally.resources import ResourceNames
from llmtally.tables import (
    RECONCILIATION,
    REJECTS,
    RESPONSE_CACHE,
    ROLLUPS,
    SETTINGS,
    USAGE,
    table_specs,
    to_create_table_kwargs,
)


def test_every_table_is_specified_with_the_prefixed_name() -> None:
    specs = table_specs(ResourceNames("acme-prod"))
    assert set(specs) == {USAGE, ROLLUPS, REJECTS, SETTINGS, RESPONSE_CACHE, RECONCILIATION}
    assert specs[RECONCILIATION].name == "acme-prod-llm-reconciliation"
    assert specs[RESPONSE_CACHE].name == "acme-prod-llm-response-cache"
    assert specs[USAGE].name == "acme-prod-llm-usage"
    assert specs[SETTINGS].name == "acme-prod-user-settings"
    assert table_specs(ResourceNames())[USAGE].name == "mantissa-log-llm-usage"


def test_the_usage_table_is_keyed_by_tenant_and_timestamp_event_id() -> None:
    usage = table_specs(ResourceNames())[USAGE]
    assert (usage.partition_key, usage.sort_key) == ("user_id", "sk")
    assert usage.stream_view == "NEW_IMAGE"
    assert usage.ttl_attribute == "expires_at"


def test_usage_gsis_partition_by_tenant_never_by_a_global_value() -> None:
    usage = table_specs(ResourceNames())[USAGE]
    assert {g.name: (g.partition_key, g.sort_key) for g in usage.gsis} == {
        "by_provider": ("user_provider", "sk"),
        "by_operation": ("user_operation", "sk"),
    }
    assert all(g.partition_key.startswith("user_") for g in usage.gsis)


def test_every_key_attribute_is_defined_and_nothing_else() -> None:
    for spec in table_specs(ResourceNames()).values():
        keys = {spec.partition_key, spec.sort_key} | {g.partition_key for g in spec.gsis}
        keys |= {g.sort_key for g in spec.gsis}
        keys.discard(None)
        assert set(spec.attributes) == keys, spec.name


def test_create_table_kwargs_are_on_demand_with_stream_and_indexes() -> None:
    kwargs = to_create_table_kwargs(table_specs(ResourceNames())[USAGE])
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert kwargs["KeySchema"] == [
        {"AttributeName": "user_id", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert kwargs["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert [g["IndexName"] for g in kwargs["GlobalSecondaryIndexes"]] == ["by_provider", "by_operation"]
    assert all(g["Projection"] == {"ProjectionType": "ALL"} for g in kwargs["GlobalSecondaryIndexes"])


def test_tables_without_stream_or_index_omit_them() -> None:
    kwargs = to_create_table_kwargs(table_specs(ResourceNames())[ROLLUPS])
    assert "StreamSpecification" not in kwargs
    assert "GlobalSecondaryIndexes" not in kwargs


def test_the_response_cache_is_per_user_with_a_ttl_and_no_stream() -> None:
    cache = table_specs(ResourceNames())[RESPONSE_CACHE]
    assert (cache.partition_key, cache.sort_key) == ("user_id", "cache_key")
    assert cache.ttl_attribute == "expires_at"
    assert cache.stream_view is None
    assert cache.gsis == ()
