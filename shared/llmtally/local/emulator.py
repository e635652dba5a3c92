"""A fix to the in-process AWS emulator (moto) that the local stack needs to stay fast and correct.

moto's `TransactWriteItems` backs up every table a transaction touches with `copy.deepcopy(table)`
before it starts, to roll back if one item fails. That costs time proportional to the *table*, not
the transaction: with the rollups of a few thousand demo events (tens of thousands of items) each
aggregation transaction took seconds, the pipeline crawled, and a copy taken while another request
wrote the same table crashed the emulator (`RuntimeError: dictionary changed size during iteration`,
HTTP 500).

`install()` keeps moto's semantics — all or nothing, per-item `CancellationReasons` — but backs up
only the items the transaction names (what DynamoDB isolates anyway), restores exactly those on a
cancellation, and runs one transaction at a time.

Requests are served on threads, and moto's tables are plain dicts: a Query (which walks every item
of a table) or a transaction's backup running while another request writes the table crashed the
same way. DynamoDB requests now run one at a time (the emulator is bound by one interpreter lock
anyway, so this costs no throughput).

SQS `ReceiveMessage` checked each message it returns against the retention period by computing
*all* the queue's attributes, message counts included: O(queue depth) per message, so a backlog of
a few thousand events slowed the ingest to a few events a second. The check now reads the one
attribute it needs. Same answer. Sending, receiving and counting also read the clock once per
queued message through a slow datetime round trip; they now read `time.time()` (same value).
Worse, every `SendMessage` (each event EventBridge delivers) computed all of the queue's
attributes, the three message counts included, to read one flag: O(queue depth) per message, so a
burst of 10,000 events crawled at ~20 events/s. Sending now skips the counts (it never reads
them), and the counts, when asked for, are taken in one pass.

moto parses an update expression recursively, a few frames per clause: an `ADD` of ~200
attributes (a packed rollup item's delta, `llmtally.packing`; DynamoDB's own bound is the 4 KB
expression) overflowed Python's default recursion limit of 1,000 (HTTP 500). The limit is raised.

EventBridge compiled the same eight JSONPath expressions (a parser generator run) for every event
it delivered to a target; the compiled expressions are now cached.

Idempotent; it changes only the process it runs in.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from functools import lru_cache
from typing import Any

_installed = False
_install_lock = threading.Lock()
#: One DynamoDB request at a time (see the module doc).
_dynamodb = threading.RLock()
_local = threading.local()
#: Enough for moto to parse the longest update expression the aggregator sends (see the module doc).
_RECURSION_LIMIT = 10_000


class _TableCopySkipped:
    """Stands in for the `copy` module inside moto's dynamodb backend: tables are not deep-copied
    while our wrapper has backed up the transaction's items; everything else is copied as before."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if isinstance(value, Table) and getattr(_local, "items_backed_up", False):
            return value  # the rollback then puts the same table back: a no-op; we restore the items
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        sys.setrecursionlimit(max(sys.getrecursionlimit(), _RECURSION_LIMIT))
        import moto.dynamodb.models as dynamodb_models
        from moto.dynamodb.models import DynamoDBBackend

        original = DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            with _dynamodb:
                backup = _backup_items(self, transact_items)
                _local.items_backed_up = backup is not None
                try:
                    original(self, transact_items)
                except Exception:
                    if backup is not None:
                        _restore_items(self, backup)
                    raise
                finally:
                    _local.items_backed_up = False

        from moto.dynamodb.responses import DynamoHandler
        from moto.sqs.models import SQSBackend

        serve = DynamoHandler.call_action

        def call_action(self: Any) -> Any:
            with _dynamodb:
                return serve(self)

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]

        SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]
        dynamodb_models.copy = _TableCopySkipped()  # type: ignore[attr-defined,assignment]
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _speed_up_sqs_clock()
        _fast_sqs()
        _cache_jsonpath()
        _installed = True


_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)


def _queue_attributes(self: Any) -> dict[str, Any]:
    """moto's `Queue.attributes`, with the three counts taken in one pass, or skipped while sending."""
    import json

    from moto.core.utils import camelcase_to_underscores

    counts: dict[str, int] | None = None
    if not getattr(_local, "sending", False):
        visible = delayed = not_visible = 0
        for message in self._messages:
            is_visible, is_delayed = message.visible, message.delayed
            visible += is_visible and not is_delayed
            delayed += is_delayed
            not_visible += not is_visible
        counts = dict(zip(_COUNTS, (visible, delayed, not_visible), strict=True))
    result: dict[str, Any] = {}
    for attribute in self.BASE_ATTRIBUTES:
        if attribute in _COUNTS:
            if counts is not None:
                result[attribute] = counts[attribute]
            continue
        result[attribute] = getattr(self, camelcase_to_underscores(attribute))
    extra = list(self.FIFO_ATTRIBUTES) if self.fifo_queue else []
    if self.kms_master_key_id:
        extra += self.KMS_ATTRIBUTES
    for attribute in extra:
        result[attribute] = getattr(self, camelcase_to_underscores(attribute))
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    for key, value in result.items():
        if isinstance(value, bool):
            result[key] = str(value).lower()
    return result


def _fast_sqs() -> None:
    from moto.sqs.models import Queue, SQSBackend

    send = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        _local.sending = True
        try:
            return send(self, *args, **kwargs)
        finally:
            _local.sending = False

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.attributes = property(_queue_attributes)  # type: ignore[assignment,method-assign]


def _speed_up_sqs_clock() -> None:
    import importlib

    sqs_models: Any = importlib.import_module("moto.sqs.models")
    slow_unix_time = sqs_models.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis


def _cache_jsonpath() -> None:
    import importlib

    jsonpath_ext: Any = importlib.import_module("jsonpath_ng.ext")
    jsonpath_ext.parse = lru_cache(maxsize=256)(jsonpath_ext.parse)


def _within_retention(self: Any, queue_name: str, message: Any) -> bool:
    from moto.core.utils import unix_time

    retention_seconds = int(self.get_queue(queue_name).message_retention_period)
    return bool(retention_seconds + message.sent_timestamp / 1000 > unix_time())


#: (table name, hash key, range key or None, the item's deep copy or None when it did not exist)
_Backup = list[tuple[str, Any, Any, Any]]


def _backup_items(backend: Any, transact_items: list[dict[str, Any]]) -> _Backup | None:
    """A copy of each item the transaction names; None (moto copies whole tables) if any is unclear."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    backup: _Backup = []
    try:
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = backend.get_table(op["TableName"])
            key = op.get("Key")
            if key is None:  # a Put names its key inside the item
                item = op["Item"]
                key = {table.hash_key_attr: item[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = item[table.range_key_attr]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None
            current = table.get_item(hash_key, range_key)
            backup.append((table.name, hash_key, range_key, copy.deepcopy(current)))
    except Exception:
        return None  # malformed: let moto validate it (and back up whole tables) as it always did
    return backup


def _restore_items(backend: Any, backup: _Backup) -> None:
    for table_name, hash_key, range_key, item in reversed(backup):
        table = backend.get_table(table_name)
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        elif item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
