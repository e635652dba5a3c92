"""Each tenant's cell dictionary: cell (`provider#model#operation`) ↔ a small ordinal code.

Packed rollup items name their attributes by cell code (`llmtally.packing`). Items in the rollups
table:

- `pk = D#{user}`, `sk = c#{cell}`, `code` (N): one per cell, written once (conditional on not
  existing) and never changed;
- `pk = D#{user}`, `sk = #next`, `n` (N): the last code handed out (ADD 1 per new cell).

A new cell takes the next number (ADD, returning it), then claims its own item with that code; if
another writer (a rebuild beside the aggregator) claimed the cell first, its code wins and ours is
never used — a gap, never two codes for a cell or two cells for a code. A code is written before
any rollup item uses it, so a reader that meets an unknown code re-reads the dictionary
(consistently) and finds it. One Query reads a tenant's whole dictionary: the cells are bounded by
the model and operation bounds (settings), a few KB per hundred cells.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.repositories._dynamodb import call, condition_failed

DICTIONARY_PK_PREFIX: Final = "D#"
CELL_SK_PREFIX: Final = "c#"
NEXT_SK: Final = "#next"


#: Per (endpoint, table): tenant → cell → code. Process-wide: codes never change once written, so
#: a cached code is always right (tests that empty a table call `forget_all`).
_CACHE: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
_LOCK = threading.Lock()


def forget_all() -> None:
    with _LOCK:
        _CACHE.clear()


class CellCodes:
    """Reads and extends the dictionaries through the rollups repository's client and table."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._lock = _LOCK
        self._scope = (str(getattr(getattr(client, "meta", None), "endpoint_url", "")), table)

    @property
    def _codes(self) -> dict[str, dict[str, int]]:
        """This table's cache (looked up each time: `forget_all` replaces it)."""
        return _CACHE.setdefault(self._scope, {})

    def codes(self, user_id: str, cells: Iterable[str]) -> dict[str, int]:
        """The codes of `cells`, assigning the missing ones."""
        wanted = set(cells)
        known = self._cached(user_id)
        if wanted - known.keys():
            known = self._load(user_id)
            for cell in sorted(wanted - known.keys()):
                self._assign(user_id, cell)
            known = self._cached(user_id)
        return {cell: known[cell] for cell in wanted}

    def cells(self, user_id: str, codes: Iterable[int]) -> dict[int, str]:
        """code → cell for a tenant, covering `codes` (re-read when the cache lacks one)."""
        wanted = set(codes)
        by_code = {code: cell for cell, code in self._cached(user_id).items()}
        if wanted - by_code.keys():
            by_code = {code: cell for cell, code in self._load(user_id, consistent=True).items()}
            missing = wanted - by_code.keys()
            if missing:
                raise StorageError(f"rollup item names {len(missing)} cell code(s) the tenant's dictionary lacks")
        return by_code

    def _cached(self, user_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._codes.get(user_id, {}))

    def _load(self, user_id: str, *, consistent: bool = True) -> dict[str, int]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :c)",
            "ExpressionAttributeValues": {":pk": {"S": DICTIONARY_PK_PREFIX + user_id}, ":c": {"S": CELL_SK_PREFIX}},
            "ConsistentRead": consistent,
        }
        found: dict[str, int] = {}
        while True:
            response = self._call("query", **kwargs)
            for item in response.get("Items", []):
                found[item["sk"]["S"].removeprefix(CELL_SK_PREFIX)] = int(item["code"]["N"])
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        with self._lock:
            self._codes.setdefault(user_id, {}).update(found)
            return dict(self._codes[user_id])

    def _assign(self, user_id: str, cell: str) -> None:
        pk = {"S": DICTIONARY_PK_PREFIX + user_id}
        response = self._call(
            "update_item",
            TableName=self._table,
            Key={"pk": pk, "sk": {"S": NEXT_SK}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        code = int(response["Attributes"]["n"]["N"]) - 1
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": pk, "sk": {"S": CELL_SK_PREFIX + cell}},
                UpdateExpression="SET code = :code",
                ConditionExpression="attribute_not_exists(code)",
                ExpressionAttributeValues={":code": {"N": str(code)}},
            )
        except StorageError as exc:
            if not condition_failed(exc):
                raise
            self._load(user_id)  # claimed by another writer (or our own earlier attempt): its code wins
            return
        with self._lock:
            self._codes.setdefault(user_id, {})[cell] = code

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return call(self._client, "cell dictionary", operation, **kwargs)
