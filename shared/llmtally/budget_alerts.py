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

Tag budgets (`customer=c-42` at $50 a month) are kept after the commits, not inside the
transactions: for every tag budget whose tag a record of the batch carries (skipped records
included), the tag value's period total is read from the rollups (consistent reads, after this
batch's commits: exact) and SET on its ledger, then its thresholds fire like the tenant budget's,
through the same alert records. Setting a total read from the rollups is idempotent, so a retry
re-does it harmlessly; it adds no item to the rollup transactions (their 100-item bound stays the
rollups'), and costs one read of the value's month per tag budget per batch that carries the tag.

Strict tag budgets: right after SETting a tag ledger's spend (which now includes the batch's
events), the holds named by the batch's events (`TAG_HOLD_METADATA`, skipped records included) are
released from the ledger of the period they were taken in, by conditional REMOVEs keyed by their
ids (`BudgetRepository.release_rolled_holds`): each amount leaves `outstanding` exactly once,
after it entered `spent` (between the two it counts twice: conservative, never an overshoot). A
failed release fails the batch like a failed alert, and the retry releases what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from llmtally.budgets import (
    STRICT_PERIOD_METADATA,
    TAG_HOLD_METADATA,
    Budget,
    BudgetAlert,
    Period,
    TagScope,
    crossed_thresholds,
    parse_tag_hold,
    period_by_key,
    period_of,
)
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


def tag_period_total_nanos(repository: Any, user_id: str, tag: TagScope, start: datetime, end: datetime) -> int:
    """The exact cost in [start, end) of the calls tagged `tag` (the rollups' tag dimension, consistent reads)."""
    from llmtally.queries import tag_value_total_nanos

    return tag_value_total_nanos(user_id, tag.key, tag.value, start, end, repository=repository, consistent=True)


TagTotal = Callable[[Any, str, TagScope, datetime, datetime], int]


@dataclass(slots=True)
class _Tenant:
    budget: Budget
    period: Period
    spent_nanos: int | None = None


@dataclass(slots=True)
class _TagBudget:
    tag: TagScope
    budget: Budget
    period: Period
    #: Strict holds named by the batch's events carrying this tag: hold id → when it was taken.
    holds: dict[str, int] = field(default_factory=dict)

    def holds_by_period(self) -> dict[str, list[str]]:
        """The holds to release, by the ledger period (in the budget's zone) they were taken in."""
        found: dict[str, list[str]] = {}
        for hold_id, at in sorted(self.holds.items()):
            key = period_of(datetime.fromtimestamp(at, UTC), self.budget.timezone).key
            found.setdefault(key, []).append(hold_id)
        return found


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
        tag_total: TagTotal = tag_period_total_nanos,
    ) -> None:
        self._budgets = budgets
        self._bus = bus
        self._rollups = rollups
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tag_total = tag_total
        self._tenants: dict[str, _Tenant] = {}
        #: Per tenant, the tag budgets a record of the batch is tagged for.
        self._tagged: dict[str, list[_TagBudget]] = {}

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

    def begin(self, user_ids: Iterable[str], rollups: Any, *, entries: Iterable[RollupSource] = ()) -> None:
        """Load the batch's tenants' budgets (one BatchGetItem), and, for the tenants of `entries`
        (the batch's records) that carry tags, their tag budgets (one Query per such tenant)."""
        self._rollups = rollups
        now = self._clock()
        self._tenants = {
            user: _Tenant(budget, budget.period(now)) for user, budget in self.budgets.get_budgets(user_ids).items()
        }
        seen: dict[str, set[tuple[str, str]]] = {}
        held: dict[tuple[str, str, str], dict[str, int]] = {}
        for entry in entries:
            tags = getattr(entry, "tags", None) or {}
            if tags:
                seen.setdefault(entry.user_id, set()).update(tags.items())
                hold = parse_tag_hold((getattr(entry, "metadata", None) or {}).get(TAG_HOLD_METADATA))
                if hold is not None:
                    for key, value in tags.items():
                        held.setdefault((entry.user_id, key, value), {})[hold[0]] = hold[1]
        self._tagged = {}
        for user_id in sorted(seen):
            mine = [
                _TagBudget(tag, budget, budget.period(now), held.get((user_id, tag.key, tag.value), {}))
                for tag, budget in self.budgets.list_tag_budgets(user_id)
                if (tag.key, tag.value) in seen[user_id]
            ]
            if mine:
                self._tagged[user_id] = mine

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
            tagged = self._tagged.get(user_id, [])
            if tenant is None and not tagged:
                continue
            try:
                if tenant is not None:
                    self._evaluate(user_id, tenant.budget, tenant.period, None, now, outcome)
                for scoped in tagged:
                    spent = self._tag_total(
                        self._rollups, user_id, scoped.tag, scoped.period.start_utc, scoped.period.end_utc
                    )
                    self.budgets.seed_spent(user_id, scoped.period, spent, tag=scoped.tag)
                    # now that `spent` holds the batch's events, their strict holds leave `outstanding`
                    for period_key, hold_ids in scoped.holds_by_period().items():
                        self.budgets.release_rolled_holds(user_id, period_key, scoped.tag, hold_ids)
                    self._evaluate(user_id, scoped.budget, scoped.period, scoped.tag, now, outcome)
            except LLMTallyError as exc:
                outcome.failed.append(user_id)
                logger.warning(
                    "budget alert delivery failed; the batch is retried", extra={"user_id": user_id, "error": str(exc)}
                )
        return outcome

    def _evaluate(
        self,
        user_id: str,
        budget: Budget,
        period: Period,
        tag: TagScope | None,
        now: datetime,
        outcome: AlertOutcome,
    ) -> None:
        ledger = self.budgets.get_ledger(user_id, period.key, tag=tag)
        if not ledger.has_spent:
            return
        for percent in crossed_thresholds(budget, ledger.spent_nanos):
            if percent in ledger.alerted:
                continue
            alert = BudgetAlert(
                user_id=user_id,
                period=period.key,
                timezone=budget.timezone,
                threshold_percent=percent,
                limit_nanos=budget.limit_nanos,
                spent_nanos=ledger.spent_nanos,
                action=budget.action,
                crossed_at=now,
                tag=tag,
            )
            if not self.budgets.record_alert(alert, period_end=period.end_utc):
                found = self.budgets.get_alert(user_id, period.key, percent, tag=tag)
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
                "budget threshold crossed: %s%% of %s's %s %s",
                percent,
                user_id,
                alert.period,
                alert.budget_label,
                extra={
                    "user_id": user_id,
                    "tag": None if tag is None else tag.label,
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
