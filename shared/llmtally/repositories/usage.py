"""Raw usage entries: conditional put, get, per-tenant queries with filters and opaque cursors.

Cursors are opaque and cannot be turned against another tenant: a cursor carries only the last
sort key seen, bound to the tenant and a fingerprint of the query, and signed (HMAC-SHA256). The
start key DynamoDB receives is rebuilt from the *caller's* tenant and query, never taken from the
cursor, so even a forged signature could not leave the caller's partition.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from llmtally import aws
from llmtally.entries import RawEntry
from llmtally.errors import InvalidCursorError
from llmtally.events import Provider, Status, format_timestamp
from llmtally.repositories._dynamodb import (
    CONDITIONAL_CHECK_FAILED,
    deserialize,
    error_code,
    serialize,
    storage_errors,
)
from llmtally.settings import get_settings
from llmtally.tables import USAGE_BY_OPERATION, USAGE_BY_PROVIDER

MAX_PAGE_SIZE: Final = 1000
#: DynamoDB calls one page may make when filters discard most rows; then a partial page is returned.
MAX_READS_PER_PAGE: Final = 10
CURSOR_VERSION: Final = 1
#: Above every character an event id may hold: `{timestamp}#~` sorts after every entry of that ms.
_SK_HIGH: Final = "#~"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which raw entries of one tenant: filters and a half-open time range [start, end)."""

    user_id: str
    provider: Provider | None = None
    operation_type: str | None = None
    model: str | None = None
    status: Status | None = None
    start: datetime | None = None
    end: datetime | None = None
    order: Literal["newest", "oldest"] = "newest"
    #: `(key, value)`: only entries rolled up under tag `key` = `value` — the value the ingest folded
    #: the tag to (`rollup_tags`, e.g. `(other)`) where it folded one, else the value as sent
    #: (`llmtally.rollups.entry_tags`), so the entries match the tag's rollups call for call.
    tag: tuple[str, str] | None = None

    def fingerprint(self) -> str:
        parts = [
            self.user_id,
            self.provider.value if self.provider else "",
            self.operation_type or "",
            self.model or "",
            self.status.value if self.status else "",
            format_timestamp(self.start) if self.start else "",
            format_timestamp(self.end) if self.end else "",
            self.order,
        ]
        if self.tag is not None:  # appended only when set: cursors issued before tags keep working
            parts.extend(self.tag)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]

    def sort_key_bounds(self) -> tuple[str | None, str | None]:
        """Inclusive sort-key bounds for [start, end) (timestamps have ms precision)."""
        low = format_timestamp(self.start) if self.start else None
        high = format_timestamp(self.end - timedelta(milliseconds=1)) + _SK_HIGH if self.end else None
        return low, high


@dataclass(frozen=True, slots=True)
class EntriesPage:
    entries: list[RawEntry]
    #: Pass back to get the next page; None on the last page.
    cursor: str | None
    #: Items DynamoDB examined for this page (before filters): what the page cost to read.
    examined: int = 0


