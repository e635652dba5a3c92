"""What the HTTP ingest edge touches in AWS: the usage bus (to hand events on) and the raw table (to spot duplicates).

Events accepted at the edge go to the very bus every producer publishes to, in the library
publisher's wire format (`EventBridgeTransport`), so they take the one path bus → queue → ingest
and are deduplicated there like any other event. The edge never writes a table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from llmtally.events import UsageEvent
from llmtally.repositories._dynamodb import batch_get, deserialize, serialize
from llmtally.settings import Settings, get_settings

#: Sends of an entry EventBridge refused transiently (throttling, internal errors), the first included.
BUS_ATTEMPTS: Final = 3
BUS_BACKOFF_SECONDS: Final = 0.05


class UsageBus:
    """`PutEvents` of validated events, ≤ 10 entries and ≤ 256 KiB per call, with each event's outcome."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws
        from llmtally.publisher import EventBridgeTransport

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("events", self._settings)
        self._transport = EventBridgeTransport(self._settings.names.event_bus)

    def send(self, events: Sequence[UsageEvent]) -> list[str | None]:
        """One entry per event: None when the bus took it, else the error code that refused it."""
        from llmtally.publisher import MAX_BYTES_PER_CALL, MAX_ENTRIES_PER_CALL, Entry, Outcome, classify_exception

        entries = []
        for event in events:
            payload = event.to_json()
            entries.append(Entry(event.event_id, event.user_id, payload, self._transport.entry_size(payload)))
        outcome: list[str | None] = ["NotSent"] * len(entries)
        pending = list(range(len(entries)))
        for attempt in range(BUS_ATTEMPTS):
            if not pending:
                break
            if attempt:
                time.sleep(BUS_BACKOFF_SECONDS * 2 ** (attempt - 1))
            retry: list[int] = []
            for chunk in _chunks(pending, entries, MAX_ENTRIES_PER_CALL, MAX_BYTES_PER_CALL):
                try:
                    results = self._transport.send(self._client, [entries[i] for i in chunk])
                except Exception as exc:
                    kind, code = classify_exception(exc)
                    results = [(kind, code)] * len(chunk)
                for index, (kind, code) in zip(chunk, results, strict=True):
                    outcome[index] = None if kind is Outcome.DELIVERED else (code or "unknown")
                    if kind is Outcome.RETRY:
                        retry.append(index)
            pending = retry
        return outcome


def _chunks(indices: list[int], entries: Sequence[Any], max_entries: int, max_bytes: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in indices:
        entry_size = entries[index].size
        if current and (len(current) >= max_entries or size + entry_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


class RecordedEvents:
    """Which events already have a raw entry: a consistent `BatchGetItem` of their exact keys."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self._table = self._settings.names.usage_table

    def recorded(self, events: Sequence[UsageEvent]) -> set[tuple[str, str]]:
        """The `(user_id, sk)` of every event in `events` whose raw entry exists."""
        keys = list({(e.user_id, e.sort_key) for e in events})
        if not keys:
            return set()
        found = batch_get(
            self._client, self._table, [serialize({"user_id": u, "sk": s}) for u, s in keys], consistent=True
        )
        return {(str(item["user_id"]), str(item["sk"])) for item in (deserialize(raw) for raw in found)}
