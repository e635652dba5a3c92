"""The aggregator: DynamoDB stream batches of raw-entry INSERTs → rollups, exactly once.

For one batch (records in stream order):

1. Parse. Only INSERTs count; MODIFY/REMOVE are ignored (the event-source filter lets only INSERTs
   through on AWS; moto emits MODIFY for no-op writes and TTL would emit REMOVE).
2. Read each tenant's checkpoint for this stream (one consistent BatchGetItem) and skip every
   record at or below it: those were applied by an earlier attempt of this batch.
3. Commit, unit by unit in stream order of each unit's first record:
   - a tenant without a budget is one unit of *marked writes*: one UpdateItem per stored packed
     item (`llmtally.packing`: its cells' coalesced deltas; a delta of more than
     `MAX_ATTRIBUTES_PER_WRITE` attributes is cut into writes of consecutive records), each
     setting the item's high-water mark for this stream and conditional on it being below the
     first record it sums; a refused condition reads the mark and adds only the records after it
     (`RollupRepository.apply_marked`). Then the tenant's checkpoint moves forward. New cells get
     their codes in the tenant's dictionary first (`RollupRepository.cell_codes`).
   - budgeted tenants' records are cut into *consecutive* ranges whose coalesced deltas plus the
     checkpoints and ledger items fit one TransactWriteItems (≤ 100 items), packed across tenants
     (`_transactions`): all or nothing, each checkpoint conditional on still being below the
     range's first record of that tenant (a repeated commit is a no-op); the rollup items carry
     the same marks.
4. If a unit fails, stop: the answer names the first record (in stream order) not yet committed,
   so Lambda retries from there (ReportBatchItemFailures); every committed record at or after it
   is skipped by its tenant's checkpoint or its items' marks. A retry of the whole batch is just as
   safe.

Checkpoint scope: (tenant, stream ARN). Lambda's stream event carries no shard id. A tenant's
raw entries share one partition key, hence one partition and one shard lineage, in which their
sequence numbers increase and Lambda processes a parent shard before its children; so per tenant
the records arrive in increasing sequence order and no two invocations hold the same tenant at once
(ParallelizationFactor > 1 keeps per-partition-key order too). See docs/pipeline.md for the limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from llmtally.errors import LLMTallyError
from llmtally.packing import COUNTER_LETTERS, Attributes, PackedKey, encode, touches
from llmtally.repositories.rollups import (
    MAX_ATTRIBUTES_PER_WRITE,
    MAX_TRANSACTION_ITEMS,
    CheckpointAdvance,
    CheckpointConflictError,
    MarkedDelta,
    RollupRepository,
    pad_sequence,
)
from llmtally.rollups import (
    GRANULARITIES,
    Counters,
    Granularity,
    RollupSource,
)

if TYPE_CHECKING:
    from llmtally.budget_alerts import BudgetKeeper

INSERT: Final = "INSERT"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record of a Lambda DynamoDB stream event, reduced to what the aggregator needs."""

    sequence_number: str
    event_name: str
    stream_arn: str
    new_image: Mapping[str, Any] | None

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> StreamRecord:
        ddb = record.get("dynamodb") or {}
        return cls(
            sequence_number=str(ddb["SequenceNumber"]),
            event_name=str(record.get("eventName", "")),
            stream_arn=str(record.get("eventSourceARN", "")),
            new_image=ddb.get("NewImage"),
        )


@dataclass(slots=True)
class AggregateResult:
    """What one batch did. `failed_sequence_number` is the first record not committed, if any."""

    records: int = 0
    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    transactions: int = 0
    items_written: int = 0
    failed_sequence_number: str | None = None
    error: str | None = None
    #: Items per transaction (the bench prices them).
    transaction_sizes: list[int] = field(default_factory=list)
    #: Budget alerts published by this batch.
    alerts: int = 0

    def batch_response(self) -> dict[str, list[dict[str, str]]]:
        """Lambda's partial-batch answer for streams: retry from the first uncommitted record."""
        if self.failed_sequence_number is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": self.failed_sequence_number}]}


EntryParser = Callable[[Mapping[str, Any]], RollupSource]


def parse_new_image(image: Mapping[str, Any]) -> RollupSource:
    """A raw entry from a stream NEW_IMAGE (DynamoDB JSON)."""
    from llmtally.entries import RawEntry

    return RawEntry.from_dynamodb(image)