class UsageRepository:
    """The usage table. Clients and the table name come from settings at call time unless given."""

    def __init__(
        self,
        *,
        client: Any | None = None,
        table_name: str | None = None,
        cursor_key: bytes | None = None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._cursor_key = cursor_key

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb")

    @property
    def table_name(self) -> str:
        return self._table_name or get_settings().names.usage_table

    # -- writes ----------------------------------------------------------------------------

    def put_if_absent(self, item: Mapping[str, Any]) -> bool:
        """PutItem unless `(user_id, sk)` exists. True if written, False for a duplicate.

        PutItem (never UpdateItem) so a new entry yields exactly one stream INSERT, and a
        duplicate's failed condition writes nothing and emits no stream record.
        """
        from botocore.exceptions import ClientError

        with storage_errors("PutItem on the usage table"):
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(item),
                    ConditionExpression="attribute_not_exists(sk)",
                )
            except ClientError as exc:
                if error_code(exc) == CONDITIONAL_CHECK_FAILED:
                    return False
                raise
        return True

    # -- reads -----------------------------------------------------------------------------

    def get(self, user_id: str, sort_key: str) -> RawEntry | None:
        with storage_errors("GetItem on the usage table"):
            response = self.client.get_item(
                TableName=self.table_name,
                Key=serialize({"user_id": user_id, "sk": sort_key}),
                ConsistentRead=True,
            )
        item = response.get("Item")
        return RawEntry.from_item(deserialize(item)) if item else None

    def query_entries(
        self,
        query: UsageQuery,
        *,
        limit: int = 50,
        cursor: str | None = None,
        max_examined: int | None = None,
    ) -> EntriesPage:
        """One page of a tenant's entries, newest or oldest first.

        A page may hold fewer than `limit` entries (filters discarded rows) and still carry a
        cursor; iterate until the cursor is None. The reads are bounded: at most
        `MAX_READS_PER_PAGE` Queries, and with `max_examined` at most that many items examined
        (DynamoDB's `Limit` counts items before the filter), so a selective filter over a large
        tenant returns a short page and a cursor instead of reading the partition. Raises
        InvalidCursorError for a cursor that was not issued for this tenant and query.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        if max_examined is not None and max_examined < 1:
            raise ValueError("max_examined must be at least 1")
        start_sk = self.decode_cursor(cursor, query) if cursor else None
        collected: list[RawEntry] = []
        examined = 0
        for _ in range(MAX_READS_PER_PAGE):
            kwargs = self._query_kwargs(query, start_sk)
            kwargs["Limit"] = limit if max_examined is None else min(limit, max_examined - examined)
            with storage_errors("Query on the usage table"):
                response = self.client.query(**kwargs)
            items = [RawEntry.from_item(deserialize(raw)) for raw in response.get("Items", [])]
            examined += int(response.get("ScannedCount", len(items)))
            more = "LastEvaluatedKey" in response
            room = limit - len(collected)
            collected.extend(items[:room])
            if len(items) > room or (len(collected) == limit and more):
                return EntriesPage(collected, self.encode_cursor(query, collected[-1].sk), examined)
            if not more:
                return EntriesPage(collected, None, examined)
            start_sk = str(deserialize(response["LastEvaluatedKey"])["sk"])
            if max_examined is not None and examined >= max_examined:
                break
        # The read budget is spent (filters discarded most rows): a partial page, resumable where
        # the reads stopped.
        return EntriesPage(collected, self.encode_cursor(query, start_sk) if start_sk else None, examined)

    def iter_entries(
        self,
        user_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        consistent: bool = True,
    ) -> Iterator[RawEntry]:
        """Every entry of a tenant in [start, end), oldest first, all pages (rebuilds, exports)."""
        query = UsageQuery(user_id=user_id, start=start, end=end, order="oldest")
        start_sk: str | None = None
        while True:
            kwargs = self._query_kwargs(query, start_sk)
            kwargs["ConsistentRead"] = consistent
            with storage_errors("Query on the usage table"):
                response = self.client.query(**kwargs)
            for raw in response.get("Items", []):
                yield RawEntry.from_item(deserialize(raw))
            if "LastEvaluatedKey" not in response:
                return
            start_sk = str(deserialize(response["LastEvaluatedKey"])["sk"])

    # -- query building --------------------------------------------------------------------

    def _query_kwargs(self, query: UsageQuery, start_sk: str | None) -> dict[str, Any]:
        names: dict[str, str] = {"#pk": "user_id"}
        values: dict[str, Any] = {}
        filters: list[str] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ScanIndexForward": query.order == "oldest"}
        partition_value = query.user_id
        if query.provider is not None:
            kwargs["IndexName"] = USAGE_BY_PROVIDER
            names["#pk"] = "user_provider"
            partition_value = f"{query.user_id}#{query.provider.value}"
            if query.operation_type is not None:
                names["#op"] = "operation_type"
                values[":op"] = query.operation_type
                filters.append("#op = :op")
        elif query.operation_type is not None:
            kwargs["IndexName"] = USAGE_BY_OPERATION
            names["#pk"] = "user_operation"
            partition_value = f"{query.user_id}#{query.operation_type}"
        values[":pk"] = partition_value
        key_condition = "#pk = :pk"
        low, high = query.sort_key_bounds()
        if low is not None or high is not None:
            names["#sk"] = "sk"
        if low is not None and high is not None:
            key_condition += " AND #sk BETWEEN :low AND :high"
            values[":low"], values[":high"] = low, high
        elif low is not None:
            key_condition += " AND #sk >= :low"
            values[":low"] = low
        elif high is not None:
            key_condition += " AND #sk <= :high"
            values[":high"] = high
        if query.model is not None:
            names["#model"] = "model"
            values[":model"] = query.model
            filters.append("#model = :model")
        if query.status is not None:
            names["#status"] = "status"
            values[":status"] = query.status.value
            filters.append("#status = :status")
        if query.tag is not None:
            names.update({"#rtags": "rollup_tags", "#tags": "tags", "#tkey": query.tag[0]})
            values[":tvalue"] = query.tag[1]
            filters.append(
                "((attribute_exists(#rtags) AND #rtags.#tkey = :tvalue)"
                " OR (attribute_not_exists(#rtags) AND #tags.#tkey = :tvalue))"
            )
        kwargs["KeyConditionExpression"] = key_condition
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = serialize(values)
        if start_sk is not None:
            start_key = {"user_id": query.user_id, "sk": start_sk}
            if names["#pk"] != "user_id":
                start_key[names["#pk"]] = partition_value
            kwargs["ExclusiveStartKey"] = serialize(start_key)
        return kwargs

    # -- cursors ---------------------------------------------------------------------------

    def _key(self) -> bytes:
        if self._cursor_key is not None:
            return self._cursor_key
        # No secret setting exists yet: a deployment-stable key. Tenant isolation does not rest
        # on it (the start key is rebuilt from the caller's tenant); it only makes tampering
        # detectable. A secret from settings should replace it (see docs/pipeline.md).
        return hashlib.sha256(f"llmtally-cursor-v1:{get_settings().prefix}".encode()).digest()

    def encode_cursor(self, query: UsageQuery, last_sort_key: str) -> str:
        payload = json.dumps(
            {"v": CURSOR_VERSION, "u": query.user_id, "q": query.fingerprint(), "k": last_sort_key},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        signature = hmac.new(self._key(), payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(signature)}"

    def decode_cursor(self, cursor: str, query: UsageQuery) -> str:
        """The sort key to resume after; InvalidCursorError unless issued for this tenant and query."""
        try:
            payload_part, signature_part = cursor.split(".")
            payload, signature = _unb64(payload_part), _unb64(signature_part)
        except (ValueError, binascii.Error):
            raise InvalidCursorError("the cursor is malformed") from None
        expected = hmac.new(self._key(), payload, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            raise InvalidCursorError("the cursor was altered or was not issued by this service")
        try:
            data = json.loads(payload)
        except ValueError:
            raise InvalidCursorError("the cursor is malformed") from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or not isinstance(data.get("k"), str):
            raise InvalidCursorError("the cursor is malformed")
        if data.get("u") != query.user_id:
            raise InvalidCursorError("the cursor belongs to another user")
        if data.get("q") != query.fingerprint():
            raise InvalidCursorError("the cursor belongs to a different query (filters, range or order changed)")
        last_sort_key: str = data["k"]
        low, high = query.sort_key_bounds()
        if (low is not None and last_sort_key < low) or (high is not None and last_sort_key > high):
            raise InvalidCursorError("the cursor is outside the query's time range")
        return last_sort_key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 4096:
        raise ValueError("bad length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
