"""The aggregator's planning without DynamoDB: skipping, packing into transactions, failure answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmtally.aggregate import StreamRecord, aggregate_batch
from llmtally.errors import StorageError
from llmtally.packing import REQUESTS_ATTRIBUTE, PackedKey, decode, dimensions_of, explode
from llmtally.repositories.rollups import (
    MAX_TRANSACTION_ITEMS,
    CheckpointConflictError,
    RollupRepository,
    pad_sequence,
)
from llmtally.rollups import Counters, RollupKey, coalesce
from tests.unit.test_rollups import Entry

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"
BASE = datetime(2026, 11, 2, tzinfo=UTC)


class FakeRollups(RollupRepository):
    """The rollups table in memory, answering the repository's own low-level calls (UpdateItem with
    its marks and conditions, GetItem, TransactWriteItems), so the real marked-write code runs.
    `fail_on` fails the nth call, before it applies or (`after`) with its answer lost."""

    def __init__(self, fail_on: int | None = None, *, after: bool = False) -> None:
        self.ttl_days = 396
        self.table = "t"
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls = 0
        self.fail_on = fail_on
        self.after = after
        self.transactions: list[int] = []
        #: Each tenant's cell dictionary; codes are handed out from a per-tenant offset (tenants'
        #: codes overlap, as in the table) and never change.
        self.codes: dict[str, dict[str, int]] = {}

    def cell_codes(self, user_id: str, cells: Any) -> dict[str, int]:
        mine = self.codes.setdefault(user_id, {})
        for cell in sorted(set(cells) - mine.keys()):
            mine[cell] = 8 + 3 * len(mine)
        return {cell: mine[cell] for cell in cells}

    # -- what the aggregator reads -------------------------------------------------------------

    def checkpoints(self, stream_arn: str, user_ids: Any) -> dict[str, str]:
        out = {}
        for user in user_ids:
            item = self.items.get(("C#" + user, stream_arn))
            if item:
                out[user] = item["seq"]
        return out

    @property
    def state(self) -> dict[RollupKey, Counters]:
        """The logical rollups the stored (packed) items stand for; each item's `n` checked against
        the requests of its cells."""
        out: dict[RollupKey, Counters] = {}
        for (pk, sk), item in self.items.items():
            if not pk.startswith("P#"):
                assert pk.startswith("C#"), pk  # nothing else is written (no item of the old layout)
                continue
            key = PackedKey.parse(pk, sk)
            cells = decode(item, {code: cell for cell, code in self.codes[key.user_id].items()})
            assert int(item.get(REQUESTS_ATTRIBUTE, 0)) == sum(c.requests for c in cells.values())
            for logical, counters in explode(key, cells, dimensions_of(key.tag_key)).items():
                assert logical not in out
                if not counters.is_zero():
                    out[logical] = counters
        return out

    @property
    def marks(self) -> dict[str, str]:
        return {pk[2:]: item["seq"] for (pk, _), item in self.items.items() if pk.startswith("C#")}

    # -- the low-level calls -------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.calls += 1
        failing = self.calls == self.fail_on
        if failing and not self.after:
            raise StorageError(f"rollups {operation} failed: InternalServerError")
        if operation == "update_item":
            try:
                self._update(kwargs)
            except CheckpointConflictError:
                error = ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
                raise StorageError("rollups update_item failed: ConditionalCheckFailedException") from error
            answer: Any = {}
        elif operation == "get_item":
            key = (kwargs["Key"]["pk"]["S"], kwargs["Key"]["sk"]["S"])
            name = kwargs["ExpressionAttributeNames"]["#hw"]
            item = self.items.get(key, {})
            answer = {"Item": {name: {"S": item[name]}}} if name in item else {}
        else:
            raise AssertionError(operation)
        if failing:
            raise StorageError(f"rollups {operation} failed: InternalServerError")
        return answer

    def transact(self, items: list[dict[str, Any]]) -> None:
        self.calls += 1
        failing = self.calls == self.fail_on
        if failing and not self.after:
            raise StorageError("rollup transaction failed: InternalServerError")
        assert len(items) <= MAX_TRANSACTION_ITEMS
        targets = [(i["Update"]["Key"]["pk"]["S"], i["Update"]["Key"]["sk"]["S"]) for i in items]
        if len(set(targets)) < len(targets):
            # DynamoDB refuses a transaction with two operations on one item (ValidationException)
            raise StorageError("rollup transaction failed: ValidationException")
        snapshot = {k: dict(v) for k, v in self.items.items()}
        try:
            for item in items:
                self._update(item["Update"])
        except CheckpointConflictError:
            self.items = snapshot
            raise
        self.transactions.append(len(items))
        if failing:
            raise StorageError("rollup transaction failed: InternalServerError")

    def _update(self, update: Mapping[str, Any]) -> None:
        """Apply one Update, or raise CheckpointConflictError if its condition fails (nothing written)."""
        key = (update["Key"]["pk"]["S"], update["Key"]["sk"]["S"])
        names = update.get("ExpressionAttributeNames", {})
        values = {k: v.get("S", v.get("N")) for k, v in update["ExpressionAttributeValues"].items()}
        item = self.items.get(key, {})
        condition = update.get("ConditionExpression")
        if condition == "attribute_not_exists(#hw) OR #hw < :hwb":
            ok = names["#hw"] not in item or item[names["#hw"]] < values[":hwb"]
        elif condition == "#hw = :hwq":
            ok = item.get(names["#hw"]) == values[":hwq"]
        elif condition == "attribute_not_exists(seq) OR seq < :last":
            ok = "seq" not in item or item["seq"] < values[":last"]
        elif condition == "attribute_not_exists(seq) OR seq < :first":
            ok = "seq" not in item or item["seq"] < values[":first"]
        else:
            assert condition is None, condition
            ok = True
        if not ok:
            raise CheckpointConflictError("condition failed")
        item = dict(item)
        sets, _, adds = update["UpdateExpression"].removeprefix("SET ").partition(" ADD ")
        for clause in sets.split(", "):
            name, _, value = clause.partition(" = ")
            item[names.get(name, name)] = values[value]
        for clause in adds.split(", ") if adds else []:
            name, _, value = clause.partition(" ")
            attribute = names.get(name, name)
            item[attribute] = item.get(attribute, 0) + int(values[value])
        self.items[key] = item


class FakeBudgets:
    """The BudgetKeeper surface the aggregator uses: which tenants have a budget (no ledger items)."""

    def __init__(self, budgeted: set[str]) -> None:
        self.budgeted = budgeted

    def begin(self, user_ids: Any, rollups: Any, *, entries: Any = ()) -> None:
        pass

    def has_budget(self, user_id: str) -> bool:
        return user_id in self.budgeted

    def ledger_items(self, entries: Any) -> list[Any]:
        return []

    def forget_totals(self) -> None:
        pass

    def evaluate(self, user_ids: Any) -> Any:
        return SimpleNamespace(published=[], failed=[])


entries = st.lists(
    st.builds(
        Entry,
        user_id=st.sampled_from(["a", "b", "c", "d"]),
        timestamp=st.integers(0, 6 * 3600).map(lambda s: BASE + timedelta(seconds=s)),
        model=st.sampled_from([f"m{i}" for i in range(6)]),
        operation_type=st.sampled_from(["x", "y", "z"]),
        cost_nanos=st.integers(0, 10**6),
        # every counter non-zero at times: a stored item's delta can then outgrow one write
        status=st.sampled_from(["ok", "error"]),
        cache_read_tokens=st.integers(0, 9),
        cache_write_tokens=st.integers(0, 9),
        cache_write_5m_tokens=st.one_of(st.none(), st.integers(0, 9)),
        cache_write_1h_tokens=st.one_of(st.none(), st.integers(0, 9)),
        reasoning_tokens=st.integers(0, 9),
        cost_source=st.sampled_from(["catalog", "unpriced"]),
        cache_hit=st.booleans(),
        saved_nanos=st.integers(0, 10**6),
        usage_missing=st.booleans(),
        tags=st.fixed_dictionaries({}, optional={"customer": st.sampled_from(["a", "b#1"]), "team": st.just("x")}),
    ),
    min_size=1,
    max_size=120,
)


def records(items: Sequence[Entry]) -> tuple[list[StreamRecord], dict[str, Entry]]:
    by_sequence = {str(1000 + i): entry for i, entry in enumerate(items)}
    return [StreamRecord(s, "INSERT", ARN, {"seq": s}) for s in by_sequence], by_sequence


@given(
    entries,
    st.one_of(st.none(), st.integers(1, 150)),
    st.booleans(),
    st.sets(st.sampled_from("abcd")),
    st.sets(st.sampled_from("abcd")),
)
def test_a_batch_is_counted_exactly_once_across_failures_and_retries(
    items: list[Entry], fail_on: int | None, after: bool, budgeted: set[str], budgeted_later: set[str]
) -> None:
    # Given a batch of interleaved tenants, some with a budget (transactions) and some without
    # (marked writes), a failure at any call (before it applies, or after with its answer lost),
    # and tenants gaining or losing a budget between the attempts
    batch, by_sequence = records(items)
    repo = FakeRollups(fail_on, after=after)
    pending = batch
    budgets = FakeBudgets(budgeted)
    for _ in range(3):
        result = aggregate_batch(
            pending,
            repository=repo,
            parse=lambda image: by_sequence[image["seq"]],
            budgets=budgets,  # type: ignore[arg-type]
        )
        if result.failed_sequence_number is None:
            break
        # Lambda retries from the reported record; everything before it was committed.
        index = [r.sequence_number for r in pending].index(result.failed_sequence_number)
        committed = repo.marks
        for record in pending[:index]:
            assert pad_sequence(record.sequence_number) <= committed[by_sequence[record.sequence_number].user_id]
        pending = pending[index:]
        budgets = FakeBudgets(budgeted_later)
    # Then every rollup is the sum of its records, once
    assert result.failed_sequence_number is None
    assert repo.state == {k: v for k, v in coalesce(items).items() if not v.is_zero()}
    # And a redelivery of the whole batch is skipped
    again = aggregate_batch(batch, repository=repo, parse=lambda image: by_sequence[image["seq"]])
    assert (again.applied, again.skipped) == (0, len(items))
    assert repo.state == {k: v for k, v in coalesce(items).items() if not v.is_zero()}


@given(entries, st.integers(1, 400), st.booleans())
def test_a_retry_with_other_batch_boundaries_adds_only_what_each_item_lacks(
    items: list[Entry], crash_at: int, after: bool
) -> None:
    # Given a first attempt that dies at any call (its checkpoints not all written), then the
    # stream delivered again in batches of another size
    batch, by_sequence = records(items)
    repo = FakeRollups(crash_at, after=after)
    aggregate_batch(batch, repository=repo, parse=lambda image: by_sequence[image["seq"]])
    for start in range(0, len(batch), 7):
        result = aggregate_batch(batch[start : start + 7], repository=repo, parse=lambda i: by_sequence[i["seq"]])
        assert result.failed_sequence_number is None
    # Then each item holds each of its records exactly once (its mark says which it has)
    assert repo.state == {k: v for k, v in coalesce(items).items() if not v.is_zero()}


def test_interleaved_tenants_coalesce_across_the_whole_batch() -> None:
    # Given 1,000 records of 4 tenants interleaved, all in one quarter
    items = [replace(Entry(), user_id="abcd"[i % 4], timestamp=BASE + timedelta(seconds=i % 600)) for i in range(1000)]
    batch, by_sequence = records(items)
    repo = FakeRollups()
    result = aggregate_batch(batch, repository=repo, parse=lambda image: by_sequence[image["seq"]])
    # Then each tenant writes its 2 stored items once (its quarter's and its day's, holding all the
    # 10 logical keys), and its checkpoint: no transaction at all
    assert (result.transactions, result.items_written) == (0, 4 * 2 + 4)
    assert repo.calls == 4 * 2 + 4
    assert len(repo.state) == 4 * 10
    assert repo.state == coalesce(items)


def test_modify_and_remove_records_are_ignored_and_bad_images_stop_the_batch() -> None:
    items = [Entry(timestamp=BASE + timedelta(minutes=i)) for i in range(4)]
    batch, by_sequence = records(items)
    batch[1] = replace(batch[1], event_name="MODIFY")
    batch[2] = replace(batch[2], event_name="REMOVE", new_image=None)

    def parse(image: Mapping[str, Any]) -> Entry:
        if image["seq"] == "1003":
            raise ValueError("not a raw entry")
        return by_sequence[image["seq"]]

    repo = FakeRollups()
    result = aggregate_batch(batch, repository=repo, parse=parse)
    assert (result.applied, result.ignored, result.failed_sequence_number) == (1, 2, "1003")
    assert repo.state == coalesce(items[:1])


def test_a_budgeted_tenant_with_more_cells_than_one_write_carries_is_committed() -> None:
    # Given a budgeted tenant's 13 calls in one quarter, each of its own model with every counter
    # non-zero: 13 cells × 16 attributes is more than one UpdateItem (hence one transaction item) carries
    busy = Entry(
        user_id="a",
        status="error",
        cache_read_tokens=1,
        cache_write_tokens=2,
        cache_write_5m_tokens=1,
        cache_write_1h_tokens=1,
        reasoning_tokens=3,
        cost_source="unpriced",
        cache_hit=True,
        saved_nanos=5,
        usage_missing=True,
    )
    items = [replace(busy, timestamp=BASE + timedelta(seconds=i), model=f"m{i}") for i in range(13)]
    batch, by_sequence = records(items)
    repo = FakeRollups()
    result = aggregate_batch(
        batch,
        repository=repo,
        parse=lambda image: by_sequence[image["seq"]],
        budgets=FakeBudgets({"a"}),  # type: ignore[arg-type]
    )
    # Then it is committed in transactions that each write an item once, and counted once
    assert (result.failed_sequence_number, result.error) == (None, None)
    assert result.applied == 13
    assert repo.state == coalesce(items)
