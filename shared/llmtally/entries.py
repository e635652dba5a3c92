"""The raw entry: what the usage table holds for one ingested event, written and read back.

A domain type of its own (not the ingest's): the ingest writes it (`raw_entry_item`), the
repositories, the aggregator, rebuilds and the API read it (`RawEntry`). Nothing here touches
boto3 but `RawEntry.from_dynamodb`'s deserializer, imported when called.

Attributes that are rare or at their default are left off the item (`cache_hit`, `tags`,
`usage_source` when `reported`, the folded originals), so ordinary items stay as small as they
were before those fields existed; `RawEntry` reads an absent one as its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmtally.events import (
    SCHEMA_VERSION,
    Provider,
    Status,
    TokenCounts,
    UsageEvent,
    UsageSource,
    format_timestamp,
)
from llmtally.money import nanos_to_usd, usd_to_nanos
from llmtally.pricing import CostSource, PricedCost


def raw_entry_item(
    event: UsageEvent,
    priced: PricedCost,
    *,
    ttl_days: int,
    now: datetime,
    original_operation_type: str | None = None,
    original_model: str | None = None,
    rollup_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The usage table item for an event (python values; every number an int, never a float).

    `original_operation_type` / `original_model` are set when the event's operation type or
    model was folded by a per-tenant bound; `operation_type` / `model` then hold the fold.
    `rollup_tags` is set when a tag key or value was folded by its bound (`tags` keeps what was
    sent; the rollups count `rollup_tags`).
    """
    item: dict[str, Any] = {
        "user_id": event.user_id,
        "sk": event.sort_key,
        "schema_version": event.schema_version,
        "event_id": event.event_id,
        "timestamp": format_timestamp(event.timestamp),
        "provider": event.provider.value,
        "model": event.model,
        "operation_type": event.operation_type,
        "status": event.status.value,
        "latency_ms": event.latency_ms,
        "input_tokens": event.input_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "total_tokens": event.total_tokens,
        "cost_nanos": priced.cost_nanos,
        "cost_source": priced.source.value,
        "price_version": priced.price_version,
        "ingested_at": format_timestamp(now),
        "expires_at": int((event.timestamp + timedelta(days=ttl_days)).timestamp()),
        "user_provider": f"{event.user_id}#{event.provider.value}",
        "user_operation": f"{event.user_id}#{event.operation_type}",
    }
    optional: dict[str, Any] = {
        "request_id": event.request_id,
        "error_type": event.error_type,
        "cache_write_5m_tokens": event.cache_write_5m_tokens,
        "cache_write_1h_tokens": event.cache_write_1h_tokens,
        "catalog_model": priced.catalog_model,
        "original_operation_type": original_operation_type,
        "original_model": original_model,
    }
    if event.reported_cost_usd is not None:
        optional["reported_cost_nanos"] = usd_to_nanos(event.reported_cost_usd)
    # Only on hits (the rare case), so ordinary items stay as small as before the response cache.
    if event.cache_hit:
        optional["cache_hit"] = True
        if event.saved_cost_usd:
            optional["saved_nanos"] = usd_to_nanos(event.saved_cost_usd)
    if event.usage_source is not UsageSource.REPORTED:
        optional["usage_source"] = event.usage_source.value
    if event.metadata:
        optional["metadata"] = dict(event.metadata)
    if event.tags:
        optional["tags"] = dict(event.tags)
    if rollup_tags is not None:
        # Stored even when empty (every key beyond the tenant's key bound): absent means "as sent".
        optional["rollup_tags"] = dict(rollup_tags)
    item.update({key: value for key, value in optional.items() if value is not None})
    return item


class RawEntry(BaseModel):
    """A raw entry read back: from a table item or a stream NEW_IMAGE (see `from_dynamodb`).

    Numbers arrive from boto3 as Decimal; they are checked to be integral and become ints.
    Attributes this version does not know are ignored, so newer writers never break readers.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str
    sk: str
    schema_version: int = SCHEMA_VERSION
    event_id: str
    timestamp: datetime
    request_id: str | None = None
    provider: Provider
    model: str
    original_model: str | None = None
    operation_type: str
    original_operation_type: str | None = None
    status: Status
    error_type: str | None = None
    latency_ms: int
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_nanos: int
    cost_source: CostSource
    price_version: str
    catalog_model: str | None = None
    reported_cost_nanos: int | None = None
    #: Answered from the response cache (absent on the item when false).
    cache_hit: bool = False
    #: What the cached answer cost when first produced, nano-USD (absent on the item when 0).
    saved_nanos: int = 0
    #: Where the ledger came from (absent on the item when `reported`).
    usage_source: UsageSource = UsageSource.REPORTED
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
    #: Attribution dimensions as the producer sent them (absent on the item when empty).
    tags: dict[str, str] = Field(default_factory=dict)
    #: The tags the rollups count when a key or value was folded by its bound (absent: `tags`).
    rollup_tags: dict[str, str] | None = None
    ingested_at: datetime | None = None
    expires_at: int | None = None

    @field_validator(
        "schema_version",
        "latency_ms",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_nanos",
        "reported_cost_nanos",
        "saved_nanos",
        "expires_at",
        mode="before",
    )
    @classmethod
    def _integral(cls, value: Any) -> Any:
        return _to_int(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_ints(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: _to_int(v) if isinstance(v, Decimal) else v for k, v in value.items()}
        return value

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RawEntry:
        """From a deserialized item (python values, numbers as Decimal or int)."""
        return cls.model_validate(dict(item))

    @classmethod
    def from_dynamodb(cls, image: Mapping[str, Any]) -> RawEntry:
        """From DynamoDB JSON (`{"user_id": {"S": "…"}, …}`): GetItem/Query items or a stream NEW_IMAGE."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        return cls.from_item({key: deserializer.deserialize(value) for key, value in image.items()})

    def tokens(self) -> TokenCounts:
        """The ledger, for re-pricing (`PriceBook.price(provider, model, entry.tokens(), at=…)`)."""
        return TokenCounts(
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    @property
    def usage_missing(self) -> bool:
        """The provider never reported this call's usage: its ledger (and cost) is a lower bound."""
        return self.usage_source is UsageSource.MISSING

    @property
    def reported_cost_usd(self) -> Decimal | None:
        return None if self.reported_cost_nanos is None else nanos_to_usd(self.reported_cost_nanos)

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)

    @property
    def saved_cost_usd(self) -> Decimal | None:
        """What a cache hit saved (None for an ordinary call)."""
        return nanos_to_usd(self.saved_nanos) if self.cache_hit else None


def _to_int(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    return value


__all__ = ["RawEntry", "raw_entry_item"]
