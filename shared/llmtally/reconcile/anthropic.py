"""Anthropic's bill: the Admin API's usage report for messages and its cost report (an `sk-ant-admin…` key).

- `GET /v1/organizations/usage_report/messages` with `starting_at`, `ending_at`, `bucket_width=1d`,
  `group_by[]=model`, `group_by[]=api_key_id`
  → daily buckets (`starting_at`, RFC 3339) of results with `uncached_input_tokens`,
  `cache_read_input_tokens`, `cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`,
  `output_tokens`, `model`, `api_key_id` (null for usage from the Console/Workbench).
- `GET /v1/organizations/cost_report?starting_at&ending_at&group_by[]=description`
  → results with `amount` — a decimal string in the currency's LOWEST unit (cents: "123.45" is
  $1.23) — `currency`, `model`, `token_type` (`uncached_input_tokens`, `output_tokens`,
  `cache_read_input_tokens`, `cache_creation.ephemeral_{5m,1h}_input_tokens`) and `cost_type`
  (`tokens`, `web_search`, `code_execution`: the last two are spend no token event explains).

Both page with `has_more` / `next_page` (→ `page`). Anthropic documents that Priority Tier costs are
not in the cost report (docs/reconciliation.md: limits). Usage appears within minutes; costs settle
daily (`SETTLE_DAYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.money import usd_to_nanos
from llmtally.reconcile.core import BillingReport, CostLine, TokenKind, UsageLine
from llmtally.reconcile.http import AdminApiClient, BillingSourceError, report_int, report_key_id

DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
API_VERSION: Final = "2023-06-01"
USAGE_PATH: Final = "/v1/organizations/usage_report/messages"
COSTS_PATH: Final = "/v1/organizations/cost_report"
SETTLE_DAYS: Final = 1
#: The largest page of daily buckets both reports allow.
PAGE_LIMIT: Final = 31
MAX_NAME: Final = 256
SOURCE: Final = "Anthropic report"

TOKEN_TYPES: Final = {
    "uncached_input_tokens": TokenKind.INPUT,
    "output_tokens": TokenKind.OUTPUT,
    "cache_read_input_tokens": TokenKind.CACHE_READ,
    "cache_creation.ephemeral_5m_input_tokens": TokenKind.CACHE_WRITE,
    "cache_creation.ephemeral_1h_input_tokens": TokenKind.CACHE_WRITE,
}


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _day(value: Any) -> date:
    if not isinstance(value, str):
        raise BillingSourceError(f"{SOURCE}: a bucket without starting_at")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise BillingSourceError(f"{SOURCE}: starting_at is not RFC 3339") from None


def _int(value: Any) -> int:
    return report_int(value, SOURCE)


class AnthropicBillingSource:
    provider: Final = Provider.ANTHROPIC
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
            return {"x-api-key": admin_key.get_secret_value(), "anthropic-version": API_VERSION}

        self.client = AdminApiClient(base_url, headers, **client_options)

    def fetch(self, start: date, end: date) -> BillingReport:
        window = [("starting_at", _rfc3339(start)), ("ending_at", _rfc3339(end))]
        usage: list[UsageLine] = []
        params = [
            *window,
            ("bucket_width", "1d"),
            ("group_by[]", "model"),
            ("group_by[]", "api_key_id"),
            ("limit", str(PAGE_LIMIT)),
        ]
        for bucket in self.client.buckets(USAGE_PATH, params, source=SOURCE):
            day = _day(bucket.get("starting_at"))
            for result in bucket.get("results") or ():
                creation = result.get("cache_creation") or {}
                usage.append(
                    UsageLine(
                        day=day,
                        model=str(result.get("model") or "(no model)")[:MAX_NAME],
                        tokens={
                            TokenKind.INPUT: _int(result.get("uncached_input_tokens")),
                            TokenKind.CACHE_READ: _int(result.get("cache_read_input_tokens")),
                            TokenKind.CACHE_WRITE: _int(creation.get("ephemeral_5m_input_tokens"))
                            + _int(creation.get("ephemeral_1h_input_tokens")),
                            TokenKind.OUTPUT: _int(result.get("output_tokens")),
                        },
                        api_key_id=report_key_id(result.get("api_key_id")),
                    )
                )
        costs: list[CostLine] = []
        params = [*window, ("group_by[]", "description"), ("limit", str(PAGE_LIMIT))]
        for bucket in self.client.buckets(COSTS_PATH, params, source=SOURCE):
            day = _day(bucket.get("starting_at"))
            for result in bucket.get("results") or ():
                costs.append(_cost_line(day, result))
        return BillingReport(
            self.provider,
            start,
            end,
            tuple(usage),
            tuple(costs),
            source="anthropic usage_report/messages + cost_report",
        )


def _cost_line(day: date, result: dict[str, Any]) -> CostLine:
    currency = str(result.get("currency") or "USD").upper()
    if currency != "USD":
        raise BillingSourceError(f"Anthropic costs: currency {currency[:8]!r} is not USD")
    amount = result.get("amount")
    cents: Decimal | None = None
    if isinstance(amount, str | int | Decimal) and not isinstance(amount, bool):
        try:
            cents = Decimal(str(amount))
        except InvalidOperation:
            cents = None
    if cents is None or not cents.is_finite():
        raise BillingSourceError("Anthropic costs: an amount that is not a decimal string")
    model = result.get("model")
    token_type = result.get("token_type")
    kind = TOKEN_TYPES.get(token_type) if isinstance(token_type, str) else None
    label = str(result.get("description") or result.get("cost_type") or "(unitemised)")[:MAX_NAME]
    return CostLine(
        day=day,
        cost_nanos=usd_to_nanos(cents / 100),
        label=label,
        model=str(model)[:MAX_NAME] if isinstance(model, str) and model and kind is not None else None,
        kind=kind,
    )
