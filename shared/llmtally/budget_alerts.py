"""What the aggregator does for budgets: keep each period's ledger exact, and fire threshold alerts once.

In the rollup transaction (exactly once, like the rollup deltas): for every tenant with a budget,
one ledger update per period the transaction touches — `spent_nanos` SET to the current period's
rollup total after the transaction (the total read consistently before the batch, plus this
batch's deltas: no other writer adds to a tenant's rollups meanwhile, see llmtally.aggregate), and
the reported cost of settled strict calls released from `outstanding_nanos`.

After the commits: for every budgeted tenant of the batch (skipped records included, so a retry
finishes what a crash interrupted), each crossed threshold not yet marked on the ledger is written
as an alert record with `attribute_not_exists` — exactly one writer fires it — then published to
the bus and marked. A record found unpublished and older than `REPUBLISH_AFTER` (its writer died
between the record and the event) is published again with the same `alert_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from llmtally.budgets import STRICT_PERIOD_METADATA, Budget, BudgetAlert, Period, crossed_thresholds, period_by_key
from llmtally.errors import LLMTallyError
from llmtally.rollups import Dimension, RollupSource

logger = logging.getLogger("llmtally.budget_alerts")

REPUBLISH_AFTER: Final = timedelta(minutes=2)
#: Ledger items one tenant's range may add to a transaction: the current period, and a past one
#: (a settled strict call aggregated just after the period ended).
LEDGER_ITEMS_PER_TENANT: Final = 2


def period_total_nanos(repository: Any, user_id: str, start: datetime, end: datetime) -> int:
    """The exact cost in [start, end) from the rollups' total dimension (consistent reads)."""
    from llmtally.queries import range_totals

    totals = range_totals(user_id, start, end, (Dimension.TOTAL,), repository=repository, consistent=True)
    return totals.total().cost_nanos


@dataclass(slots=True)
class _Tenant:
    budget: Budget
    period: Period
    spent_nanos: int | None = None


