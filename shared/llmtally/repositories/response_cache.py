"""The response-cache table: one item per user and cache key, expiring with DynamoDB's TTL.

Item: `user_id` (partition), `cache_key` (sort: the sha256 of `llmtally.response_cache.key_for`),
`text`, `model`, `stop_reason`, the first call's token ledger as a map of integers, `cost_nanos`
and `cost_source` (what producing the answer cost: a hit's saved figure), `created_at`, and
`expires_at` (epoch seconds, the table's TTL attribute). Answers larger than
`MAX_CACHED_TEXT_BYTES` are not stored: a DynamoDB item holds at most 400 KB.

TTL deletion is lazy (up to days late on AWS; never in moto), so `get` returns what it finds and
`llmtally.response_cache.ResponseCache` refuses entries past `expires_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from llmtally import aws
from llmtally.events import TokenCounts, format_timestamp
from llmtally.pricing import CostSource
from llmtally.repositories._dynamodb import deserialize, serialize, storage_errors
from llmtally.response_cache import CachedAnswer
from llmtally.settings import Settings, get_settings

#: The largest answer kept (UTF-8 bytes); the rest of the item is well under 50 KB of headroom.
MAX_CACHED_TEXT_BYTES: Final = 350 * 1024
_LEDGER_FIELDS: Final = tuple(name for name in TokenCounts.model_fields)


class ResponseCacheRepository:
    """The only code that touches the response-cache table. Low-level client, built lazily."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        self._client = client
        self._settings = settings

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb", self._settings)

    @property
    def table_name(self) -> str:
        return (self._settings or get_settings()).names.response_cache_table

    def get(self, user_id: str, cache_key: str) -> CachedAnswer | None:
        """The stored entry, expired or not (the caller checks `expires_at`), or None."""
        with storage_errors("GetItem on the response-cache table"):
            response = self.client.get_item(
                TableName=self.table_name,
                Key=serialize({"user_id": user_id, "cache_key": cache_key}),
            )
        raw = response.get("Item")
        if raw is None:
            return None
        item = deserialize(raw)
        ledger = item.get("tokens") or {}
        return CachedAnswer(
            text=str(item["text"]),
            model=str(item["model"]),
            tokens=TokenCounts(**{name: int(value) for name, value in ledger.items() if name in _LEDGER_FIELDS}),
            cost_nanos=int(item["cost_nanos"]),
            cost_source=CostSource(item["cost_source"]),
            created_at=datetime.fromisoformat(str(item["created_at"])),
            expires_at=int(item["expires_at"]),
            stop_reason=item.get("stop_reason"),
        )

    def put(self, user_id: str, cache_key: str, answer: CachedAnswer) -> bool:
        """Store (or replace) an entry; False, and nothing written, when the text is too large."""
        if len(answer.text.encode("utf-8", errors="surrogatepass")) > MAX_CACHED_TEXT_BYTES:
            return False
        ledger = answer.tokens.model_dump(exclude={"total_tokens"}, exclude_none=True)
        item: dict[str, Any] = {
            "user_id": user_id,
            "cache_key": cache_key,
            "text": answer.text,
            "model": answer.model,
            "tokens": {name: value for name, value in ledger.items() if value},
            "cost_nanos": answer.cost_nanos,
            "cost_source": answer.cost_source.value,
            "created_at": format_timestamp(answer.created_at),
            "expires_at": answer.expires_at,
        }
        if answer.stop_reason is not None:
            item["stop_reason"] = answer.stop_reason
        # Unconditional: two racing misses store equal answers to a deterministic request.
        with storage_errors("PutItem on the response-cache table"):
            self.client.put_item(TableName=self.table_name, Item=serialize(item))
        return True
