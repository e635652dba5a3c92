"""The reconciliation table: per tenant, the rows of metered against billed, alert records, source status.

Items (`user_id` / `sk`, `expires_at` for TTL):

- row: `sk = {YYYY-MM-DD}#{provider}#{model}` — billed and metered tokens by kind (maps of integers),
  billed cost (total, by kind, other), metered cost and requests, unmetered spend (all integer
  nano-USD), cause, provisional, API key ids, price feedback (strings for unit prices). A date range
  of rows is one Query (`sk BETWEEN '{start}' AND '{end}~'`): the day leads the key.
- alert: `sk = alert#{day}#{provider}#{kind}` — written with `attribute_not_exists(sk)`, so one
  writer raises each alert; `published` is set once the event is on the bus.
- source status: `sk = source#{provider}` — the last run's time, window, outcome and error (the
  error's text names an endpoint and a status, never a key).

Replacing a window (`replace_rows`) writes the new rows and deletes the window's rows the new run no
longer has, in `TransactWriteItems` of at most 100 items: a re-run for a day replaces that day's
figures and never adds to them. A window with more than 100 changes is split (each part atomic; a
crash between parts is healed by the next run, which rewrites the whole window).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.events import Provider, format_timestamp
from llmtally.reconcile.core import KINDS, Cause, PriceFeedback, ReconciliationRow, TokenKind
from llmtally.repositories._dynamodb import CONDITIONAL_CHECK_FAILED, deserialize, error_code, serialize, storage_errors
from llmtally.settings import Settings, get_settings
from llmtally.tables import TTL_ATTRIBUTE

ALERT_PREFIX: Final = "alert#"
SOURCE_PREFIX: Final = "source#"
#: Rows are kept 400 days (a year of history and the month it closes).
ROW_TTL_DAYS: Final = 400
MAX_TRANSACTION_ITEMS: Final = 100


def row_key(day: date, provider: Provider, model: str) -> str:
    return f"{day.isoformat()}#{provider.value}#{model}"


def _kinds(values: Any) -> dict[TokenKind, int]:
    return {kind: int((values or {}).get(kind.value, 0)) for kind in KINDS}


def row_item(row: ReconciliationRow, computed_at: datetime) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "sk": row_key(row.day, row.provider, row.model),
        "day": row.day.isoformat(),
        "provider": row.provider.value,
        "model": row.model,
        "billed_tokens": {k.value: v for k, v in row.billed_tokens.items()},
        "billed_cost_nanos": row.billed_cost_nanos,
        "billed_cost_by_kind": {k.value: v for k, v in row.billed_cost_by_kind.items()},
        "billed_other_nanos": row.billed_other_nanos,
        "metered_tokens": {k.value: v for k, v in row.metered_tokens.items()},
        "metered_cost_nanos": row.metered_cost_nanos,
        "metered_requests": row.metered_requests,
        "unmetered_nanos": row.unmetered_nanos,
        "cause": row.cause.value,
        "provisional": row.provisional,
        "api_key_ids": list(row.api_key_ids),
        # Unit prices are strings (exact; never a float), the override is the file's JSON as text.
        "price_feedback": json.dumps([f.as_dict() for f in row.price_feedback], separators=(",", ":")),
        "computed_at": format_timestamp(computed_at),
        TTL_ATTRIBUTE: int(time.time()) + ROW_TTL_DAYS * 86_400,
    }


def row_from_item(item: dict[str, Any]) -> ReconciliationRow:
    feedback = tuple(
        PriceFeedback(
            kind=TokenKind(entry["kind"]),
            tokens=int(entry["tokens"]),
            billed_mtok=Decimal(entry["billed_mtok"]),
            metered_mtok=None if entry.get("metered_mtok") is None else Decimal(entry["metered_mtok"]),
            suggested_override=entry.get("suggested_override"),
        )
        for entry in json.loads(item.get("price_feedback") or "[]")
    )
    return ReconciliationRow(
        user_id=str(item["user_id"]),
        provider=Provider(item["provider"]),
        model=str(item["model"]),
        day=date.fromisoformat(str(item["day"])),
        billed_tokens=_kinds(item.get("billed_tokens")),
        billed_cost_nanos=int(item.get("billed_cost_nanos", 0)),
        billed_cost_by_kind=_kinds(item.get("billed_cost_by_kind")),
        billed_other_nanos=int(item.get("billed_other_nanos", 0)),
        metered_tokens=_kinds(item.get("metered_tokens")),
        metered_cost_nanos=int(item.get("metered_cost_nanos", 0)),
        metered_requests=int(item.get("metered_requests", 0)),
        unmetered_nanos=int(item.get("unmetered_nanos", 0)),
        cause=Cause(item.get("cause", "match")),
        provisional=bool(item.get("provisional", False)),
        api_key_ids=tuple(str(k) for k in item.get("api_key_ids") or ()),
        price_feedback=feedback,
    )


class ReconciliationRepository:
    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("dynamodb", self._settings)
        self._table = self._settings.names.reconciliation_table

    # -- rows ------------------------------------------------------------------------------------

    def rows(self, user_id: str, start: date, end: date) -> list[ReconciliationRow]:
        """Every row of the days [start, end] (inclusive), ordered by day, provider, model."""
        return [row_from_item(item) for item in self._query(user_id, start.isoformat(), f"{end.isoformat()}~")]

    def replace_rows(
        self,
        user_id: str,
        provider: Provider,
        days: Sequence[date],
        rows: Iterable[ReconciliationRow],
        *,
        computed_at: datetime,
    ) -> int:
        """Make `rows` the provider's only rows for `days`; returns the number of stale rows deleted."""
        if not days:
            return 0
        wanted = {row_key(r.day, r.provider, r.model): row_item(r, computed_at) for r in rows}
        window = set(days)
        stale = [
            item["sk"]
            for item in self._query(user_id, min(days).isoformat(), f"{max(days).isoformat()}~", keys_only=True)
            if item["sk"].split("#", 2)[1:2] == [provider.value]
            and date.fromisoformat(item["sk"][:10]) in window
            and item["sk"] not in wanted
        ]
        operations: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": serialize(item)}} for item in wanted.values()
        ]
        operations += [
            {"Delete": {"TableName": self._table, "Key": serialize({"user_id": user_id, "sk": sk})}} for sk in stale
        ]
        for start in range(0, len(operations), MAX_TRANSACTION_ITEMS):
            with storage_errors(f"{self._table} transact_write_items"):
                self._client.transact_write_items(TransactItems=operations[start : start + MAX_TRANSACTION_ITEMS])
        return len(stale)

    def _query(self, user_id: str, low: str, high: str, *, keys_only: bool = False) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "user_id = :u AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": serialize({":u": user_id, ":low": low, ":high": high}),
            "ConsistentRead": True,
        }
        if keys_only:
            kwargs["ProjectionExpression"] = "sk"
        while True:
            with storage_errors(f"{self._table} query"):
                page = self._client.query(**kwargs)
            items.extend(deserialize(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last

    # -- alerts ----------------------------------------------------------------------------------

    def record_alert(self, user_id: str, alert_key: str, detail: dict[str, Any], *, raised_at: datetime) -> bool:
        """Write the alert once (`attribute_not_exists`); False if it was already recorded."""
        item = {
            "user_id": user_id,
            "sk": f"{ALERT_PREFIX}{alert_key}",
            "detail": json.dumps(detail, separators=(",", ":"), sort_keys=True),
            "raised_at": format_timestamp(raised_at),
            "published": False,
            TTL_ATTRIBUTE: int(time.time()) + ROW_TTL_DAYS * 86_400,
        }
        try:
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(sk)"
            )
        except Exception as exc:
            if error_code(exc) == CONDITIONAL_CHECK_FAILED:
                return False
            raise StorageError(f"{self._table} put_item failed: {error_code(exc) or type(exc).__name__}") from exc
        return True

    def get_alert(self, user_id: str, alert_key: str) -> tuple[dict[str, Any], datetime, bool] | None:
        """(detail, raised_at, published), or None."""
        with storage_errors(f"{self._table} get_item"):
            response = self._client.get_item(
                TableName=self._table,
                Key=serialize({"user_id": user_id, "sk": f"{ALERT_PREFIX}{alert_key}"}),
                ConsistentRead=True,
            )
        raw = response.get("Item")
        if not raw:
            return None
        item = deserialize(raw)
        raised = datetime.fromisoformat(str(item["raised_at"]).replace("Z", "+00:00"))
        return json.loads(item["detail"]), raised, bool(item.get("published"))

    def mark_published(self, user_id: str, alert_key: str) -> None:
        with storage_errors(f"{self._table} update_item"):
            self._client.update_item(
                TableName=self._table,
                Key=serialize({"user_id": user_id, "sk": f"{ALERT_PREFIX}{alert_key}"}),
                UpdateExpression="SET published = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )

    def delete_unpublished_alert(self, user_id: str, alert_key: str) -> None:
        """Undo a record whose event could not be published, so the next run raises it again."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=serialize({"user_id": user_id, "sk": f"{ALERT_PREFIX}{alert_key}"}),
                ConditionExpression="published = :f",
                ExpressionAttributeValues={":f": {"BOOL": False}},
            )
        except Exception as exc:
            if error_code(exc) == CONDITIONAL_CHECK_FAILED:
                return
            raise StorageError(f"{self._table} delete_item failed: {error_code(exc) or type(exc).__name__}") from exc

    def alerts(self, user_id: str, start: date, end: date) -> list[dict[str, Any]]:
        """The alerts raised for the days [start, end], as their details."""
        items = self._query(user_id, f"{ALERT_PREFIX}{start.isoformat()}", f"{ALERT_PREFIX}{end.isoformat()}~")
        return [json.loads(item["detail"]) for item in items]

    # -- source status ---------------------------------------------------------------------------

    def put_source_status(
        self, user_id: str, provider: Provider, *, ran_at: datetime, start: date, end: date, error: str | None
    ) -> None:
        item: dict[str, Any] = {
            "user_id": user_id,
            "sk": f"{SOURCE_PREFIX}{provider.value}",
            "ran_at": format_timestamp(ran_at),
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "ok": error is None,
            TTL_ATTRIBUTE: int(time.time()) + ROW_TTL_DAYS * 86_400,
        }
        if error is not None:
            item["error"] = error[:300]
        with storage_errors(f"{self._table} put_item"):
            self._client.put_item(TableName=self._table, Item=serialize(item))

    def source_statuses(self, user_id: str) -> dict[Provider, dict[str, Any]]:
        items = self._query(user_id, SOURCE_PREFIX, f"{SOURCE_PREFIX}~")
        out: dict[Provider, dict[str, Any]] = {}
        for item in items:
            try:
                provider = Provider(str(item["sk"])[len(SOURCE_PREFIX) :])
            except ValueError:
                continue
            out[provider] = {
                "ran_at": datetime.fromisoformat(str(item["ran_at"]).replace("Z", "+00:00")).astimezone(UTC),
                "window_start": date.fromisoformat(str(item["window_start"])),
                "window_end": date.fromisoformat(str(item["window_end"])),
                "error": item.get("error"),
            }
        return out


class ReconciliationAlertBus:
    """Puts reconciliation alerts on the usage bus (the same bus and delivery as budget alerts)."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("events", self._settings)
        self.bus = self._settings.names.event_bus

    def publish(self, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        entry = {
            "Source": source,
            "DetailType": detail_type,
            "Detail": json.dumps(detail, separators=(",", ":")),
            "EventBusName": self.bus,
            "Resources": [],
        }
        with storage_errors("reconciliation alert put_events"):
            response = self._client.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            code = (response.get("Entries") or [{}])[0].get("ErrorCode", "unknown")
            raise StorageError(f"reconciliation alert put_events refused the entry: {code}")
