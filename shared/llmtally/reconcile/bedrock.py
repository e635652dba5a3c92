"""Bedrock's bill: Cost Explorer `GetCostAndUsage`, per deployment (the AWS account the job runs in).

Bedrock is called with the deployment's (or the producer's) AWS credentials, not a tenant's key, so
its bill is the account's: one Cost Explorer read per run, grouped by usage type and — when
`tag_key` is set — by a cost-allocation tag carried by application inference profiles (one profile
per tenant, tagged `{tag_key}={user_id}`). Tagged spend goes to that tenant; untagged spend goes to
`default_user` if one is configured, else it is counted and reported as unattributed.

Usage types name the region, the model and the token kind, e.g. `USE1-Claude3.5Sonnet-input-tokens`,
`USW2-Claude3.7Sonnet-cache-read-input-token-count`, `USE1-NovaPro-output-tokens`; a usage type with
no token kind (provisioned throughput, model units, guardrails…) is kept as its own line — spend no
token event explains. The model name is matched to the metered model ids
(`us.anthropic.claude-3-5-sonnet-…`) loosely (`llmtally.reconcile.core.match_model`).

Cost Explorer updates figures at least once a day and keeps them estimated until the month closes;
`SETTLE_DAYS` is 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from llmtally.events import Provider
from llmtally.money import usd_to_nanos
from llmtally.reconcile.core import BillingReport, CostLine, TokenKind, UsageLine
from llmtally.reconcile.http import BillingSourceError

SETTLE_DAYS: Final = 2
DEFAULT_SERVICES: Final = ("Amazon Bedrock",)
MAX_NAME: Final = 256
_REGION: Final = re.compile(r"^[A-Z]{2,4}\d?-")
#: (suffix words, kind), most specific first; matched on the lower-cased usage type.
_SUFFIXES: Final = (
    ("-cache-read-input-token-count", TokenKind.CACHE_READ),
    ("-cache-read-input-tokens", TokenKind.CACHE_READ),
    ("-cache-write-input-token-count", TokenKind.CACHE_WRITE),
    ("-cache-write-input-tokens", TokenKind.CACHE_WRITE),
    ("-input-token-count", TokenKind.INPUT),
    ("-input-tokens", TokenKind.INPUT),
    ("-output-token-count", TokenKind.OUTPUT),
    ("-output-tokens", TokenKind.OUTPUT),
)
_UNITS: Final = {"1k tokens": 1000, "1m tokens": 1_000_000, "k tokens": 1000, "thousand tokens": 1000}


def parse_usage_type(usage_type: str) -> tuple[str, TokenKind | None]:
    """`USE1-Claude3.5Sonnet-input-tokens` → (`Claude3.5Sonnet`, input); no token kind → (usage type, None)."""
    rest = _REGION.sub("", usage_type, count=1)
    lowered = rest.lower()
    for suffix, kind in _SUFFIXES:
        at = lowered.find(suffix)
        if at > 0:
            return rest[:at][:MAX_NAME], kind
    return usage_type[:MAX_NAME], None


def _amount(metric: Any, what: str) -> Decimal:
    try:
        value = Decimal(str((metric or {}).get("Amount", "0")))
    except InvalidOperation:
        raise BillingSourceError(f"Cost Explorer: {what} is not a decimal") from None
    if not value.is_finite():
        raise BillingSourceError(f"Cost Explorer: {what} is not finite")
    return value


def _tokens(metric: Any) -> int:
    quantity = _amount(metric, "UsageQuantity")
    unit = str((metric or {}).get("Unit", "")).strip().lower()
    return int(quantity * _UNITS.get(unit, 1))


@dataclass(slots=True)
class _Lines:
    usage: list[UsageLine] = field(default_factory=list)
    costs: list[CostLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BedrockBill:
    """The account's Bedrock bill split by tenant; `unattributed_nanos` is untagged spend nobody owns."""

    reports: dict[str, BillingReport]
    unattributed_nanos: int


def split_by_tenant(
    results: Sequence[dict[str, Any]],
    start: date,
    end: date,
    *,
    tag_key: str | None,
    default_user: str | None,
) -> BedrockBill:
    """Cost Explorer's `ResultsByTime` as one `BillingReport` per tenant."""
    by_user: dict[str, _Lines] = {}
    unattributed = 0
    for period in results:
        try:
            day = date.fromisoformat(str(period["TimePeriod"]["Start"]))
        except (KeyError, TypeError, ValueError):
            raise BillingSourceError("Cost Explorer: a result without TimePeriod.Start") from None
        for group in period.get("Groups") or ():
            keys = list(group.get("Keys") or ())
            if not keys:
                continue
            metrics = group.get("Metrics") or {}
            cost = _amount(metrics.get("UnblendedCost"), "UnblendedCost")
            unit = str((metrics.get("UnblendedCost") or {}).get("Unit", "USD")).upper()
            if unit != "USD":
                raise BillingSourceError(f"Cost Explorer: unit {unit[:8]!r} is not USD")
            user = default_user
            if tag_key and len(keys) > 1:
                _, _, value = str(keys[1]).partition("$")
                user = value or default_user
            nanos = usd_to_nanos(cost)
            if user is None:
                unattributed += nanos
                continue
            model, kind = parse_usage_type(str(keys[0]))
            lines = by_user.setdefault(user, _Lines())
            if kind is not None:
                tokens = dict.fromkeys(TokenKind, 0)
                tokens[kind] = _tokens(metrics.get("UsageQuantity"))
                lines.usage.append(UsageLine(day=day, model=model, tokens=tokens))
            lines.costs.append(CostLine(day, nanos, str(keys[0])[:MAX_NAME], model if kind else None, kind))
    reports = {
        user: BillingReport(
            Provider.BEDROCK, start, end, tuple(lines.usage), tuple(lines.costs), source="AWS Cost Explorer"
        )
        for user, lines in by_user.items()
    }
    return BedrockBill(reports, unattributed)


class BedrockBillingSource:
    provider: Final = Provider.BEDROCK
    settle_days: Final = SETTLE_DAYS

    def __init__(
        self,
        repository: Any = None,
        *,
        services: Sequence[str] = DEFAULT_SERVICES,
        tag_key: str | None = None,
        default_user: str | None = None,
    ) -> None:
        self._repository = repository
        self.services = tuple(services)
        self.tag_key = tag_key
        self.default_user = default_user

    @property
    def repository(self) -> Any:
        if self._repository is None:
            from llmtally.repositories.cost_explorer import CostExplorerRepository

            self._repository = CostExplorerRepository()
        return self._repository

    def fetch_all(self, start: date, end: date) -> BedrockBill:
        results = self.repository.daily_cost_and_usage(start, end, services=self.services, tag_key=self.tag_key)
        return split_by_tenant(results, start, end, tag_key=self.tag_key, default_user=self.default_user)
