"""Per-tenant bounds on the distinct values of a dimension (DESIGN: "cardinality per tenant is bounded").

Every distinct value a tenant sends in a rolled-up dimension (an operation type, a model, later a
tag key's values) adds rollup items and summary reads for ever after, so each is bounded per tenant
by a `CardinalityRegistry`:

- one registry item per (tenant, dimension[, scope]) in the settings table
  (`setting_type = usage#{dimension}[#{scope}]`) holding a string set;
- a value is admitted by one conditional `ADD`: it succeeds when the value is already in the set
  or the set is below the limit;
- beyond the limit the ingest stores the event under the dimension's *fold value* (its spend and
  tokens still count; nothing is dropped) and keeps the sent value beside it on the raw entry.

The set only grows, so a decision never changes for a given (tenant, value): each process caches
both answers, and a registry costs one write per new (tenant, value) per process, not per event.
A redelivered event is therefore always folded the same way. The fold value itself is always
admitted and never counted.

`scope` is for dimensions bounded per (tenant, key) — tag values per tag key: `admit(user, value,
scope=key)` keeps one set per key.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from llmtally import aws
from llmtally.events import OTHER_TAG_VALUE
from llmtally.repositories._dynamodb import CONDITIONAL_CHECK_FAILED, deserialize, error_code, serialize, storage_errors
from llmtally.settings import get_settings

#: What a tenant's operation types beyond the bound are stored as (a valid operation type itself).
OTHER_OPERATION_TYPE: Final = "other"
#: What a tenant's models beyond the bound are stored as: no provider names a model with a
#: parenthesis (`MODEL_PATTERN` starts with a letter or digit), so it never collides with a real one.
OTHER_MODEL: Final = OTHER_TAG_VALUE
_CACHE_LIMIT: Final = 100_000


class CardinalityRegistry:
    """The per-tenant bound on one dimension's distinct values (see the module doc)."""

    def __init__(
        self,
        dimension: str,
        *,
        limit: int,
        fold_value: str,
        attribute: str = "values",
        client: Any | None = None,
        table_name: str | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("a cardinality limit is at least 1")
        self.dimension = dimension
        self.limit = limit
        self.fold_value = fold_value
        self.attribute = attribute
        self._client = client
        self._table_name = table_name
        self._decisions: dict[tuple[str, str | None, str], bool] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb")

    @property
    def table_name(self) -> str:
        return self._table_name or get_settings().names.settings_table

    def setting_type(self, scope: str | None = None) -> str:
        """The registry item's sort key: `usage#{dimension}` or `usage#{dimension}#{scope}`."""
        return f"usage#{self.dimension}" if scope is None else f"usage#{self.dimension}#{scope}"

    def admit(self, user_id: str, value: str, *, scope: str | None = None) -> bool:
        """True if the tenant may record this value (registering it if new)."""
        if value == self.fold_value:
            return True
        key = (user_id, scope, value)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        admitted = self._register(user_id, value, scope)
        with self._lock:
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = admitted
        return admitted

    def fold(self, user_id: str, value: str, *, scope: str | None = None) -> tuple[str, str | None]:
        """`(value to store, original)`: the value itself and None when admitted, else the fold
        value and the value that was sent."""
        if self.admit(user_id, value, scope=scope):
            return value, None
        return self.fold_value, value

    def _register(self, user_id: str, value: str, scope: str | None) -> bool:
        from botocore.exceptions import ClientError

        with storage_errors(f"UpdateItem on the {self.dimension} registry"):
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize({"user_id": user_id, "setting_type": self.setting_type(scope)}),
                    UpdateExpression="ADD #values :new",
                    ConditionExpression=(
                        "attribute_not_exists(#values) OR contains(#values, :value) OR size(#values) < :limit"
                    ),
                    ExpressionAttributeNames={"#values": self.attribute},
                    ExpressionAttributeValues=serialize({":new": {value}, ":value": value, ":limit": self.limit}),
                )
            except ClientError as exc:
                if error_code(exc) == CONDITIONAL_CHECK_FAILED:
                    return False
                raise
        return True

    def registered(self, user_id: str, *, scope: str | None = None) -> set[str]:
        """The tenant's admitted values (for dropdowns and operators)."""
        with storage_errors(f"GetItem on the {self.dimension} registry"):
            response = self.client.get_item(
                TableName=self.table_name,
                Key=serialize({"user_id": user_id, "setting_type": self.setting_type(scope)}),
                ConsistentRead=True,
            )
        item = deserialize(response.get("Item") or {})
        return {str(value) for value in item.get(self.attribute, set())}

    def forget_cache(self) -> None:
        with self._lock:
            self._decisions.clear()


class OperationTypeRegistry(CardinalityRegistry):
    """Operation types per tenant (item `usage#operation_types`, attribute `operation_types`, as before
    the registry was generalised: existing registries keep counting)."""

    def __init__(self, *, client: Any | None = None, table_name: str | None = None, limit: int | None = None) -> None:
        super().__init__(
            "operation_types",
            limit=limit if limit is not None else get_settings().max_operation_types_per_tenant,
            fold_value=OTHER_OPERATION_TYPE,
            attribute="operation_types",
            client=client,
            table_name=table_name,
        )


class ModelRegistry(CardinalityRegistry):
    """Models per tenant, as `{provider}#{model}` (the model dimension's rollup value), so the bound
    is exactly the number of model rollup values a tenant can have, plus one `(other)` per provider."""

    def __init__(self, *, client: Any | None = None, table_name: str | None = None, limit: int | None = None) -> None:
        super().__init__(
            "models",
            limit=limit if limit is not None else get_settings().max_models_per_tenant,
            fold_value=OTHER_MODEL,
            attribute="models",
            client=client,
            table_name=table_name,
        )

    def fold_model(self, user_id: str, provider: str, model: str) -> tuple[str, str | None]:
        """`(model to store, original)` for a call of `provider`'s `model`."""
        if model == OTHER_MODEL or self.admit(user_id, f"{provider}#{model}"):
            return model, None
        return OTHER_MODEL, model
