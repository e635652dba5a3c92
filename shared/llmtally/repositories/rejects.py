"""Refused usage events, kept for operators: the reason and the (bounded, redacted) original body.

Keys: `pk` = the UTC day the message was refused (`2026-11-28`), `sk` = `{received_at}#{message_id}`,
so one day reads newest first with one Query and a flood of bad input spreads over days, not one
item collection per tenant. Items expire with the raw entries' TTL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from llmtally import aws
from llmtally.events import format_timestamp
from llmtally.redaction import truncate_utf8 as truncate_utf8
from llmtally.rejects import MAX_STORED_BODY_BYTES as MAX_STORED_BODY_BYTES
from llmtally.rejects import RejectReason
from llmtally.rejects import RejectRecord as RejectRecord
from llmtally.repositories._dynamodb import deserialize, serialize, storage_errors
from llmtally.settings import get_settings

MAX_LIST: Final = 1000


class RejectsRepository:
    def __init__(
        self, *, client: Any | None = None, table_name: str | None = None, ttl_days: int | None = None
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._ttl_days = ttl_days

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb")

    @property
    def table_name(self) -> str:
        return self._table_name or get_settings().names.rejects_table

    def record(
        self,
        *,
        reason: RejectReason,
        message: str,
        body: str,
        body_bytes: int,
        message_id: str,
        received_at: datetime,
        user_id: str | None = None,
        event_id: str | None = None,
        body_truncated: bool = False,
    ) -> None:
        """Keep one refused message. Raises StorageError: the caller must not drop the message then.

        `body_truncated`: the caller already cut `body` (the ingest cuts before it redacts).
        """
        stored, cut = truncate_utf8(body, MAX_STORED_BODY_BYTES)
        truncated = body_truncated or cut
        received_at = received_at.astimezone(UTC)
        ttl_days = self._ttl_days or get_settings().raw_ttl_days
        item: dict[str, Any] = {
            "pk": received_at.strftime("%Y-%m-%d"),
            "sk": f"{format_timestamp(received_at)}#{message_id}",
            "reason": reason.value,
            "message": message,
            "body": stored,
            "body_bytes": body_bytes,
            "body_truncated": truncated,
            "message_id": message_id,
            "received_at": format_timestamp(received_at),
            "expires_at": int((received_at + timedelta(days=ttl_days)).timestamp()),
        }
        if user_id is not None:
            item["user_id"] = user_id
        if event_id is not None:
            item["event_id"] = event_id
        with storage_errors("PutItem on the rejects table"):
            self.client.put_item(TableName=self.table_name, Item=serialize(item))

    def list_recent(
        self,
        *,
        limit: int = 50,
        days: int = 7,
        reason: RejectReason | None = None,
        now: datetime | None = None,
    ) -> list[RejectRecord]:
        """The newest rejects of the last `days` UTC days (today included), newest first."""
        if not 1 <= limit <= MAX_LIST:
            raise ValueError(f"limit must be between 1 and {MAX_LIST}")
        today = (now or datetime.now(UTC)).astimezone(UTC)
        out: list[RejectRecord] = []
        for back in range(days):
            day = (today - timedelta(days=back)).strftime("%Y-%m-%d")
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :day",
                "ExpressionAttributeValues": serialize({":day": day}),
                "ScanIndexForward": False,
            }
            if reason is not None:
                kwargs["FilterExpression"] = "reason = :reason"
                kwargs["ExpressionAttributeValues"] = serialize({":day": day, ":reason": reason.value})
            while len(out) < limit:
                with storage_errors("Query on the rejects table"):
                    response = self.client.query(**kwargs)
                out.extend(_record(deserialize(raw)) for raw in response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            if len(out) >= limit:
                break
        return out[:limit]


def _record(item: dict[str, Any]) -> RejectRecord:
    return RejectRecord(
        reason=RejectReason(item["reason"]),
        message=str(item["message"]),
        body=str(item["body"]),
        body_bytes=int(item["body_bytes"]),
        body_truncated=bool(item["body_truncated"]),
        message_id=str(item["message_id"]),
        received_at=datetime.fromisoformat(str(item["received_at"])),
        user_id=item.get("user_id"),
        event_id=item.get("event_id"),
    )