def aggregate_batch(
    records: Sequence[StreamRecord],
    *,
    repository: RollupRepository | None = None,
    parse: EntryParser = parse_new_image,
    granularities: Sequence[Granularity] = GRANULARITIES,
    budgets: BudgetKeeper | None = None,
) -> AggregateResult:
    """Apply one stream batch to the rollups (see the module doc). Never raises for a storage failure.

    With `budgets`, each transaction also carries the budgeted tenants' ledger updates, and the
    batch ends by firing crossed thresholds (llmtally.budget_alerts).
    """
    result = AggregateResult(records=len(records))
    if not records:
        return result
    repo = repository or RollupRepository()

    # 1. parse, in order; a record that cannot be parsed ends the batch there (it is retried, then
    # sent to the on-failure destination by the event source mapping) — never silently dropped.
    parsed: list[tuple[StreamRecord, str, RollupSource]] = []
    stop_at: StreamRecord | None = None
    for record in records:
        if record.event_name != INSERT or record.new_image is None:
            result.ignored += 1
            continue
        try:
            parsed.append((record, pad_sequence(record.sequence_number), parse(record.new_image)))
        except (ValueError, KeyError, TypeError, LLMTallyError) as exc:
            stop_at = record
            result.error = f"unparseable stream record {record.sequence_number}: {type(exc).__name__}"
            break

    # 2. skip what an earlier attempt committed.
    pending: list[tuple[StreamRecord, str, RollupSource]] = []
    if parsed:
        try:
            marks = _checkpoints(repo, parsed)
        except LLMTallyError as exc:
            result.failed_sequence_number = records[0].sequence_number
            result.error = f"checkpoint read failed: {exc}"
            return result
        for record, padded, entry in parsed:
            if padded <= marks.get((record.stream_arn, entry.user_id), ""):
                result.skipped += 1
            else:
                pending.append((record, padded, entry))
        if budgets is not None:
            try:
                budgets.begin({entry.user_id for _, _, entry in parsed}, repo, entries=[e for _, _, e in parsed])
            except LLMTallyError as exc:
                result.failed_sequence_number = records[0].sequence_number
                result.error = f"budget read failed: {exc}"
                return result

    # 3. commit, in stream order of each unit's first record: a tenant without a budget is one unit
    # of marked writes (one UpdateItem per rollup key, then its checkpoint); budgeted tenants'
    # consecutive ranges are packed into transactions with their ledger updates (all or nothing).
    extra = _ledger_items_per_tenant(budgets)
    budgeted = {e.user_id for _, _, e in pending if budgets is not None and budgets.has_budget(e.user_id)}
    units: list[tuple[bool, list[Pending]]] = [
        (True, batch_range)
        for batch_range in _transactions([p for p in pending if p[2].user_id in budgeted], granularities, extra)
    ]
    by_tenant: dict[tuple[str, str], list[Pending]] = {}
    for item in pending:
        if item[2].user_id not in budgeted:
            by_tenant.setdefault((item[0].stream_arn, item[2].user_id), []).append(item)
    units.extend((False, items) for items in by_tenant.values())
    units.sort(key=lambda unit: unit[1][0][1])
    for index, (transactional, batch_range) in enumerate(units):
        try:
            if transactional:
                written = _commit_transaction(repo, batch_range, granularities, budgets, result)
            else:
                written = _apply_marked(repo, batch_range, granularities)
        except LLMTallyError as exc:
            # Everything before the first uncommitted record (in stream order) is committed.
            uncommitted = [item for _, later in units[index:] for item in later]
            result.failed_sequence_number = min(uncommitted, key=lambda item: item[1])[0].sequence_number
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        if written < 0:  # already applied by an earlier attempt
            result.skipped += len(batch_range)
            continue
        result.items_written += written
        result.applied += len(batch_range)

    # 4. budgets: fire the thresholds the committed records crossed (records skipped as already
    # applied count too: their batch may have died before its alerts went out).
    if budgets is not None and parsed:
        outcome = budgets.evaluate({entry.user_id for _, _, entry in parsed})
        result.alerts = len(outcome.published)
        if outcome.failed and stop_at is None:
            # Everything is committed; a retry skips it all and delivers the alerts again.
            result.failed_sequence_number = parsed[0][0].sequence_number
            result.error = f"budget alert delivery failed for {len(outcome.failed)} tenant(s)"
            return result

    if stop_at is not None:
        result.failed_sequence_number = stop_at.sequence_number
    return result


def handle_stream_event(
    event: Mapping[str, Any], *, repository: RollupRepository | None = None, budgets: BudgetKeeper | None = None
) -> tuple[dict[str, list[dict[str, str]]], AggregateResult]:
    """Lambda's DynamoDB stream event → (partial batch response, what was done)."""
    records = [StreamRecord.from_lambda(r) for r in event.get("Records", [])]
    result = aggregate_batch(records, repository=repository, budgets=budgets)
    return result.batch_response(), result


