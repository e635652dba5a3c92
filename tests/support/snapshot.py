"""Tables filled once per module, given back to each test as they were.

Tests that only read what the pipeline made (the API's usage and insights routes) used to run the
ingest and aggregate handlers over the same seeded traffic before every test (20–30 s each on moto,
the aggregator's updates being moto's slowest path). A module-scoped fixture runs the pipeline once,
takes a snapshot of every table's items, and each test restores them into its freshly reset moto
server (a few BatchWriteItem calls): the items each test reads are exactly the ones the pipeline
wrote, and no test sees another's changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.conftest import MotoServer, seeding_moto
from tests.support.pipeline import reset_ingest_state

BATCH = 25  # BatchWriteItem's limit


@dataclass(frozen=True)
class TableSnapshot:
    """Every item of each table, in DynamoDB's wire form (what Scan returns, what PutItem takes)."""

    items: Mapping[str, Sequence[dict[str, Any]]]

    def count(self, table: str) -> int:
        return len(self.items.get(table, ()))


def take_snapshot(dynamodb: Any) -> TableSnapshot:
    """Scan every table (strongly consistent, every page)."""
    items: dict[str, list[dict[str, Any]]] = {}
    for page in dynamodb.get_paginator("list_tables").paginate():
        for table in page["TableNames"]:
            rows = items.setdefault(table, [])
            for scanned in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                rows.extend(scanned["Items"])
    return TableSnapshot(items)


def restore_snapshot(dynamodb: Any, snapshot: TableSnapshot) -> None:
    """Put every item back (the tables must exist, empty), retrying what DynamoDB leaves unprocessed."""
    from llmtally.repositories.rollups import forget_cell_codes

    forget_cell_codes()  # the restored cell dictionaries, not the cached ones
    for table, rows in snapshot.items.items():
        for start in range(0, len(rows), BATCH):
            pending: dict[str, Any] = {table: [{"PutRequest": {"Item": row}} for row in rows[start : start + BATCH]]}
            for _ in range(10):
                pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise AssertionError(f"restoring {table}: items kept coming back unprocessed")


def seed_snapshot(server: MotoServer, fill: Callable[[], None]) -> TableSnapshot:
    """For a module-scoped fixture: `fill` the (reset) moto server's freshly created tables once, the
    ingest state reset before and after, and the snapshot of every table it leaves."""
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    with seeding_moto(server) as seeding:
        create_tables(seeding.client("dynamodb"), get_settings().names)
        reset_ingest_state()
        fill()
        snapshot = take_snapshot(seeding.client("dynamodb"))
        reset_ingest_state()
    return snapshot
