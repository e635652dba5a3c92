"""CSV export of raw usage entries: the same rows as the JSON route, every ledger column.

Cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR at the start) are
prefixed with `'` (OWASP's CSV-injection advice); numbers are written as they are, money exactly.
`tags` is one column holding the tags as compact JSON with sorted keys (`{"customer":"acme"}`;
empty when there are none): tag keys differ between tenants and rows, so fixed per-key columns
would change shape from one export page to the next (docs/api.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

#: Column order of the export: identity, what, the whole token ledger, latency, money, provenance.
CSV_COLUMNS: Final = (
    "timestamp",
    "event_id",
    "request_id",
    "user_id",
    "provider",
    "model",
    "operation_type",
    "status",
    "error_type",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "latency_ms",
    "cost_usd",
    "cost_source",
    "price_version",
    "reported_cost_usd",
    "usage_source",
    "tags",
    "cache_hit",
    "saved_cost_usd",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        # Starts with `{`, so never a formula whatever the values hold.
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False) if value else ""
    text = str(getattr(value, "value", value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_line(values: Iterable[Any]) -> str:
    """One CSV line (RFC 4180 quoting, CRLF end) of already-rendered cells."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def csv_header(columns: tuple[str, ...] = CSV_COLUMNS) -> str:
    return csv_line(columns)


def csv_row(row: Mapping[str, Any], columns: tuple[str, ...] = CSV_COLUMNS) -> str:
    """One entry's line: each column's cell, formula-safe."""
    return csv_line(_cell(row.get(column)) for column in columns)


def render_csv(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...] = CSV_COLUMNS) -> str:
    """A header line and one line per entry (RFC 4180, CRLF line ends)."""
    return csv_header(columns) + "".join(csv_row(row, columns) for row in rows)
