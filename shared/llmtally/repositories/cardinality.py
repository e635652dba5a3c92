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

import hashlib
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
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


#: Folded values remembered per (tenant, key, month), as 12-hex-digit hashes, so the number of
#: distinct folded values can be shown; past this many the count is a lower bound ("at least").
MAX_FOLDED_RECORDED: Final = 10_000


def tag_month(at: datetime) -> str:
    """The UTC month a tag value is bounded in, `YYYY-MM` (an event's timestamp decides it)."""
    return at.astimezone(UTC).strftime("%Y-%m")


def _fold_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


class TagRegistry:
    """Tag keys per tenant (default 16, for good) and values per (tenant, key, UTC month) (default
    1,000). A key beyond its bound is not rolled up (the pair stays on the raw entry); a value beyond
    its bound rolls up as `(other)`, and its hash joins the month's `folded` set, so the number of
    distinct folded values is visible (`folded_values`). Decisions are cached per process like every
    registry's, so the same event always folds the same way; the ingest stores the decision on the
    raw entry (`rollup_tags`), which is what the aggregator and a rebuild read."""

    def __init__(
        self,
        *,
        client: Any | None = None,
        table_name: str | None = None,
        max_keys: int | None = None,
        max_values: int | None = None,
    ) -> None:
        settings = get_settings() if max_keys is None or max_values is None else None
        self.keys = CardinalityRegistry(
            "tag_keys",
            limit=max_keys if max_keys is not None else settings.max_tag_keys_per_tenant,  # type: ignore[union-attr]
            fold_value=OTHER_TAG_VALUE,
            attribute="tag_keys",
            client=client,
            table_name=table_name,
        )
        self.values = CardinalityRegistry(
            "tag_values",
            limit=max_values if max_values is not None else settings.max_tag_values_per_key,  # type: ignore[union-attr]
            fold_value=OTHER_TAG_VALUE,
            attribute="tag_values",
            client=client,
            table_name=table_name,
        )
        self._recorded: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    @staticmethod
    def scope(key: str, month: str) -> str:
        return f"{key}#{month}"

    def fold_tags(self, user_id: str, tags: Mapping[str, str], at: datetime) -> dict[str, str] | None:
        """The tags to roll up for an event at `at`, or None when they are the tags as sent."""
        if not tags:
            return None
        month = tag_month(at)
        rolled: dict[str, str] = {}
        changed = False
        for key, value in sorted(tags.items()):
            if not self.keys.admit(user_id, key):
                changed = True
                continue
            stored, original = self.values.fold(user_id, value, scope=self.scope(key, month))
            if original is not None:
                changed = True
                self._record_fold(user_id, self.scope(key, month), original)
            rolled[key] = stored
        return rolled if changed else None

    def _record_fold(self, user_id: str, scope: str, value: str) -> None:
        from botocore.exceptions import ClientError

        digest = _fold_hash(value)
        marker = (user_id, scope, digest)
        if marker in self._recorded:
            return
        with storage_errors("UpdateItem on the tag_values registry"):
            try:
                self.values.client.update_item(
                    TableName=self.values.table_name,
                    Key=serialize({"user_id": user_id, "setting_type": self.values.setting_type(scope)}),
                    UpdateExpression="ADD folded :new",
                    ConditionExpression="attribute_not_exists(folded) OR contains(folded, :h) OR size(folded) < :cap",
                    ExpressionAttributeValues=serialize({":new": {digest}, ":h": digest, ":cap": MAX_FOLDED_RECORDED}),
                )
            except ClientError as exc:
                if error_code(exc) != CONDITIONAL_CHECK_FAILED:
                    raise
        with self._lock:
            if len(self._recorded) >= _CACHE_LIMIT:
                self._recorded.clear()
            self._recorded.add(marker)

    def tag_keys(self, user_id: str) -> set[str]:
        return self.keys.registered(user_id)

    def month_counts(self, user_id: str, key: str, month: str) -> tuple[int, set[str]]:
        """(values admitted, hashes of values folded) for a key in a month."""
        with storage_errors("GetItem on the tag_values registry"):
            response = self.values.client.get_item(
                TableName=self.values.table_name,
                Key=serialize({"user_id": user_id, "setting_type": self.values.setting_type(self.scope(key, month))}),
                ConsistentRead=True,
            )
        item = deserialize(response.get("Item") or {})
        return len(item.get("tag_values", set())), {str(h) for h in item.get("folded", set())}

    def folded_values(self, user_id: str, key: str, months: Iterable[str]) -> int:
        """Distinct values of `key` folded into `(other)` in any of `months` (a lower bound past
        MAX_FOLDED_RECORDED a month)."""
        folded: set[str] = set()
        for month in sorted(set(months)):
            folded |= self.month_counts(user_id, key, month)[1]
        return len(folded)

    def months_folded(self, user_id: str, key: str, value: str, months: Iterable[str]) -> list[str]:
        """The months (sorted) in which `value` of `key` was past the bound: its calls then rolled up
        as `(other)`, so the value's own rollups miss them (an insight under a tag filter says so)."""
        digest = _fold_hash(value)
        return [month for month in sorted(set(months)) if digest in self.month_counts(user_id, key, month)[1]]

    def forget_cache(self) -> None:
        self.keys.forget_cache()
        self.values.forget_cache()
        with self._lock:
            self._recorded.clear()
