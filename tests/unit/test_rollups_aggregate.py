"""The aggregator's planning without DynamoDB: skipping, packing into transactions, failure answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmtally.aggregate import StreamRecord, aggregate_batch
from llmtally.errors import StorageError
from llmtally.repositories.rollups import MAX_TRANSACTION_ITEMS, CheckpointAdvance, RollupRepository, pad_sequence
from llmtally.rollups import Counters, RollupKey, coalesce
from tests.unit.test_rollups import Entry

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"
BASE = datetime(2026, 11, 2, tzinfo=UTC)


class FakeRollups(RollupRepository):
    def __init__(self, fail_on: int | None = None) -> None:
        self.ttl_days = 396
        self.state: dict[RollupKey, Counters] = {}
        self.marks: dict[str, str] = {}
        self.commits: list[tuple[int, list[CheckpointAdvance]]] = []
        self.fail_on = fail_on

    def checkpoints(self, stream_arn: str, user_ids: Any) -> dict[str, str]:
        return {u: self.marks[u] for u in user_ids if u in self.marks}

    def commit(
        self,
        deltas: Mapping[RollupKey, Counters],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[Any] = (),
    ) -> int:
        if self.fail_on is not None and len(self.commits) + 1 == self.fail_on:
            self.fail_on = None
            raise StorageError("throttled")
        assert not extra_items  # no budgets in these tests
        assert len(deltas) + len(advances) <= MAX_TRANSACTION_ITEMS
        assert len({a.user_id for a in advances}) == len(advances)
        for advance in advances:
            assert self.marks.get(advance.user_id, "") < advance.first  # in order, never twice
            self.marks[advance.user_id] = advance.last
        for key, delta in deltas.items():
            self.state.setdefault(key, Counters()).add(delta)
        self.commits.append((len(deltas) + len(advances), list(advances)))
        return len(deltas) + len(advances)


entries = st.lists(
    st.builds(
        Entry,
        user_id=st.sampled_from(["a", "b", "c", "d"]),
        timestamp=st.integers(0, 6 * 3600).map(lambda s: BASE + timedelta(seconds=s)),
        model=st.sampled_from([f"m{i}" for i in range(6)]),
        operation_type=st.sampled_from(["x", "y", "z"]),
        cost_nanos=st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=120,
)


def records(items: Sequence[Entry]) -> tuple[list[StreamRecord], dict[str, Entry]]:
    by_sequence = {str(1000 + i): entry for i, entry in enumerate(items)}
    return [StreamRecord(s, "INSERT", ARN, {"seq": s}) for s in by_sequence], by_sequence


@given(entries, st.one_of(st.none(), st.integers(1, 6)))
def test_a_batch_is_counted_exactly_once_across_failures_and_retries(items: list[Entry], fail_on: int | None) -> None:
    batch, by_sequence = records(items)
    repo = FakeRollups(fail_on)
    pending = batch
    for _ in range(3):
        result = aggregate_batch(pending, repository=repo, parse=lambda image: by_sequence[image["seq"]])
        if result.failed_sequence_number is None:
            break
        # Lambda retries from the reported record; everything before it was committed.
        index = [r.sequence_number for r in pending].index(result.failed_sequence_number)
        committed = {a.user_id: a.last for _, advances in repo.commits for a in advances}
        for record in pending[:index]:
            assert pad_sequence(record.sequence_number) <= committed[by_sequence[record.sequence_number].user_id]
        pending = pending[index:]
    assert result.failed_sequence_number is None
    assert repo.state == coalesce(items)
    # A redelivery of the whole batch is skipped.
    again = aggregate_batch(batch, repository=repo, parse=lambda image: by_sequence[image["seq"]])
    assert (again.applied, again.skipped) == (0, len(items))
    assert repo.state == coalesce(items)


def test_interleaved_tenants_coalesce_across_the_whole_batch() -> None:
    # 1,000 records of 4 tenants interleaved, all in one quarter: 16 keys per tenant, one transaction
    items = [replace(Entry(), user_id="abcd"[i % 4], timestamp=BASE + timedelta(seconds=i % 600)) for i in range(1000)]
    batch, by_sequence = records(items)
    repo = FakeRollups()
    result = aggregate_batch(batch, repository=repo, parse=lambda image: by_sequence[image["seq"]])
    assert (result.transactions, result.items_written) == (1, 4 * 16 + 4)


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
