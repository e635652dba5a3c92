"""The rollups table: packed rollup items committed with stream checkpoints, and bucket-range reads.

Item shapes (layout in `llmtally.packing`, logical keys in `llmtally.rollups`):

- packed rollup: `pk = P#{user}#{granularity}[#{tag key}]`, `sk = {bucket}[#{tag value}]`, one
  attribute per (cell code, counter) that was ever non-zero (integers only: moto corrupts ADD of
  fractions and real DynamoDB never needs them; an absent counter is 0), `n` = the requests it
  holds, `expires_at` = bucket end + `rollup_ttl_days`, and `hw_{stream}`: the padded sequence
  number of the last stream record the item holds (`apply_marked`, docs/pipeline.md "Delivery
  guarantees").
- cell dictionary: `pk = D#{user}` (`llmtally.repositories.cell_codes`).
- checkpoint: `pk = C#{user}`, `sk = {stream ARN}`, `seq` = the last applied stream sequence
  number zero-padded to 40 digits (the API's maximum length; a padded string compares like the
  number, and 40 digits would not fit a DynamoDB N's 38 digits of precision).
- the layout before the packed one (`pk = R#…`, one item per logical key) is read only by
  `llmtally.migrate` (docs/pipeline.md, "Migration").
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
from llmtally.packing import (
    REQUESTS_ATTRIBUTE,
    Attributes,
    PackedKey,
    codes_in,
    decode,
    dimensions_of,
    explode,
    packed_partition,
    partition_of,
    sum_cells,
    whole_item_dimension,
)
from llmtally.repositories._dynamodb import batch_get, call, condition_failed
from llmtally.repositories.cell_codes import CellCodes
from llmtally.rollups import (
    COUNTER_FIELDS,
    TOTAL_VALUE,
    BucketRun,
    Counters,
    RollupKey,
)
from llmtally.settings import Settings, get_settings

CHECKPOINT_PK_PREFIX: Final = "C#"
SEQUENCE_WIDTH: Final = 40
#: DynamoDB's TransactWriteItems limit.
MAX_TRANSACTION_ITEMS: Final = 100
_QUERY_THREADS: Final = 8


#: The most counter attributes one UpdateItem ADDs (an expression is at most 4 KB: "#a123 :a123, "
#: is 12 bytes); a larger delta is cut into writes of consecutive records (`llmtally.aggregate`).
MAX_ATTRIBUTES_PER_WRITE: Final = 200

#: Concurrent UpdateItem calls of one tenant's marked writes (each item is independent).
WRITE_THREADS: int = 8


def mark_attribute(stream_arn: str) -> str:
    """The item attribute holding a stream's high-water mark: one per stream (a table whose stream
    is re-enabled gets a new ARN, and its sequence numbers say nothing about the old one's)."""
    return "hw_" + hashlib.sha256(stream_arn.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class MarkedDelta:
    """ADD `attributes` (and `requests` to `n`) to a packed item unless its mark says it already
    holds a record in [first, last]: `first`/`last` are the (padded) sequence numbers of the first
    and last records the delta sums."""

    key: PackedKey
    attributes: Attributes
    requests: int
    first: str
    last: str


#: `resolve(key, mark)`: the deltas of the records after `mark` that count in `key` (in stream
#: order, each small enough for one UpdateItem) — empty when the item already holds them all.
Resolve = Callable[[PackedKey, str], list[MarkedDelta]]


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
    """What a rebuild read from a packed item: the write is conditional on it being unchanged
    (every aggregation that touches an item adds at least one request to its `n`)."""

    requests: int
    exists: bool


class RunItems(list[RollupItem]):
    """Logical rollup items read, and how many stored (packed) items they came from."""

    items_read: int = 0


class RollupRepository:
    """The only code that touches the rollups table. Low-level client, built lazily from settings."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self.table = self._settings.names.rollups_table
        self.ttl_days = self._settings.rollup_ttl_days
        self._codes = CellCodes(self._client, self.table)

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
        deltas: Sequence[MarkedDelta],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[dict[str, Any]] = (),
        stream_arn: str = "",
    ) -> int:
        """ADD every delta and advance every checkpoint in ONE transaction (all or nothing).

        Each checkpoint's condition — still below the first record being applied — makes a
        replay a no-op: CheckpointConflictError, nothing written. `extra_items` (budget ledger
        updates) ride in the same transaction. Each packed item also carries the stream's
        high-water mark like a marked write (`apply_marked`), conditional on it being below the
        delta's `first`: an item an earlier marked attempt already wrote cancels the transaction
        too. Returns the items written.
        """
        attribute = mark_attribute(stream_arn)
        items = []
        for delta in deltas:
            update = self._delta_update(delta.key, delta.attributes, delta.requests)
            self._mark(update["Update"], attribute, delta.last, below=delta.first)
            items.append(update)
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

    def apply_marked(self, writes: Sequence[Sequence[MarkedDelta]], stream_arn: str, resolve: Resolve) -> int:
        """ADD each item's deltas with UpdateItems of their own, exactly once, without a transaction.

        `writes` holds one sequence per item: its deltas in stream order (several when one
        UpdateItem could not carry them all: `MAX_ATTRIBUTES_PER_WRITE`), applied one after the
        other; different items are written concurrently. Each item carries its stream's high-water
        mark (`mark_attribute`): the last record it holds. A write is conditional on the mark being
        below its first record and sets it to its last, so a write that already landed (a retry, an
        answer lost) fails its condition; then the item's mark is read and only the records after it
        are added (`resolve`), conditional on the mark read. A tenant's records arrive in stream
        order and one invocation holds a tenant at a time, so the item's counters are always the sum
        of its records up to its mark. Returns the UpdateItem calls made."""
        if not writes:
            return 0
        attribute = mark_attribute(stream_arn)
        if WRITE_THREADS <= 1 or len(writes) == 1:
            return sum(self._apply_item(w, attribute, resolve) for w in writes)
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(writes))) as pool:
            return sum(pool.map(lambda w: self._apply_item(w, attribute, resolve), writes))

    def _apply_item(self, writes: Sequence[MarkedDelta], attribute: str, resolve: Resolve) -> int:
        calls = 0
        for write in writes:
            calls += 1
            if self._write_marked(write, attribute, below=write.first):
                continue
            # Refused: an earlier attempt holds part of this item's records. Read how far it got and
            # add only what comes after (the rest of `writes` included), each write conditional on
            # the mark it follows.
            mark = self._read_mark(write.key, attribute)
            calls += 1
            for rest in resolve(write.key, mark):
                calls += 1
                if not self._write_marked(rest, attribute, equal=mark):
                    raise CheckpointConflictError("a rollup item moved while it was being written")
                mark = rest.last
            break
        return calls

    def _write_marked(self, write: MarkedDelta, attribute: str, *, below: str = "", equal: str = "") -> bool:
        """One conditional UpdateItem; False when the mark's condition refused it."""
        update = self._delta_update(write.key, write.attributes, write.requests)["Update"]
        self._mark(update, attribute, write.last, below=below, equal=equal)
        try:
            self._call("update_item", **update)
        except StorageError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

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

    def _read_mark(self, key: PackedKey, attribute: str) -> str:
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
            if condition_failed(exc):
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

    def _delta_update(
        self, key: PackedKey, attributes: Attributes, requests: int, expected: ExpectedState | None = None
    ) -> dict[str, Any]:
        # Only non-zero attributes are ADDed (an absent attribute reads as 0); the item's
        # descriptive fields are all in its keys (`PackedKey.parse`), so nothing else is SET but the
        # TTL, which is a function of the key (idempotent).
        names: dict[str, str] = {}
        values: dict[str, Any] = {":e": {"N": str(key.expires_at(self.ttl_days))}}
        adds = []
        if requests:
            values[":n"] = {"N": str(requests)}
            adds.append(f"{REQUESTS_ATTRIBUTE} :n")
        for index, (name, amount) in enumerate(sorted(attributes.items())):
            if amount:
                names[f"#a{index}"] = name
                values[f":a{index}"] = {"N": str(amount)}
                adds.append(f"#a{index} :a{index}")
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
                values[":rq"] = {"N": str(expected.requests)}
                update["ConditionExpression"] = f"{REQUESTS_ATTRIBUTE} = :rq"
            else:
                update["ConditionExpression"] = "attribute_not_exists(pk)"
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def conditional_delta(
        self, key: PackedKey, attributes: Attributes, requests: int, expected: ExpectedState
    ) -> dict[str, Any]:
        """A transaction item for a rebuild: ADD `attributes` only if `key` still holds what was read."""
        return self._delta_update(key, attributes, requests, expected)

    def delta(self, key: PackedKey, attributes: Attributes, requests: int = 0) -> dict[str, Any]:
        """A transaction item that ADDs `attributes` to `key` unconditionally."""
        return self._delta_update(key, attributes, requests)

    # -- the cell dictionary -------------------------------------------------------------------

    def cell_codes(self, user_id: str, cells: Iterable[str]) -> dict[str, int]:
        """The tenant's codes for `cells`, assigning new ones (before any item uses them)."""
        return self._codes.codes(user_id, cells)

    def _cells(self, user_id: str, codes: Iterable[int]) -> dict[int, str]:
        return self._codes.cells(user_id, codes)

    # -- reads -------------------------------------------------------------------------------

    def query_packed(self, user_id: str, tag_key: str, run: BucketRun, *, consistent: bool = False) -> list[PackedItem]:
        """Every stored item of one partition (the base cells, or one tag key's values) in a run of
        consecutive buckets: one Query (paginated)."""
        return self._query(_run_query(user_id, tag_key, run, consistent), user_id)

    def read_runs(
        self, user_id: str, requests: Sequence[tuple[str, BucketRun]], *, consistent: bool = False
    ) -> RunItems:
        """The logical items of each (dimension, run) requested. Dimensions held by the same stored
        items (the base ones; a tag key's two) share one Query per run; the Queries run
        concurrently. `items_read` on the answer counts the stored items."""
        wanted: dict[tuple[str, BucketRun], list[str]] = {}
        for dimension, run in requests:
            dims = wanted.setdefault((partition_of(dimension), run), [])
            if dimension not in dims:
                dims.append(dimension)
        reads = list(wanted)

        def one(read: tuple[str, BucketRun]) -> list[Mapping[str, Any]]:
            return self._query_raw(_run_query(user_id, read[0], read[1], consistent))

        if len(reads) <= 1:
            results = [one(read) for read in reads]
        else:
            with ThreadPoolExecutor(max_workers=min(_QUERY_THREADS, len(reads))) as pool:
                results = list(pool.map(one, reads))
        out = RunItems()
        for read, raw in zip(reads, results, strict=True):
            out.items_read += len(raw)
            tag_key, dimensions = read[0], wanted[read]
            if dimensions == [whole_item_dimension(tag_key)]:
                # The sum of every cell: no dictionary, no per-cell counters (the daily series)
                for item in raw:
                    key = PackedKey.parse(item["pk"]["S"], item["sk"]["S"])
                    value = key.tag_value if tag_key else TOTAL_VALUE
                    logical = RollupKey(user_id, key.granularity, dimensions[0], key.bucket, value)
                    out.append(RollupItem(logical, sum_cells(item)))
                continue
            for packed in self._decoded(raw, user_id):
                out.extend(RollupItem(k, c) for k, c in explode(packed.key, packed.cells, dimensions).items())
        return out

    def iter_packed(self, user_id: str, tag_keys: Iterable[str] = ()) -> Iterator[PackedItem]:
        """Every stored rollup item of a tenant: the base partitions and those of `tag_keys`."""
        from llmtally.rollups import GRANULARITIES

        for granularity in GRANULARITIES:
            for tag_key in ["", *sorted(set(tag_keys))]:
                yield from self._query(
                    {
                        "KeyConditionExpression": "pk = :pk",
                        "ExpressionAttributeValues": {":pk": {"S": packed_partition(user_id, granularity, tag_key)}},
                        "ConsistentRead": True,
                    },
                    user_id,
                )

    def iter_user_items(self, user_id: str, tag_keys: Iterable[str] = ()) -> Iterator[RollupItem]:
        """Every logical rollup item of a tenant in the base dimensions and those of `tag_keys`
        (tests and the invariant checker; a Query per partition)."""
        for item in self.iter_packed(user_id, tag_keys):
            for key, counters in explode(item.key, item.cells, dimensions_of(item.key.tag_key)).items():
                yield RollupItem(key, counters)

    def _query(self, kwargs: dict[str, Any], user_id: str) -> list[PackedItem]:
        return self._decoded(self._query_raw(kwargs), user_id)

    def _query_raw(self, kwargs: dict[str, Any]) -> list[Mapping[str, Any]]:
        kwargs = {"TableName": self.table, **kwargs}
        raw: list[Mapping[str, Any]] = []
        while True:
            response = self._call("query", **kwargs)
            raw.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return raw
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _decoded(self, raw: Sequence[Mapping[str, Any]], user_id: str) -> list[PackedItem]:
        if not raw:
            return []
        cells = self._cells(user_id, {code for item in raw for code in codes_in(item)})
        return [PackedItem.from_raw(item, cells) for item in raw]

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return call(self._client, "rollups", operation, **kwargs)


def _run_query(user_id: str, tag_key: str, run: BucketRun, consistent: bool) -> dict[str, Any]:
    return {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
        "ExpressionAttributeValues": {
            ":pk": {"S": packed_partition(user_id, run.granularity, tag_key)},
            ":low": {"S": run.sk_low},
            ":high": {"S": run.sk_high},
        },
        "ConsistentRead": consistent,
    }


def _numbers(raw: Mapping[str, Any]) -> dict[str, str]:
    return {name: value["N"] for name, value in raw.items() if "N" in value}


@dataclass(frozen=True, slots=True)
class PackedItem:
    """A stored rollup item read back: its key, its cells' counters and its request count."""

    key: PackedKey
    cells: dict[str, Counters]
    requests: int

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], cells: Mapping[int, str]) -> PackedItem:
        values = _numbers(raw)
        return cls(
            PackedKey.parse(raw["pk"]["S"], raw["sk"]["S"]),
            decode(values, cells),
            int(values.get(REQUESTS_ATTRIBUTE, 0)),
        )


def forget_cell_codes() -> None:
    """Drop the cached cell dictionaries (tests that empty the table)."""
    from llmtally.repositories import cell_codes

    cell_codes.forget_all()
