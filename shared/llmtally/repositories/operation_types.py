"""The per-tenant bound on operation types (DESIGN: "cardinality per tenant is bounded").

Each tenant has one registry item in the settings table (`setting_type = usage#operation_types`)
holding a string set. An operation type is admitted by one conditional `ADD`: it succeeds when the
type is already in the set or the set is below the limit. Beyond the limit the ingest stores the
event under `other` (its spend still counts) and keeps the sent name beside it.

The set only grows, so a decision never changes for a given (tenant, type): each process caches
both answers, and the registry costs one write per new (tenant, type) per process, not per event.
A redelivered event is therefore always folded the same way.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from llmtally import aws
from llmtally.repositories._dynamodb import CONDITIONAL_CHECK_FAILED, deserialize, error_code, serialize, storage_errors
from llmtally.settings import get_settings

DEFAULT_MAX_OPERATION_TYPES: Final = 64
REGISTRY_SETTING_TYPE: Final = "usage#operation_types"
#: Always admitted and never counted: where the types beyond the limit go.
ALWAYS_ADMITTED: Final = frozenset({"other"})
_CACHE_LIMIT: Final = 100_000


class OperationTypeRegistry:
    def __init__(
        self,
        *,
        client: Any | None = None,
        table_name: str | None = None,
        limit: int = DEFAULT_MAX_OPERATION_TYPES,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self.limit = limit
        self._decisions: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb")

    @property
    def table_name(self) -> str:
        return self._table_name or get_settings().names.settings_table

    def admit(self, user_id: str, operation_type: str) -> bool:
        """True if the tenant may record this operation type (registering it if new)."""
        if operation_type in ALWAYS_ADMITTED:
            return True
        key = (user_id, operation_type)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        admitted = self._register(user_id, operation_type)
        with self._lock:
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = admitted
        return admitted

    def _register(self, user_id: str, operation_type: str) -> bool:
        from botocore.exceptions import ClientError

        with storage_errors("UpdateItem on the operation-type registry"):
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize({"user_id": user_id, "setting_type": REGISTRY_SETTING_TYPE}),
                    UpdateExpression="ADD #types :new",
                    ConditionExpression=(
                        "attribute_not_exists(#types) OR contains(#types, :type) OR size(#types) < :limit"
                    ),
                    ExpressionAttributeNames={"#types": "operation_types"},
                    ExpressionAttributeValues=serialize(
                        {":new": {operation_type}, ":type": operation_type, ":limit": self.limit}
                    ),
                )
            except ClientError as exc:
                if error_code(exc) == CONDITIONAL_CHECK_FAILED:
                    return False
                raise
        return True

    def registered(self, user_id: str) -> set[str]:
        """The tenant's admitted operation types (for dropdowns and operators)."""
        with storage_errors("GetItem on the operation-type registry"):
            response = self.client.get_item(
                TableName=self.table_name,
                Key=serialize({"user_id": user_id, "setting_type": REGISTRY_SETTING_TYPE}),
                ConsistentRead=True,
            )
        item = deserialize(response.get("Item") or {})
        return {str(value) for value in item.get("operation_types", set())}

    def forget_cache(self) -> None:
        with self._lock:
            self._decisions.clear()