def _checkpoints(
    repo: RollupRepository, parsed: Sequence[tuple[StreamRecord, str, RollupSource]]
) -> dict[tuple[str, str], str]:
    tenants_by_stream: dict[str, set[str]] = {}
    for record, _, entry in parsed:
        tenants_by_stream.setdefault(record.stream_arn, set()).add(entry.user_id)
    marks: dict[tuple[str, str], str] = {}
    for stream_arn, tenants in tenants_by_stream.items():
        for user_id, seq in repo.checkpoints(stream_arn, tenants).items():
            marks[(stream_arn, user_id)] = seq
    return marks


def _already_applied(repo: RollupRepository, advances: Sequence[CheckpointAdvance]) -> bool:
    try:
        for stream_arn in {a.stream_arn for a in advances}:
            mine = [a for a in advances if a.stream_arn == stream_arn]
            marks = repo.checkpoints(stream_arn, [a.user_id for a in mine])
            if any(marks.get(a.user_id, "") < a.last for a in mine):
                return False
    except LLMTallyError:
        return False
    return True


Pending = tuple[StreamRecord, str, RollupSource]


def _commit_transaction(
    repo: RollupRepository,
    batch_range: Sequence[Pending],
    granularities: Sequence[Granularity],
    budgets: BudgetKeeper | None,
    result: AggregateResult,
) -> int:
    """One transaction: the range's deltas (marked), its tenants' ledger updates and checkpoints.
    Returns the items written, or -1 if an earlier attempt had committed it."""
    advances = _advances(batch_range)
    by_tenant: dict[str, list[Pending]] = {}
    for item in batch_range:
        by_tenant.setdefault(item[2].user_id, []).append(item)
    deltas: list[MarkedDelta] = []
    for items in by_tenant.values():
        for chunks in _deltas(repo, items, granularities).values():
            # `_transactions` keeps every item's delta within one write's bound, so one chunk each
            deltas.extend(chunks)
    arn = batch_range[0][0].stream_arn
    try:
        ledger = budgets.ledger_items([entry for _, _, entry in batch_range]) if budgets is not None else []
        written = repo.commit(deltas, advances, ledger, stream_arn=arn)
    except CheckpointConflictError:
        if budgets is not None:
            budgets.forget_totals()
        # Typically our own earlier attempt whose answer was lost (a timeout, then a retry): if
        # every checkpoint of the range already covers it, it is applied.
        if _already_applied(repo, advances):
            return -1
        # Else an item holds part of the range: an earlier attempt wrote it as a marked write (the
        # tenant had no budget then). Finish with marked writes; the ledger catches up with the
        # rollups' total on the tenant's next batch (docs/pipeline.md).
        return sum(_apply_marked(repo, items, granularities) for items in by_tenant.values())
    except LLMTallyError:
        if budgets is not None:
            budgets.forget_totals()
        raise
    result.transactions += 1
    result.transaction_sizes.append(written)
    return written


#: (padded sequence number, the record's packed attributes, its request count) per stored item.
Contribution = tuple[str, Attributes, int]


def _contributions(
    repo: RollupRepository, items: Sequence[Pending], granularities: Sequence[Granularity]
) -> dict[PackedKey, list[Contribution]]:
    """Each stored item's contributions from one tenant's records, in stream order. The cells' codes
    come from the tenant's dictionary (new cells get theirs before anything is written)."""
    touched = [(padded, Counters.of(entry), list(touches(entry, granularities))) for _, padded, entry in items]
    if not touched:
        return {}
    codes = repo.cell_codes(items[0][2].user_id, {cell for _, _, keys in touched for _, cell in keys})
    per_key: dict[PackedKey, list[Contribution]] = {}
    for padded, counters, keys in touched:
        for key, cell in keys:
            per_key.setdefault(key, []).append((padded, encode(codes[cell], counters), counters.requests))
    return per_key


def _chunked(key: PackedKey, contributions: Sequence[Contribution]) -> list[MarkedDelta]:
    """A stored item's contributions as deltas of consecutive records, each within one write's bound."""
    out: list[MarkedDelta] = []
    attributes: Attributes = {}
    requests, first, last = 0, "", ""
    for padded, own, count in contributions:
        if attributes and len(attributes.keys() | own.keys()) > MAX_ATTRIBUTES_PER_WRITE:
            out.append(MarkedDelta(key, attributes, requests, first, last))
            attributes, requests = {}, 0
        if not attributes and not requests:
            first = padded
        for name, amount in own.items():
            attributes[name] = attributes.get(name, 0) + amount
        requests += count
        last = padded
    if attributes or requests:
        out.append(MarkedDelta(key, attributes, requests, first, last))
    return out


