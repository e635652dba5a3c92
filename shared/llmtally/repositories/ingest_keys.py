"""Ingest keys in the settings table: two items per key, written and deleted together.

* the tenant's item — `user_id = <tenant>`, `setting_type = ingest_key#<key id>`: name, creator,
  creation and last-use times (what the tenant lists, one Query of its partition);
* the lookup item — `user_id = #ingest-key#<key id>`, `setting_type = ingest_key`: the tenant,
  the scope and `secret_hash` (what a request is checked against, one consistent GetItem).

A lookup partition starts with `#`, which no tenant id can (`USER_ID_PATTERN`), so the two kinds
never meet; one partition per key keeps lookups off any hot partition. Creation is one
`TransactWriteItems` with `attribute_not_exists` on both; revocation deletes both in one
transaction, so a revoked key fails its very next request (there is no cache to expire).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.events import format_timestamp
from llmtally.ingest_keys import IngestKey
from llmtally.repositories._dynamodb import deserialize, error_code, serialize, storage_errors
from llmtally.settings import Settings, get_settings

TENANT_ITEM_PREFIX: Final = "ingest_key#"
LOOKUP_PARTITION_PREFIX: Final = "#ingest-key#"
LOOKUP_SETTING_TYPE: Final = "ingest_key"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class IngestKeyRepository:
    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self._table = self._settings.names.settings_table

    # -- keys of the two items -------------------------------------------------------------

    @staticmethod
    def _tenant_key(user_id: str, key_id: str) -> dict[str, Any]:
        return {"user_id": user_id, "setting_type": f"{TENANT_ITEM_PREFIX}{key_id}"}

    @staticmethod
    def _lookup_key(key_id: str) -> dict[str, Any]:
        return {"user_id": f"{LOOKUP_PARTITION_PREFIX}{key_id}", "setting_type": LOOKUP_SETTING_TYPE}

    # -- writes ----------------------------------------------------------------------------

    def create(self, key: IngestKey, secret_hash: str) -> None:
        tenant_item = {
            **self._tenant_key(key.user_id, key.key_id),
            "key_id": key.key_id,
            "name": key.name,
            "created_at": format_timestamp(key.created_at),
            "created_by": key.created_by,
            "all_tenants": key.all_tenants,
        }
        lookup_item = {
            **self._lookup_key(key.key_id),
            "tenant": key.user_id,
            "all_tenants": key.all_tenants,
            "secret_hash": secret_hash,
        }
        condition = "attribute_not_exists(setting_type)"
        with storage_errors("ingest key create"):
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": serialize(tenant_item),
                            "ConditionExpression": condition,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": serialize(lookup_item),
                            "ConditionExpression": condition,
                        }
                    },
                ]
            )

    def revoke(self, user_id: str, key_id: str) -> bool:
        """Delete both items; False when the tenant holds no such key (idempotent)."""
        if self._get(self._tenant_key(user_id, key_id)) is None:
            return False
        with storage_errors("ingest key revoke"):
            self._client.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self._table, "Key": serialize(self._tenant_key(user_id, key_id))}},
                    {"Delete": {"TableName": self._table, "Key": serialize(self._lookup_key(key_id))}},
                ]
            )
        return True

    def touch(self, user_id: str, key_id: str, used_at: datetime) -> None:
        """Record a use; never recreates a revoked key's item (the update is conditional on it)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=serialize(self._tenant_key(user_id, key_id)),
                UpdateExpression="SET last_used_at = :t",
                ConditionExpression="attribute_exists(setting_type)",
                ExpressionAttributeValues={":t": {"S": format_timestamp(used_at)}},
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise StorageError(f"ingest key touch failed: {error_code(exc) or type(exc).__name__}") from exc

    # -- reads -----------------------------------------------------------------------------

    def lookup(self, key_id: str) -> tuple[str, bool, str] | None:
        """`(tenant, all_tenants, secret_hash)` of a live key, else None."""
        item = self._get(self._lookup_key(key_id))
        if item is None:
            return None
        return str(item["tenant"]), bool(item.get("all_tenants", False)), str(item["secret_hash"])

    def list(self, user_id: str) -> list[IngestKey]:
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "user_id = :u AND begins_with(setting_type, :p)",
                "ExpressionAttributeValues": {":u": {"S": user_id}, ":p": {"S": TENANT_ITEM_PREFIX}},
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            with storage_errors("ingest key list"):
                response = self._client.query(**kwargs)
            items.extend(deserialize(raw) for raw in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        keys = [
            IngestKey(
                key_id=str(item["key_id"]),
                user_id=user_id,
                name=str(item.get("name", "")),
                created_at=_parse_time(item.get("created_at")) or datetime(1970, 1, 1, tzinfo=UTC),
                created_by=str(item.get("created_by", "")),
                all_tenants=bool(item.get("all_tenants", False)),
                last_used_at=_parse_time(item.get("last_used_at")),
            )
            for item in items
        ]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        with storage_errors("ingest key read"):
            response = self._client.get_item(TableName=self._table, Key=serialize(key), ConsistentRead=True)
        raw = response.get("Item")
        return deserialize(raw) if raw is not None else None
