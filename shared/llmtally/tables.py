"""DynamoDB table specs: the one source of truth for tests, the local stack and the CDK app.

Each table is described once, as data (`TableSpec`); `to_create_table_kwargs` turns a spec into
CreateTable arguments and the CDK construct (later) into `dynamodb.Table` props.

- usage (raw entries): `user_id` / `sk` = `{timestamp ms Z}#{event_id}`; GSIs whose partition keys
  include the tenant (`{user_id}#{provider}`, `{user_id}#{operation_type}`); stream NEW_IMAGE; TTL.
- rollups: `pk` / `sk`, designed by the rollup repository; TTL; no stream.
- rejects: `pk` = UTC day the message was refused, `sk` = `{received_at}#{message_id}`; TTL.
- settings: `user_id` / `setting_type` (preferences, budgets, the ingest's operation-type registry).
- response cache: `user_id` / `cache_key` (a sha256 that also covers the user id); TTL; no stream
  (see `llmtally.repositories.response_cache` and docs/caching.md).
- reconciliation: `user_id` / `sk` = `{day}#{provider}#{model}` (a row), `alert#…`, `source#…`; TTL
  (see `llmtally.repositories.reconciliation` and docs/reconciliation.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from llmtally.resources import ResourceNames

AttributeType = Literal["S", "N"]

USAGE: Final = "usage"
ROLLUPS: Final = "rollups"
REJECTS: Final = "rejects"
SETTINGS: Final = "settings"
RESPONSE_CACHE: Final = "response_cache"
RECONCILIATION: Final = "reconciliation"

#: The usage table's GSIs: per-tenant provider and operation filtering.
USAGE_BY_PROVIDER: Final = "by_provider"
USAGE_BY_OPERATION: Final = "by_operation"
#: The TTL attribute of every table that has one (epoch seconds).
TTL_ATTRIBUTE: Final = "expires_at"


@dataclass(frozen=True, slots=True)
class GsiSpec:
    name: str
    partition_key: str
    sort_key: str | None = None
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    partition_key: str
    sort_key: str | None
    #: Every key attribute (table and GSIs) with its type.
    attributes: dict[str, AttributeType] = field(default_factory=dict)
    gsis: tuple[GsiSpec, ...] = ()
    stream_view: Literal["NEW_IMAGE"] | None = None
    ttl_attribute: str | None = None


def table_specs(names: ResourceNames) -> dict[str, TableSpec]:
    """The tables, keyed `usage`, `rollups`, `rejects`, `settings`, `response_cache`, `reconciliation`."""
    return {
        USAGE: TableSpec(
            name=names.usage_table,
            partition_key="user_id",
            sort_key="sk",
            attributes={"user_id": "S", "sk": "S", "user_provider": "S", "user_operation": "S"},
            gsis=(
                GsiSpec(USAGE_BY_PROVIDER, "user_provider", "sk"),
                GsiSpec(USAGE_BY_OPERATION, "user_operation", "sk"),
            ),
            stream_view="NEW_IMAGE",
            ttl_attribute=TTL_ATTRIBUTE,
        ),
        ROLLUPS: TableSpec(
            name=names.rollups_table,
            partition_key="pk",
            sort_key="sk",
            attributes={"pk": "S", "sk": "S"},
            ttl_attribute=TTL_ATTRIBUTE,
        ),
        REJECTS: TableSpec(
            name=names.rejects_table,
            partition_key="pk",
            sort_key="sk",
            attributes={"pk": "S", "sk": "S"},
            ttl_attribute=TTL_ATTRIBUTE,
        ),
        SETTINGS: TableSpec(
            name=names.settings_table,
            partition_key="user_id",
            sort_key="setting_type",
            attributes={"user_id": "S", "setting_type": "S"},
        ),
        RESPONSE_CACHE: TableSpec(
            name=names.response_cache_table,
            partition_key="user_id",
            sort_key="cache_key",
            attributes={"user_id": "S", "cache_key": "S"},
            ttl_attribute=TTL_ATTRIBUTE,
        ),
        RECONCILIATION: TableSpec(
            name=names.reconciliation_table,
            partition_key="user_id",
            sort_key="sk",
            attributes={"user_id": "S", "sk": "S"},
            ttl_attribute=TTL_ATTRIBUTE,
        ),
    }


def _key_schema(partition_key: str, sort_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition_key, "KeyType": "HASH"}]
    if sort_key is not None:
        schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return schema


def to_create_table_kwargs(spec: TableSpec) -> dict[str, Any]:
    """CreateTable arguments (on-demand billing). TTL is a separate call: `UpdateTimeToLive`."""
    kwargs: dict[str, Any] = {
        "TableName": spec.name,
        "KeySchema": _key_schema(spec.partition_key, spec.sort_key),
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in sorted(spec.attributes.items())
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.gsis:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": gsi.name,
                "KeySchema": _key_schema(gsi.partition_key, gsi.sort_key),
                "Projection": {"ProjectionType": gsi.projection},
            }
            for gsi in spec.gsis
        ]
    if spec.stream_view is not None:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream_view}
    return kwargs


def create_tables(dynamodb_client: Any, names: ResourceNames) -> dict[str, TableSpec]:
    """Create every table that does not exist yet, with its TTL (tests and the local stack)."""
    from llmtally.repositories.rollups import forget_cell_codes

    forget_cell_codes()  # a new rollups table starts with no cell dictionary
    existing: set[str] = set()
    for page in dynamodb_client.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    specs = table_specs(names)
    for spec in specs.values():
        if spec.name in existing:
            continue
        dynamodb_client.create_table(**to_create_table_kwargs(spec))
        dynamodb_client.get_waiter("table_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 1})
        if spec.ttl_attribute is not None:
            dynamodb_client.update_time_to_live(
                TableName=spec.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )
    return specs
