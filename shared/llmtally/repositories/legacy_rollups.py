"""The rollups of the layout before the packed one (`pk = R#…`), read and marked by the migration.

Item shape (what deployments before the packed layout hold; `llmtally.migrate` moves them):
`pk = R#{user}#{granularity}#{dimension}`, `sk = {bucket}#{value}`, one item per logical rollup
key (`llmtally.rollups.RollupKey`), the counters of `llmtally.rollups.Counters` by their full names
(absent = 0), `expires_at`, stream marks `hw_…`, and, once moved, `migrated = true`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.repositories._dynamodb import batch_get, call, deserialize, error_code
from llmtally.repositories.rollups import CHECKPOINT_PK_PREFIX, MAX_TRANSACTION_ITEMS, RollupItem
from llmtally.rollups import ROLLUP_PK_PREFIX, RollupKey
from llmtally.settings import Settings, get_settings

MIGRATED_ATTRIBUTE: Final = "migrated"
#: Why a cancelled transaction can be tried again after a fresh read: an item's condition failed
#: (migrated, or changed, meanwhile) or another write held one of its items.
RETRYABLE_CANCELLATIONS: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


@dataclass(frozen=True, slots=True)
class LegacyItem:
    """An old-layout rollup item as read: its logical key, counters, and whether it was moved."""

    item: RollupItem
    migrated: bool

    @property
    def key(self) -> RollupKey:
        return self.item.key

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> LegacyItem:
        values = deserialize(raw)
        return cls(RollupItem.from_attributes(values), bool(values.get(MIGRATED_ATTRIBUTE, False)))


class TransactionCancelledError(StorageError):
    """A migration transaction was cancelled for a reason a fresh read can resolve; nothing was written."""


class LegacyRollupRepository:
    """Reads old-layout items and commits their move: each old item marked `migrated` (conditional
    on not being so yet and on holding what was read) in the same transaction as the ADDs into the
    packed items."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self.table = self._settings.names.rollups_table

    def query(self, pk: str) -> list[LegacyItem]:
        """Every item of one old partition (consistent, paginated)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        out: list[LegacyItem] = []
        while True:
            response = self._call("query", **kwargs)
            out.extend(LegacyItem.from_raw(raw) for raw in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return out
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def get(self, keys: Sequence[RollupKey]) -> dict[RollupKey, LegacyItem]:
        """The old items of `keys` that exist, read consistently."""
        raw = batch_get(self._client, self.table, [{"pk": {"S": k.pk}, "sk": {"S": k.sk}} for k in keys])
        found = (LegacyItem.from_raw(item) for item in raw)
        return {item.key: item for item in found}

    def partitions(self) -> Iterator[str]:
        """Every partition key of the table that is an old rollup or a checkpoint (a Scan of keys;
        each distinct value once per page run)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "pk",
            "FilterExpression": "begins_with(pk, :r) OR begins_with(pk, :c)",
            "ExpressionAttributeValues": {":r": {"S": ROLLUP_PK_PREFIX}, ":c": {"S": CHECKPOINT_PK_PREFIX}},
        }
        seen: set[str] = set()
        while True:
            response = self._call("scan", **kwargs)
            for item in response.get("Items", []):
                pk = item["pk"]["S"]
                if pk not in seen:
                    seen.add(pk)
                    yield pk
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def mark_update(self, item: LegacyItem) -> dict[str, Any]:
        """The transaction item marking an old item moved: only if it is not yet, and still holds
        the requests it was read with."""
        requests = item.item.counters.requests
        held = "#rq = :rq" if requests else "(attribute_not_exists(#rq) OR #rq = :rq)"
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": item.key.pk}, "sk": {"S": item.key.sk}},
                "UpdateExpression": "SET #m = :t",
                "ConditionExpression": f"attribute_not_exists(#m) AND {held}",
                "ExpressionAttributeNames": {"#m": MIGRATED_ATTRIBUTE, "#rq": "requests"},
                "ExpressionAttributeValues": {":t": {"BOOL": True}, ":rq": {"N": str(requests)}},
            }
        }

    def transact(self, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems; TransactionCancelledError when a fresh read can resolve why."""
        if len(items) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(items)} items exceed the transaction limit of {MAX_TRANSACTION_ITEMS}")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = {str(r.get("Code")) for r in exc.response.get("CancellationReasons") or []} - {"None"}
            if error_code(exc) == "TransactionCanceledException" and reasons and reasons <= RETRYABLE_CANCELLATIONS:
                raise TransactionCancelledError(f"migration transaction cancelled: {sorted(reasons)}") from exc
            raise StorageError(f"migration transaction failed: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"migration transaction failed: {type(exc).__name__}") from exc

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return call(self._client, "legacy rollups", operation, **kwargs)
