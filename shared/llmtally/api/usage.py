"""Usage analytics for the HTTP API: summary and daily series from the rollups, raw entries and CSV.

Plain functions over repositories: no events, no HTTP. Every bad input raises `BadRequestError`
(or `InvalidRangeError` / `InvalidCursorError`, also 400s) with a message that names the parameter
and never quotes more than a short, already-validated value.

- Summary and daily read the rollups only (`llmtally.queries`): items read are bounded by days ×
  dimension values, never by events.
- Entries read the raw table one page at a time (`UsageRepository.query_entries`); the cursor is
  HMAC-signed and bound to the tenant and the query, and the start key is rebuilt from the
  caller's tenant, so a cursor can never page into another tenant's partition.
- CSV is the same query as the JSON entries (same filters, same cursor), every ledger column,
  up to `ApiSettings.csv_max_rows` rows per response.
- Every entries response (JSON page or CSV) is bounded twice, whatever the tenant's size and the
  filter's selectivity: at most `MAX_ITEMS_EXAMINED` items read from the table, and a body of at
  most `MAX_RESPONSE_BODY_BYTES` as it travels in Lambda's JSON-encoded answer (Lambda refuses
  more than 6 MB). When either budget is spent the response ends early, possibly with fewer rows
  than asked (even none), and carries the cursor of the rest (`next_cursor` / `X-Next-Cursor`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo

from llmtally.api import jsonout
from llmtally.api.config import ApiSettings
from llmtally.api.csv_export import csv_header, csv_row
from llmtally.api.errors import BadRequestError
from llmtally.api.timeparams import local_day_range, parse_day, parse_instant, parse_timezone
from llmtally.events import Provider, Status, format_timestamp
from llmtally.money import nanos_to_usd
from llmtally.rollups import tag_key_of

if TYPE_CHECKING:
    from llmtally.entries import RawEntry
    from llmtally.queries import Filter
    from llmtally.repositories.cardinality import TagRegistry
    from llmtally.repositories.rollups import RollupRepository
    from llmtally.repositories.usage import UsageQuery, UsageRepository

#: Dates the API answers for: wide enough for any real usage, narrow enough that no local midnight
#: in any zone overflows `datetime` (year 1 or 9999 would raise instead of answering 400).
EARLIEST_DAY: Final = date(2000, 1, 1)
LATEST_DAY: Final = date(2999, 12, 31)

#: Query parameters each usage route accepts; anything else is a 400 (a typo must not silently
#: return unfiltered data). The seed's names are pointed to their replacement.
#: The CSV export's next-page cursor travels in this response header (the JSON body has `next_cursor`);
#: a browser on another origin reads it only if CORS exposes it (the CDK app's HTTP API does).
NEXT_CURSOR_HEADER: Final = "X-Next-Cursor"
SUMMARY_PARAMS: Final = frozenset({"start", "end", "tz", "where"})
DAILY_PARAMS: Final = frozenset({"days", "tz", "where"})
BREAKDOWN_PARAMS: Final = frozenset({"by", "where", "start", "end", "tz", "limit"})
TAGS_PARAMS: Final = frozenset[str]()
ENTRIES_PARAMS: Final = frozenset(
    {"provider", "operation", "model", "status", "where", "start", "end", "tz", "order", "limit", "cursor", "format"}
)
#: Items DynamoDB may examine (before filters) for one entries response, JSON or CSV: a selective
#: filter over a large tenant answers a short page and a cursor rather than reading the partition.
MAX_ITEMS_EXAMINED: Final = 20_000
#: Most bytes of one entries response's body as it travels in Lambda's JSON-encoded answer
#: (escapes included); Lambda answers at most 6 MB, the rest is headroom for headers and envelope.
MAX_RESPONSE_BODY_BYTES: Final = 4 * 1024 * 1024
_RENAMED: Final = {"startDate": "start", "endDate": "end", "operationType": "operation", "operation_type": "operation"}


def check_params(given: Iterable[str] | None, allowed: frozenset[str]) -> None:
    """400 for a query parameter the route does not know (naming it, and the seed's rename if any)."""
    for name in sorted(given or ()):
        if name not in allowed:
            shown = name if len(name) <= 40 else name[:40] + "…"
            hint = f"; use {_RENAMED[name]!r}" if name in _RENAMED else f"; known: {', '.join(sorted(allowed))}"
            raise BadRequestError(f"unknown query parameter {shown!r}{hint}")


def _bounded(day: date, name: str) -> date:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise BadRequestError(f"{name}: must be between {EARLIEST_DAY} and {LATEST_DAY}")
    return day


@dataclass(frozen=True, slots=True)
class EntryFilters:
    """The entries route's parameters, as given (validated for shape by the route)."""

    provider: Provider | None = None
    operation: str | None = None
    model: str | None = None
    status: Status | None = None
    start: str | None = None
    end: str | None = None
    tz: str | None = None
    order: Literal["newest", "oldest"] = "newest"
    #: The dashboard's filter chip, as the summary takes it: `<dimension>:<value>` (`tag:customer:acme`).
    where: str | None = None


class UsageService:
    """Summary, daily series, entries and CSV for one tenant at a time (the caller is already authorized)."""

    def __init__(
        self,
        rollups: Callable[[], RollupRepository],
        usage: Callable[[], UsageRepository],
        settings: ApiSettings,
        *,
        max_items_examined: int | None = None,
        max_body_bytes: int | None = None,
        tags: Callable[[], TagRegistry] | None = None,
    ) -> None:
        self._rollups = rollups
        self._tags = tags
        self._usage = usage
        self._settings = settings
        # The module's budgets unless given (read when the service is built).
        self._max_examined = max_items_examined if max_items_examined is not None else MAX_ITEMS_EXAMINED
        self._max_body = max_body_bytes if max_body_bytes is not None else MAX_RESPONSE_BODY_BYTES

    # -- rollups ---------------------------------------------------------------------------

    def summary(
        self,
        user_id: str,
        start: str | None,
        end: str | None,
        tz: str | None,
        *,
        now: datetime | None = None,
        where: str | None = None,
    ) -> dict[str, Any]:
        """The seed's summary for whole local days [start, end] (default: the last 30 days), of the
        calls `where` selects (`<dimension>:<value>`) if given."""
        from llmtally.queries import summarize

        zone = parse_timezone(tz)
        first, last = self._days(start, end, zone, now)
        return summarize(
            user_id, first, last, zone.key, repository=self._rollups(), where=self._where(where)
        ).model_dump()

    def daily(self, user_id: str, days: int, tz: str | None, *, where: str | None = None) -> dict[str, Any]:
        """One row per local day for the `days` days ending today in `tz`, zero-filled."""
        from llmtally.queries import daily_usage

        zone = parse_timezone(tz)
        series = daily_usage(user_id, days, zone.key, repository=self._rollups(), where=self._where(where))
        return {
            "user_id": user_id,
            "timezone": zone.key,
            "days": days,
            "daily_usage": [row.model_dump() for row in series.days],
            "where": series.where.as_dict() if series.where else None,
            "items_read": series.items_read,
            "queries": series.queries,
        }

    def breakdown(
        self,
        user_id: str,
        by: str,
        start: str | None,
        end: str | None,
        tz: str | None,
        *,
        where: str | None = None,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Spend by `by` (provider, model, operation, tag:<key>) over whole local days, costliest first."""
        from llmtally.queries import DEFAULT_BREAKDOWN_LIMIT, breakdown

        zone = parse_timezone(tz)
        first, last = self._days(start, end, zone, now)
        result = breakdown(
            user_id,
            by,
            first,
            last,
            zone.key,
            where=self._where(where),
            limit=DEFAULT_BREAKDOWN_LIMIT if limit is None else limit,
            repository=self._rollups(),
            folded=lambda user, key, months: self._tag_registry().folded_values(user, key, months),
        )
        return result.as_dict()

    def tag_keys(self, user_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """The tenant's tag keys with this UTC month's admitted and folded value counts."""
        from llmtally.repositories.cardinality import tag_month

        registry = self._tag_registry()
        month = tag_month(now or datetime.now(UTC))
        keys = []
        for key in sorted(registry.tag_keys(user_id)):
            admitted, folded = registry.month_counts(user_id, key, month)
            keys.append({"key": key, "values": admitted, "folded_values": len(folded)})
        return {"user_id": user_id, "period": month, "keys": keys}

    def _tag_registry(self) -> TagRegistry:
        if self._tags is not None:
            return self._tags()
        from llmtally.repositories.cardinality import TagRegistry

        return TagRegistry()

    @staticmethod
    def _where(where: str | None) -> Filter | None:
        from llmtally.queries import Filter

        return Filter.parse(where) if where else None

    @staticmethod
    def _days(start: str | None, end: str | None, zone: ZoneInfo, now: datetime | None) -> tuple[date, date]:
        if start:
            _bounded(parse_day(start, "start"), "start")
        if end:
            _bounded(parse_day(end, "end"), "end")
        first, last = local_day_range(start, end, zone, now=now)
        _bounded(first, "start")
        return first, last

    # -- raw entries -----------------------------------------------------------------------

    def _query(self, user_id: str, filters: EntryFilters) -> UsageQuery | None:
        """The repository's query, or None when `where` names a provider that cannot exist (no entry matches)."""
        from llmtally.repositories.usage import UsageQuery

        zone = parse_timezone(filters.tz)
        low = self._instant(filters.start, "start", zone, is_end=False)
        high = self._instant(filters.end, "end", zone, is_end=True)
        if low is not None and high is not None and high <= low:
            raise BadRequestError("end: must be after start")
        provider, operation, model = filters.provider, filters.operation, filters.model
        tag: tuple[str, str] | None = None
        where = self._where(filters.where)
        if where is not None:
            key = tag_key_of(where.dimension)
            if key is not None:
                tag = (key, where.value)
            elif where.dimension == "provider":
                if where.value not in _PROVIDERS:
                    return None  # as the summary: an unknown provider has no calls
                provider = _same(provider, Provider(where.value), "provider")
            elif where.dimension == "operation":
                operation = _same(operation, where.value, "operation")
            else:
                model = _same(model, where.value, "model")
        return UsageQuery(
            user_id=user_id,
            provider=provider,
            operation_type=operation,
            model=model,
            status=filters.status,
            start=low,
            end=high,
            order=filters.order,
            tag=tag,
        )

    @staticmethod
    def _instant(value: str | None, name: str, zone: ZoneInfo, *, is_end: bool) -> datetime | None:
        """A date (local midnight; an end date is inclusive: the midnight after it) or an ISO datetime."""
        if not value:
            return None
        if len(value) == 10:
            day = _bounded(parse_day(value, name), name)
            moment = datetime(day.year, day.month, day.day, tzinfo=zone)
            return (moment + timedelta(days=1) if is_end else moment).astimezone(UTC)
        if len(value) > 40:
            raise BadRequestError(f"{name}: not a date or an ISO 8601 datetime")
        try:
            moment = parse_instant(value, name, zone)
        except OverflowError as exc:
            raise BadRequestError(f"{name}: out of range") from exc
        _bounded(moment.date(), name)
        return moment

    def entries(self, user_id: str, filters: EntryFilters, limit: int | None, cursor: str | None) -> dict[str, Any]:
        """One page of raw entries (`{entries, count, next_cursor}`); a page may be short yet carry a cursor."""
        size = self._limit(limit, self._settings.entries_default_limit, self._settings.entries_max_limit)
        query = self._query(user_id, filters)
        if query is None:
            return {"entries": [], "count": 0, "next_cursor": None}
        repository = self._usage()
        page = repository.query_entries(query, limit=size, cursor=cursor or None, max_examined=self._max_examined)
        rows: list[dict[str, Any]] = []
        body = _wire_bytes('{"entries":[],"count":0,"next_cursor":null}') + _CURSOR_ROOM
        for index, entry in enumerate(page.entries):
            row = entry_row(entry)
            cost = _wire_bytes(jsonout.dumps(row)) + 1
            if rows and body + cost > self._max_body:
                # The body budget is spent: the rest of this page starts the next one.
                resume = repository.encode_cursor(query, page.entries[index - 1].sk)
                return {"entries": rows, "count": len(rows), "next_cursor": resume}
            rows.append(row)
            body += cost
        return {"entries": rows, "count": len(rows), "next_cursor": page.cursor}

    def export_csv(
        self, user_id: str, filters: EntryFilters, limit: int | None, cursor: str | None
    ) -> tuple[str, str | None]:
        """The same query as CSV: up to `limit` (default and most: `csv_max_rows`) rows, and the next cursor.

        Fewer rows (even none) when the read or body budget is spent first: the cursor says where
        the rest starts.
        """
        from llmtally.repositories.usage import MAX_PAGE_SIZE

        most = self._settings.csv_max_rows
        wanted = self._limit(limit, most, most)
        query = self._query(user_id, filters)
        if query is None:
            return csv_header(), None
        repository = self._usage()
        lines = [csv_header()]
        body = _wire_bytes(lines[0])
        rows = examined = 0
        last_sk = ""
        next_cursor = cursor or None
        while True:
            page = repository.query_entries(
                query,
                limit=min(MAX_PAGE_SIZE, wanted - rows),
                cursor=next_cursor,
                max_examined=self._max_examined - examined,
            )
            examined += page.examined
            for entry in page.entries:
                line = csv_row(entry_row(entry))
                cost = _wire_bytes(line)
                if rows and body + cost > self._max_body:
                    return "".join(lines), repository.encode_cursor(query, last_sk)
                lines.append(line)
                rows, body, last_sk = rows + 1, body + cost, entry.sk
            next_cursor = page.cursor
            if next_cursor is None or rows >= wanted or examined >= self._max_examined:
                return "".join(lines), next_cursor

    @staticmethod
    def _limit(limit: int | None, default: int, most: int) -> int:
        if limit is None:
            return default
        if not 1 <= limit <= most:
            raise BadRequestError(f"limit: must be between 1 and {most}")
        return limit


_PROVIDERS: Final = frozenset(p.value for p in Provider)


_T = TypeVar("_T")


def _same(given: _T | None, chosen: _T, name: str) -> _T:
    """`where` on a dimension the route also filters by its own parameter: they must agree."""
    if given is not None and given != chosen:
        raise BadRequestError(f"where: names another {name} than the {name} parameter (they combine with AND)")
    return chosen


#: Room for the cursor a bounded JSON page may end with (its length is bounded by the route).
_CURSOR_ROOM: Final = 1100


def _wire_bytes(text: str) -> int:
    """The bytes `text` takes as a string inside Lambda's JSON-encoded proxy answer: quotes,
    backslashes and control characters escaped, non-ASCII as six-character \\u escapes (the most it can take)."""
    return len(json.dumps(text)) - 2


def entry_row(entry: RawEntry) -> dict[str, Any]:
    """A raw entry as the API shows it: money in decimal USD, internal keys (sort key, TTL) left out."""
    return {
        "timestamp": format_timestamp(entry.timestamp),
        "event_id": entry.event_id,
        "request_id": entry.request_id,
        "user_id": entry.user_id,
        "provider": entry.provider.value,
        "model": entry.model,
        "operation_type": entry.operation_type,
        "original_operation_type": entry.original_operation_type,
        "status": entry.status.value,
        "error_type": entry.error_type,
        "input_tokens": entry.input_tokens,
        "cache_read_tokens": entry.cache_read_tokens,
        "cache_write_tokens": entry.cache_write_tokens,
        "cache_write_5m_tokens": entry.cache_write_5m_tokens,
        "cache_write_1h_tokens": entry.cache_write_1h_tokens,
        "output_tokens": entry.output_tokens,
        "reasoning_tokens": entry.reasoning_tokens,
        "total_tokens": entry.total_tokens,
        "latency_ms": entry.latency_ms,
        "cost_usd": nanos_to_usd(entry.cost_nanos),
        "cost_source": entry.cost_source.value,
        "price_version": entry.price_version,
        "reported_cost_usd": nanos_to_usd(entry.reported_cost_nanos) if entry.reported_cost_nanos is not None else None,
        "metadata": dict(entry.metadata),
        "tags": dict(entry.tags),
        "usage_source": entry.usage_source.value,
        "cache_hit": entry.cache_hit,
        "saved_cost_usd": entry.saved_cost_usd,
    }
