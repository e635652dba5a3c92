"""The settings table: one item per user and setting type (`llm_preferences`, rate-limit counters, …).

The preferences item keeps the seed's shape::

    {"user_id": "user-123", "setting_type": "llm_preferences",
     "preferences": {"defaultProvider": "anthropic", "queryModel": "…", "detectionModel": "…",
                     "maxTokens": 2000, "temperature": 0.0, "enableCaching": true, "trackUsage": true},
     "updated_at": "2024-11-27T10:30:00.000Z"}

Numbers go to DynamoDB as Decimal (a float never reaches boto3: `temperature` goes through its
shortest repr) and come back as int when integral, else float (temperature is not money).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.events import format_timestamp
from llmtally.settings import Settings, get_settings

LLM_PREFERENCES: Final = "llm_preferences"
RATE_LIMIT_PREFIX: Final = "rate_limit#"
#: The TTL attribute name the tables use (llmtally.tables.TTL_ATTRIBUTE); counters carry it.
TTL_ATTRIBUTE: Final = "expires_at"


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__} in the settings table")


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


class SettingsRepository:
    """Reads and writes the settings table (low-level client; items (de)serialized here)."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client or aws.client("dynamodb", self._settings)
        self._table = self._settings.names.settings_table
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    # -- preferences ---------------------------------------------------------------------

    def get_preferences(self, user_id: str) -> dict[str, Any] | None:
        """The stored `preferences` map (plain JSON types), or None if the user never saved any."""
        item = self._get(user_id, LLM_PREFERENCES)
        if item is None or not isinstance(item.get("preferences"), dict):
            return None
        prefs: dict[str, Any] = _from_dynamo(item["preferences"])
        return prefs

    def put_preferences(self, user_id: str, preferences: Mapping[str, Any], *, updated_at: datetime) -> None:
        item = {
            "user_id": user_id,
            "setting_type": LLM_PREFERENCES,
            "preferences": _to_dynamo(preferences),
            "updated_at": format_timestamp(updated_at),
        }
        self._call("put_item", TableName=self._table, Item=self._serialize(item))

    # -- fixed-window rate limit -------------------------------------------------------------

    def take_rate_limit_token(self, user_id: str, name: str, *, window_start: int, limit: int, expires_at: int) -> bool:
        """Count one use of `name` in the window starting at `window_start` (epoch s); False when over `limit`.

        One counter item per user and name (`rate_limit#{name}`): the first conditional update
        counts within the current window; if the item holds an older window (or none), the second
        resets it to this window with a count of 1. Both are atomic, so concurrent calls never
        exceed the limit. The item carries `expires_at` for the table's TTL.
        """
        key = self._serialize({"user_id": user_id, "setting_type": f"{RATE_LIMIT_PREFIX}{name}"})
        ccf = self._client.exceptions.ConditionalCheckFailedException
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #n = #n + :one, #e = :exp",
                ConditionExpression="#w = :w AND #n < :limit",
                ExpressionAttributeNames={"#n": "count", "#w": "window_start", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":w": {"N": str(window_start)},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(expires_at)},
                },
            )
            return True
        except ccf:
            pass
        except Exception as exc:
            raise _storage_error("update_item", exc) from exc
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #n = :one, #w = :w, #e = :exp",
                ConditionExpression="attribute_not_exists(#w) OR #w < :w",
                ExpressionAttributeNames={"#n": "count", "#w": "window_start", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":w": {"N": str(window_start)},
                    ":exp": {"N": str(expires_at)},
                },
            )
            return True
        except ccf:
            # The item holds this window (or a newer one) and is at the limit.
            return False
        except Exception as exc:
            raise _storage_error("update_item", exc) from exc

    # -- helpers ---------------------------------------------------------------------------

    def _get(self, user_id: str, setting_type: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            TableName=self._table,
            Key=self._serialize({"user_id": user_id, "setting_type": setting_type}),
            ConsistentRead=True,
        )
        raw = response.get("Item")
        if raw is None:
            return None
        return {k: self._de.deserialize(v) for k, v in raw.items()}

    def _serialize(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in item.items()}

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(**kwargs)
        except Exception as exc:
            raise _storage_error(operation, exc) from exc


def _storage_error(operation: str, exc: Exception) -> StorageError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return StorageError(f"settings table {operation} failed: {code}")