@dataclass(slots=True)
class AlertOutcome:
    published: list[BudgetAlert] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class BudgetKeeper:
    """Built once per container by the aggregate handler; `begin` is called for each batch."""

    def __init__(
        self,
        budgets: Any | None = None,
        bus: Any | None = None,
        rollups: Any | None = None,
        *,
        clock: Any = None,
    ) -> None:
        self._budgets = budgets
        self._bus = bus
        self._rollups = rollups
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tenants: dict[str, _Tenant] = {}

    @property
    def budgets(self) -> Any:
        if self._budgets is None:
            from llmtally.repositories.budgets import BudgetRepository

            self._budgets = BudgetRepository()
        return self._budgets

    @property
    def bus(self) -> Any:
        if self._bus is None:
            from llmtally.repositories.alert_bus import AlertBus

            self._bus = AlertBus()
        return self._bus

    def begin(self, user_ids: Iterable[str], rollups: Any) -> None:
        """Load the batch's tenants' budgets (one BatchGetItem)."""
        self._rollups = rollups
        now = self._clock()
        self._tenants = {
            user: _Tenant(budget, budget.period(now)) for user, budget in self.budgets.get_budgets(user_ids).items()
        }

    def has_budget(self, user_id: str) -> bool:
        return user_id in self._tenants

    def ledger_items(self, entries: Sequence[RollupSource]) -> list[dict[str, Any]]:
        """The ledger updates for one transaction's entries (call in commit order)."""
        by_tenant: dict[str, list[RollupSource]] = {}
        for entry in entries:
            if entry.user_id in self._tenants:
                by_tenant.setdefault(entry.user_id, []).append(entry)
        items: list[dict[str, Any]] = []
        for user_id, mine in by_tenant.items():
            tenant = self._tenants[user_id]
            if tenant.spent_nanos is None:
                tenant.spent_nanos = period_total_nanos(
                    self._rollups, user_id, tenant.period.start_utc, tenant.period.end_utc
                )
            added = sum(e.cost_nanos for e in mine if tenant.period.contains(e.timestamp))
            releases: dict[str, int] = {}
            for entry in mine:
                held_in = (getattr(entry, "metadata", None) or {}).get(STRICT_PERIOD_METADATA)
                if isinstance(held_in, str):
                    released = getattr(entry, "reported_cost_nanos", None) or 0
                    releases[held_in] = releases.get(held_in, 0) + released
            spent_after = tenant.spent_nanos + added
            items.append(
                self.budgets.ledger_transaction_item(
                    user_id, tenant.period, spent_nanos=spent_after, release_nanos=releases.pop(tenant.period.key, 0)
                )
            )
            for key, amount in releases.items():
                if amount and _is_period_key(key):
                    past = period_by_key(key, tenant.budget.timezone)
                    items.append(
                        self.budgets.ledger_transaction_item(user_id, past, spent_nanos=None, release_nanos=amount)
                    )
            tenant.spent_nanos = spent_after
        return items

    def forget_totals(self) -> None:
        """After a transaction that did not commit as planned: re-read the running totals when next needed."""
        for tenant in self._tenants.values():
            tenant.spent_nanos = None

    def evaluate(self, user_ids: Iterable[str]) -> AlertOutcome:
        """Fire every crossed threshold of these tenants that has not fired yet (see the module doc)."""
        outcome = AlertOutcome()
        now = self._clock()
        for user_id in sorted(set(user_ids)):
            tenant = self._tenants.get(user_id)
            if tenant is None:
                continue
            try:
                self._evaluate(user_id, tenant, now, outcome)
            except LLMTallyError as exc:
                outcome.failed.append(user_id)
                logger.warning(
                    "budget alert delivery failed; the batch is retried", extra={"user_id": user_id, "error": str(exc)}
                )
        return outcome

    def _evaluate(self, user_id: str, tenant: _Tenant, now: datetime, outcome: AlertOutcome) -> None:
        ledger = self.budgets.get_ledger(user_id, tenant.period.key)
        if not ledger.has_spent:
            return
        for percent in crossed_thresholds(tenant.budget, ledger.spent_nanos):
            if percent in ledger.alerted:
                continue
            alert = BudgetAlert(
                user_id=user_id,
                period=tenant.period.key,
                timezone=tenant.budget.timezone,
                threshold_percent=percent,
                limit_nanos=tenant.budget.limit_nanos,
                spent_nanos=ledger.spent_nanos,
                action=tenant.budget.action,
                crossed_at=now,
            )
            if not self.budgets.record_alert(alert, period_end=tenant.period.end_utc):
                found = self.budgets.get_alert(user_id, tenant.period.key, percent)
                if found is None:
                    continue
                alert, published = found
                if published:
                    self.budgets.mark_published(alert)  # heal the ledger's mark
                    continue
                if now - alert.crossed_at < REPUBLISH_AFTER:
                    continue  # its writer is (probably) still publishing it
            try:
                self.bus.publish(alert)
            except LLMTallyError:
                # Undo the record so the retry of this batch fires it again, without waiting.
                self.budgets.delete_unpublished_alert(alert)
                raise
            self.budgets.mark_published(alert)
            outcome.published.append(alert)
            logger.warning(
                "budget threshold crossed: %s%% of %s's %s budget",
                percent,
                user_id,
                alert.period,
                extra={
                    "user_id": user_id,
                    "alert_id": alert.alert_id,
                    "threshold_percent": percent,
                    "spent_usd": alert.detail()["spent_usd"],
                    "limit_usd": alert.detail()["limit_usd"],
                    "action": alert.action.value,
                },
            )


def _is_period_key(text: str) -> bool:
    parts = text.split("-")
    return (
        len(parts) == 2
        and len(parts[0]) == 4
        and parts[0].isdigit()
        and parts[1].isdigit()
        and 1 <= int(parts[1]) <= 12
    )