def _deltas(
    repo: RollupRepository, items: Sequence[Pending], granularities: Sequence[Granularity]
) -> dict[PackedKey, list[MarkedDelta]]:
    return {key: _chunked(key, c) for key, c in _contributions(repo, items, granularities).items()}


def _apply_marked(repo: RollupRepository, items: Sequence[Pending], granularities: Sequence[Granularity]) -> int:
    """One tenant's records as marked writes (`RollupRepository.apply_marked`), then its checkpoint.
    Returns the items written (stored items + the checkpoint)."""
    per_key = _contributions(repo, items, granularities)
    writes = [_chunked(key, contributions) for key, contributions in per_key.items()]

    def resolve(key: PackedKey, mark: str) -> list[MarkedDelta]:
        return _chunked(key, [c for c in per_key[key] if c[0] > mark])

    arn, user_id = items[0][0].stream_arn, items[0][2].user_id
    repo.apply_marked(writes, arn, resolve)
    repo.advance_checkpoint(CheckpointAdvance(user_id, arn, items[0][1], items[-1][1]))
    return len(writes) + 1


def _ledger_items_per_tenant(budgets: BudgetKeeper | None) -> Callable[[str], int]:
    if budgets is None:
        return lambda user_id: 0
    from llmtally.budget_alerts import LEDGER_ITEMS_PER_TENANT

    return lambda user_id: LEDGER_ITEMS_PER_TENANT if budgets.has_budget(user_id) else 0


#: A transaction's item is one UpdateItem: its cells × counters stay within one write's bound.
_MAX_CELLS_PER_TRANSACTION_ITEM: Final = MAX_ATTRIBUTES_PER_WRITE // len(COUNTER_LETTERS)


def _transactions(
    pending: Sequence[Pending],
    granularities: Sequence[Granularity],
    extra: Callable[[str], int] = lambda user_id: 0,
) -> list[list[Pending]]:
    """Pack the batch into transactions of ≤ 100 items (distinct rollup keys + one checkpoint per tenant,
    + `extra(tenant)` budget ledger items).

    Checkpoints are per tenant, so a range only has to be consecutive *per tenant*: each tenant's
    records are cut into consecutive ranges that fit one transaction, and whole ranges of several
    tenants are packed together, in stream order of their first record. A tenant's later range
    always lands in a later transaction (a transaction takes one range per tenant), so each
    tenant's checkpoint advances in order. Coalescing then works across the whole batch per tenant,
    not just across a run of interleaved records.
    """
    by_tenant: dict[tuple[str, str], list[Pending]] = {}
    for item in pending:
        by_tenant.setdefault((item[0].stream_arn, item[2].user_id), []).append(item)
    chunks: list[tuple[list[Pending], set[PackedKey], int]] = []
    for (_, user_id), items in by_tenant.items():
        fixed = 1 + extra(user_id)
        current: list[Pending] = []
        cells: dict[PackedKey, set[str]] = {}
        for item in items:
            own = list(touches(item[2], granularities))
            grown = {key for key, cell in own if cell not in cells.get(key, ())}
            if current and (
                len(cells.keys() | {key for key, _ in own}) + fixed > MAX_TRANSACTION_ITEMS
                or any(len(cells.get(key, ())) + 1 > _MAX_CELLS_PER_TRANSACTION_ITEM for key in grown)
            ):
                chunks.append((current, set(cells), fixed))
                current, cells = [], {}
            current.append(item)
            for key, cell in own:
                cells.setdefault(key, set()).add(cell)
        keys = set(cells)
        if current:
            chunks.append((current, keys, fixed))
    chunks.sort(key=lambda chunk: chunk[0][0][1])
    transactions: list[list[Pending]] = []
    batch: list[Pending] = []
    tenants: set[tuple[str, str]] = set()
    size = 0
    for items, keys, fixed in chunks:
        tenant = (items[0][0].stream_arn, items[0][2].user_id)
        # A tenant's next range always starts a new transaction: its items would repeat (a
        # transaction names an item once), and its checkpoint advances range by range.
        if batch and (size + len(keys) + fixed > MAX_TRANSACTION_ITEMS or tenant in tenants):
            transactions.append(batch)
            batch, size, tenants = [], 0, set()
        batch.extend(items)
        tenants.add(tenant)
        size += len(keys) + fixed
    if batch:
        transactions.append(batch)
    return transactions


def _advances(batch_range: Sequence[Pending]) -> list[CheckpointAdvance]:
    first: dict[tuple[str, str], str] = {}
    last: dict[tuple[str, str], str] = {}
    for record, padded, entry in batch_range:
        scope = (record.stream_arn, entry.user_id)
        first.setdefault(scope, padded)
        last[scope] = padded
    return [CheckpointAdvance(user, arn, first[(arn, user)], last[(arn, user)]) for (arn, user) in first]
