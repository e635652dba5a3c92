"""The rollups table: coalesced deltas committed with stream checkpoints, and bucket-range reads.

Item shapes (key design in `llmtally.rollups`):

- rollup: `pk = R#{user}#{granularity}#{dimension}`, `sk = {bucket}#{value}` (the tenant,
  granularity, dimension, bucket and value are all in the keys), the counters of
  `llmtally.rollups.Counters` that were ever non-zero (integers only: moto corrupts ADD of
  fractions and real DynamoDB never needs them; an absent counter is 0), `expires_at` =
  bucket end + `rollup_ttl_days`, and `hw_{stream}`: the padded sequence number of the last
  stream record the item holds (`apply_marked`, docs/pipeline.md "Delivery guarantees").
- checkpoint: `pk = C#{user}`, `sk = {stream ARN}`, `seq` = the last applied stream sequence
  number zero-padded to 40 digits (the API's maximum length; a padded string compares like the
  number, and 40 digits would not fit a DynamoDB N's 38 digits of precision).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from llmtally.errors import LLMTallyError, StorageError
from llmtally.events import format_timestamp
from llmtally.repositories._dynamodb import batch_get
from llmtally.rollups import (
    COUNTER_FIELDS,
    BucketRun,
    Counters,
    RollupKey,
    partition_key,
)
from llmtally.settings import Settings, get_settings

CHECKPOINT_PK_PREFIX: Final = "C#"
SEQUENCE_WIDTH: Final = 40
#: DynamoDB's TransactWriteItems limit.
MAX_TRANSACTION_ITEMS: Final = 100
_QUERY_THREADS: Final = 8
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


#: Concurrent UpdateItem calls of one tenant's marked writes (each item is independent).
WRITE_THREADS: int = 8


def mark_attribute(stream_arn: str) -> str:
    """The item attribute holding a stream's high-water mark: one per stream (a table whose stream
    is re-enabled gets a new ARN, and its sequence numbers say nothing about the old one's)."""
    return "hw_" + hashlib.sha256(stream_arn.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class MarkedDelta:
    """ADD `delta` to `key` unless the item's mark says it already holds a record in [first, last]:
    `first`/`last` are the (padded) sequence numbers of the first and last records it sums."""

    key: RollupKey
    delta: Counters
    first: str
    last: str


#: `resolve(key, mark)`: the delta of the records after `mark` that count in `key`, and the last
#: of them — or None when the item already holds them all.
Resolve = Callable[[RollupKey, str], tuple[Counters, str] | None]


class CheckpointConflictError(LLMTallyError):
    """A checkpoint moved past the records being committed: someone else applied them. Nothing was written."""


def pad_sequence(sequence_number: str) -> str:
    """A stream sequence number as a fixed-width string that sorts like the number."""
    if not sequence_number.isdigit() or len(sequence_number) > SEQUENCE_WIDTH:
        raise ValueError(f"not a stream sequence number: {sequence_number[:64]!r}")
    return sequence_number.zfill(SEQUENCE_WIDTH)


@dataclass(frozen=True, slots=True)
class CheckpointAdvance:
    """Move a tenant's checkpoint on a stream from below `first` to `last` (both padded)."""

    user_id: str
    stream_arn: str
    first: str
    last: str


@dataclass(frozen=True, slots=True)
class RollupItem:
    key: RollupKey
    counters: Counters

    @classmethod
    def from_attributes(cls, item: Mapping[str, Any]) -> RollupItem:
        """From a deserialized item (python values; numbers as Decimal or int)."""
        key = RollupKey.parse(str(item["pk"]), str(item["sk"]))
        return cls(key, Counters(**{name: int(item.get(name, 0)) for name in COUNTER_FIELDS}))


@dataclass(frozen=True, slots=True)
class ExpectedState:
    """What a rebuild read from an item: the write is conditional on it being unchanged."""

    requests: int
    cost_nanos: int
    exists: bool


class RollupRepository:
    """The only code that touches the rollups table. Low-level client, built lazily from settings."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self.table = self._settings.names.rollups_table
        self.ttl_days = self._settings.rollup_ttl_days

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoints(self, stream_arn: str, user_ids: Iterable[str]) -> dict[str, str]:
        """The last applied (padded) sequence number per tenant on a stream; absent tenants omitted."""
        keys = [{"pk": {"S": CHECKPOINT_PK_PREFIX + u}, "sk": {"S": stream_arn}} for u in sorted(set(user_ids))]
        return {
            item["pk"]["S"].removeprefix(CHECKPOINT_PK_PREFIX): item["seq"]["S"]
            for item in batch_get(self._client, self.table, keys)
        }

    # -- writes ------------------------------------------------------------------------------

    def commit(
        self,
        deltas: Mapping[RollupKey, Counters],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[dict[str, Any]] = (),
        marks: Mapping[RollupKey, tuple[str, str]] | None = None,
        stream_arn: str = "",
    ) -> int:
        """ADD every delta and advance every checkpoint in ONE transaction (all or nothing).

        Each checkpoint's condition — still below the first record being applied — makes a
        replay a no-op: CheckpointConflictError, nothing written. `extra_items` (budget ledger
        updates) ride in the same transaction. With `marks` ((first, last) record per key), each
        rollup item also carries the stream's high-water mark like a marked write
        (`apply_marked`), conditional on it being below `first`: an item an earlier marked
        attempt already wrote cancels the transaction too. Returns the items written.
        """
        items = [self._delta_update(key, delta) for key, delta in deltas.items()]
        if marks is not None:
            attribute = mark_attribute(stream_arn)
            for key, item in zip(deltas, items, strict=True):
                first, last = marks[key]
                self._mark(item["Update"], attribute, last, below=first)
        items.extend(extra_items)
        now = format_timestamp(datetime.now(UTC))
        items.extend(
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": CHECKPOINT_PK_PREFIX + a.user_id}, "sk": {"S": a.stream_arn}},
                    "UpdateExpression": "SET seq = :last, updated_at = :now, user_id = :user",
                    "ConditionExpression": "attribute_not_exists(seq) OR seq < :first",
                    "ExpressionAttributeValues": {
                        ":last": {"S": a.last},
                        ":first": {"S": a.first},
                        ":now": {"S": now},
                        ":user": {"S": a.user_id},
                    },
                }
            }
            for a in advances
        )
        self.transact(items)
        return len(items)

    def apply_marked(self, writes: Sequence[MarkedDelta], stream_arn: str, resolve: Resolve) -> int:
        """ADD each delta with its own UpdateItem, exactly once, without a transaction.

        Each item carries its stream's high-water mark (`mark_attribute`): the last record it
        holds. A write is conditional on the mark being below its first record and sets it to its
        last, so a write that already landed (a retry, an answer lost) fails its condition; then
        the item's mark is read and only the records after it are added (`resolve`), conditional
        on the mark read. A tenant's records arrive in stream order and one invocation holds a
        tenant at a time, so the item's counters are always the sum of its records up to its mark.
        Returns the UpdateItem calls made."""
        if not writes:
            return 0
        attribute = mark_attribute(stream_arn)
        if WRITE_THREADS <= 1 or len(writes) == 1:
            return sum(self._apply_one(w, attribute, resolve) for w in writes)
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(writes))) as pool:
            return sum(pool.map(lambda w: self._apply_one(w, attribute, resolve), writes))

    def _apply_one(self, write: MarkedDelta, attribute: str, resolve: Resolve) -> int:
        from botocore.exceptions import ClientError

        update = self._delta_update(write.key, write.delta)["Update"]
        self._mark(update, attribute, write.last, below=write.first)
        try:
            self._call("update_item", **update)
            return 1
        except StorageError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ClientError) and cause.response["Error"].get("Code") == _CONDITION_FAILED):
                raise
        mark = self._read_mark(write.key, attribute)
        rest = resolve(write.key, mark)
        if rest is None:
            return 2
        delta, last = rest
        update = self._delta_update(write.key, delta)["Update"]
        self._mark(update, attribute, last, equal=mark)
        try:
            self._call("update_item", **update)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response["Error"].get("Code") == _CONDITION_FAILED:
                raise CheckpointConflictError("a rollup item moved while it was being written") from exc
            raise
        return 3

    @staticmethod
    def _mark(update: dict[str, Any], attribute: str, last: str, *, below: str = "", equal: str = "") -> None:
        names = update.setdefault("ExpressionAttributeNames", {})
        values = update["ExpressionAttributeValues"]
        names["#hw"] = attribute
        values[":hw"] = {"S": last}
        expression = update["UpdateExpression"]
        head, _, adds = expression.partition(" ADD ")
        update["UpdateExpression"] = f"{head}, #hw = :hw" + (f" ADD {adds}" if adds else "")
        if equal:
            values[":hwq"] = {"S": equal}
            update["ConditionExpression"] = "#hw = :hwq"
        else:
            values[":hwb"] = {"S": below}
            update["ConditionExpression"] = "attribute_not_exists(#hw) OR #hw < :hwb"

    def _read_mark(self, key: RollupKey, attribute: str) -> str:
        response = self._call(
            "get_item",
            TableName=self.table,
            Key={"pk": {"S": key.pk}, "sk": {"S": key.sk}},
            ProjectionExpression="#hw",
            ExpressionAttributeNames={"#hw": attribute},
            ConsistentRead=True,
        )
        return str((response.get("Item") or {}).get(attribute, {}).get("S", ""))

    def advance_checkpoint(self, advance: CheckpointAdvance) -> bool:
        """Move a tenant's checkpoint forward to `advance.last` (never back). False if it was already
        there or beyond (an earlier attempt's): with marked writes that is no conflict."""
        from botocore.exceptions import ClientError

        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"pk": {"S": CHECKPOINT_PK_PREFIX + advance.user_id}, "sk": {"S": advance.stream_arn}},
                UpdateExpression="SET seq = :last, updated_at = :now, user_id = :user",
                ConditionExpression="attribute_not_exists(seq) OR seq < :last",
                ExpressionAttributeValues={
                    ":last": {"S": advance.last},
                    ":now": {"S": format_timestamp(datetime.now(UTC))},
                    ":user": {"S": advance.user_id},
                },
            )
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response["Error"].get("Code") == _CONDITION_FAILED:
                return False
            raise
        return True

    def transact(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        if len(items) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(items)} items exceed the transaction limit of {MAX_TRANSACTION_ITEMS}")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                raise CheckpointConflictError(
                    "a condition failed: the items changed since they were read or the records were applied"
                ) from exc
            raise StorageError(f"rollup transaction failed: {exc.response['Error'].get('Code')}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"rollup transaction failed: {type(exc).__name__}") from exc

    def _delta_update(self, key: RollupKey, delta: Counters, expected: ExpectedState | None = None) -> dict[str, Any]:
        # Only non-zero counters are ADDed (an absent attribute reads as 0): fewer clauses, and the
        # item's descriptive fields are all in its keys (`RollupKey.parse`), so nothing else is SET
        # but the TTL, which is a function of the key (idempotent).
        names: dict[str, str] = {}
        values: dict[str, Any] = {":e": {"N": str(key.expires_at(self.ttl_days))}}
        adds = []
        for index, (name, amount) in enumerate(delta.as_dict().items()):
            if amount:
                names[f"#c{index}"] = name
                values[f":c{index}"] = {"N": str(amount)}
                adds.append(f"#c{index} :c{index}")
        expression = "SET expires_at = :e"
        if adds:
            expression += " ADD " + ", ".join(adds)
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": key.pk}, "sk": {"S": key.sk}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }
        if expected is not None:
            if expected.exists:
                clauses = []
                for placeholder, name, amount in (
                    ("rq", "requests", expected.requests),
                    ("cn", "cost_nanos", expected.cost_nanos),
                ):
                    names[f"#{placeholder}"] = name
                    values[f":{placeholder}"] = {"N": str(amount)}
                    clause = f"#{placeholder} = :{placeholder}"
                    # a counter that was never non-zero is absent
                    clauses.append(f"(attribute_not_exists(#{placeholder}) OR {clause})" if amount == 0 else clause)
                update["ConditionExpression"] = " AND ".join(clauses)
            else:
                update["ConditionExpression"] = "attribute_not_exists(pk)"
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def conditional_delta(self, key: RollupKey, delta: Counters, expected: ExpectedState) -> dict[str, Any]:
        """A transaction item for a rebuild: ADD `delta` only if `key` still holds what was read."""
        return self._delta_update(key, delta, expected)

    def delta(self, key: RollupKey, delta: Counters) -> dict[str, Any]:
        """A transaction item that ADDs `delta` to `key` unconditionally."""
        return self._delta_update(key, delta)

    # -- reads -------------------------------------------------------------------------------

    def query_run(self, user_id: str, dimension: str, run: BucketRun, *, consistent: bool = False) -> list[RollupItem]:
        """Every item of one dimension in a run of consecutive buckets: one Query (paginated)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": partition_key(user_id, run.granularity, dimension)},
                ":low": {"S": run.sk_low},
                ":high": {"S": run.sk_high},
            },
            "ProjectionExpression": "pk, sk, " + ", ".join(COUNTER_FIELDS),
            "ConsistentRead": consistent,
        }
        items: list[RollupItem] = []
        while True:
            response = self._call("query", **kwargs)
            items.extend(_rollup_item(raw) for raw in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def read_runs(
        self, user_id: str, requests: Sequence[tuple[str, BucketRun]], *, consistent: bool = False
    ) -> list[RollupItem]:
        """Several runs' items; the Queries run concurrently (each is independent)."""
        if len(requests) <= 1:
            return [item for dim, run in requests for item in self.query_run(user_id, dim, run, consistent=consistent)]
        with ThreadPoolExecutor(max_workers=min(_QUERY_THREADS, len(requests))) as pool:
            results = pool.map(lambda req: self.query_run(user_id, req[0], req[1], consistent=consistent), requests)
            return [item for chunk in results for item in chunk]

    def iter_user_items(self, user_id: str, tag_keys: Iterable[str] = ()) -> Iterator[RollupItem]:
        """Every rollup item of a tenant in the base dimensions and those of `tag_keys` (tests and
        the invariant checker; a Query per partition)."""
        from llmtally.rollups import DIMENSIONS, GRANULARITIES, tag_cell_dimension, tag_dimension

        dimensions = [str(d) for d in DIMENSIONS]
        for key in sorted(set(tag_keys)):
            dimensions += [tag_dimension(key), tag_cell_dimension(key)]
        for granularity in GRANULARITIES:
            for dimension in dimensions:
                kwargs: dict[str, Any] = {
                    "TableName": self.table,
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": {":pk": {"S": partition_key(user_id, granularity, dimension)}},
                    "ConsistentRead": True,
                }
                while True:
                    response = self._call("query", **kwargs)
                    yield from (_rollup_item(raw) for raw in response.get("Items", []))
                    if "LastEvaluatedKey" not in response:
                        break
                    kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            raise StorageError(f"rollups {operation} failed: {exc.response['Error'].get('Code')}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"rollups {operation} failed: {type(exc).__name__}") from exc


def _rollup_item(raw: Mapping[str, Any]) -> RollupItem:
    key = RollupKey.parse(raw["pk"]["S"], raw["sk"]["S"])
    counters = Counters(**{name: int(raw[name]["N"]) if name in raw else 0 for name in COUNTER_FIELDS})
    return RollupItem(key, counters)
