"""OpenAI's bill: the organization Usage API (completions) and the Costs API, read with an admin key.

- `GET /v1/organization/usage/completions?start_time&end_time&bucket_width=1d&group_by=model&group_by=api_key_id`
  → daily buckets of `organization.usage.completions.result`: `input_tokens` (cached included),
  `input_cached_tokens`, `output_tokens` (reasoning included), `num_model_requests`, `model`,
  `api_key_id`. Mapped onto the canonical kinds: input = input − cached, cache_read = cached,
  output = output.
- `GET /v1/organization/costs?start_time&end_time&bucket_width=1d&group_by=line_item`
  → `organization.costs.result` with `amount: {value, currency}` (a JSON number, read as Decimal) and
  `line_item`, e.g. `gpt-4o-2024-08-06, input` / `…, cached input` / `…, output`; a line item that
  names no model and token kind (tool calls, storage…) is kept as it is: spend no event explains.

Both page with `has_more` / `next_page` (→ `page`). Usage figures appear within minutes; costs are
settled daily, so the last day is provisional (`SETTLE_DAYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.money import usd_to_nanos
from llmtally.reconcile.core import BillingReport, CostLine, TokenKind, UsageLine, day_start
from llmtally.reconcile.http import AdminApiClient, BillingSourceError, report_int, report_key_id

DEFAULT_BASE_URL: Final = "https://api.openai.com"
USAGE_PATH: Final = "/v1/organization/usage/completions"
COSTS_PATH: Final = "/v1/organization/costs"
#: Days at the end of a window whose figures may still change.
SETTLE_DAYS: Final = 1
#: The largest page of daily buckets each endpoint allows (usage: 31; costs: 180).
USAGE_PAGE_LIMIT: Final = 31
COSTS_PAGE_LIMIT: Final = 180
MAX_NAME: Final = 256
SOURCE: Final = "OpenAI report"

_KINDS: Final = (
    ("cached input", TokenKind.CACHE_READ),
    ("cache read", TokenKind.CACHE_READ),
    ("cache write", TokenKind.CACHE_WRITE),
    ("input", TokenKind.INPUT),
    ("output", TokenKind.OUTPUT),
)


def parse_line_item(line_item: str | None) -> tuple[str | None, TokenKind | None]:
    """`gpt-4o-2024-08-06, cached input` → (`gpt-4o-2024-08-06`, cache_read); anything else → (None, None)."""
    if not line_item or ", " not in line_item:
        return None, None
    model, _, what = line_item.rpartition(", ")
    what = what.strip().lower()
    for words, kind in _KINDS:
        if words in what:
            return model.strip()[:MAX_NAME] or None, kind
    return None, None


def _day(value: Any) -> date:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BillingSourceError(f"{SOURCE}: a bucket without an integer start_time")
    return datetime.fromtimestamp(int(value), tz=UTC).date()


def _int(value: Any) -> int:
    return report_int(value, SOURCE)


class OpenAIBillingSource:
    provider: Final = Provider.OPENAI
    settle_days: Final = SETTLE_DAYS

    def __init__(
        self,
        admin_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        **client_options: Any,
    ) -> None:
        """`client_options`: AdminApiClient's (timeouts, bounds, `sleep`)."""

        def headers() -> Mapping[str, str]:
            return {"Authorization": f"Bearer {admin_key.get_secret_value()}"}

        self.client = AdminApiClient(base_url, headers, **client_options)

    def fetch(self, start: date, end: date) -> BillingReport:
        """The usage and cost lines of the UTC days [start, end)."""
        window = [
            ("start_time", str(int(day_start(start).timestamp()))),
            ("end_time", str(int(day_start(end).timestamp()))),
            ("bucket_width", "1d"),
        ]
        usage: list[UsageLine] = []
        params = [*window, ("group_by", "model"), ("group_by", "api_key_id"), ("limit", str(USAGE_PAGE_LIMIT))]
        for bucket in self.client.buckets(USAGE_PATH, params, source=SOURCE):
            day = _day(bucket.get("start_time"))
            for result in bucket.get("results") or ():
                total_in = _int(result.get("input_tokens"))
                cached = _int(result.get("input_cached_tokens"))
                usage.append(
                    UsageLine(
                        day=day,
                        model=str(result.get("model") or "(no model)")[:MAX_NAME],
                        tokens={
                            TokenKind.INPUT: max(0, total_in - cached),
                            TokenKind.CACHE_READ: cached,
                            TokenKind.CACHE_WRITE: 0,
                            TokenKind.OUTPUT: _int(result.get("output_tokens")),
                        },
                        api_key_id=report_key_id(result.get("api_key_id")),
                        requests=_int(result.get("num_model_requests")),
                    )
                )
        costs: list[CostLine] = []
        params = [*window, ("group_by", "line_item"), ("limit", str(COSTS_PAGE_LIMIT))]
        for bucket in self.client.buckets(COSTS_PATH, params, source=SOURCE):
            day = _day(bucket.get("start_time"))
            for result in bucket.get("results") or ():
                costs.append(_cost_line(day, result))
        return BillingReport(
            self.provider, start, end, tuple(usage), tuple(costs), source="openai usage/completions + costs"
        )


def _cost_line(day: date, result: dict[str, Any]) -> CostLine:
    amount = result.get("amount") or {}
    value, currency = amount.get("value"), str(amount.get("currency") or "usd").lower()
    if currency != "usd":
        raise BillingSourceError(f"OpenAI costs: currency {currency[:8]!r} is not USD")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BillingSourceError("OpenAI costs: an amount that is not a number")
    label = str(result.get("line_item") or "(unitemised)")[:MAX_NAME]
    model, kind = parse_line_item(result.get("line_item"))
    return CostLine(day, usd_to_nanos(Decimal(value)), label, model, kind)
