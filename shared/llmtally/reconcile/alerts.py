"""Reconciliation alerts: a day's drift or unmetered spend above its threshold, raised exactly once.

The `BudgetThresholdCrossed` pattern (`llmtally.budget_alerts`): the alert is recorded with
`attribute_not_exists` (one writer per `{user}:{provider}:{day}:{kind}`), then put on the usage bus
(detail-type `ReconciliationAlert`), then marked published. A record left unpublished (its writer
died, or the bus refused the event and the record could not be undone) is published again by a later
run once it is `REPUBLISH_AFTER` old, with the same `alert_id` — deliveries dedupe on it.

Kinds: `drift` — the day's difference not explained by unmetered spend (a price: the catalog or an
override is wrong) is above `Thresholds.drift_percent`; `unmetered` — spend no event explains is above
`Thresholds.unmetered_nanos`. Only settled days alert (a provisional day's bill is still arriving).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from llmtally.errors import LLMTallyError
from llmtally.events import EVENT_SOURCE
from llmtally.money import format_usd, nanos_to_usd
from llmtally.reconcile.core import DayTotals, ReconciliationRow, Thresholds, drift_alert_due, unmetered_alert_due

logger = logging.getLogger("llmtally.reconcile")

ALERT_SOURCE: Final = EVENT_SOURCE
ALERT_DETAIL_TYPE: Final = "ReconciliationAlert"
REPUBLISH_AFTER: Final = timedelta(minutes=2)
MAX_MODELS_IN_ALERT: Final = 5


class AlertKind(StrEnum):
    DRIFT = "drift"
    UNMETERED = "unmetered"


#: The e-mail (SNS) message, filled by EventBridge from the detail (an input transformer).
EMAIL_FIELDS: Final = ("message", "alert_id")
EMAIL_TEMPLATE: Final = "{message} Alert {alert_id}."


def alert_key(totals: DayTotals, kind: AlertKind) -> str:
    return f"{totals.day.isoformat()}#{totals.provider.value}#{kind.value}"


def alert_detail(
    user_id: str, totals: DayTotals, kind: AlertKind, rows: Sequence[ReconciliationRow], raised_at: datetime
) -> dict[str, Any]:
    """The event's detail: exact amounts as decimal strings, display amounts, and a one-line message."""
    mine = [r for r in rows if r.provider is totals.provider and r.day == totals.day]
    if kind is AlertKind.UNMETERED:
        mine.sort(key=lambda r: -r.unmetered_nanos)
        mine = [r for r in mine if r.unmetered_nanos > 0]
        amount = totals.unmetered_nanos
    else:
        mine.sort(key=lambda r: -abs(r.price_drift_nanos))
        mine = [r for r in mine if r.price_drift_nanos != 0]
        amount = totals.price_drift_nanos
    models = [
        {
            "model": r.model,
            "cause": r.cause.value,
            "drift_usd": str(nanos_to_usd(r.drift_nanos)),
            "unmetered_usd": str(nanos_to_usd(r.unmetered_nanos)),
            "price_kinds": [f.kind.value for f in r.price_feedback],
        }
        for r in mine[:MAX_MODELS_IN_ALERT]
    ]
    named = ", ".join(
        str(r.model) + (f" ({'/'.join(f.kind.value for f in r.price_feedback)} price)" if r.price_feedback else "")
        for r in mine[:MAX_MODELS_IN_ALERT]
    )
    what = "unmetered spend" if kind is AlertKind.UNMETERED else "price drift"
    pct = totals.price_drift_percent if kind is AlertKind.DRIFT else None
    message = (
        f"llmtally reconciliation: {user_id}'s {totals.provider.value} bill for {totals.day.isoformat()} is "
        f"{format_usd(totals.billed_nanos, 2)}, metered {format_usd(totals.metered_nanos, 2)}; "
        f"{what} {format_usd(amount, 2)}" + (f" ({pct}%)" if pct is not None else "") + (f" — {named}" if named else "")
    )
    return {
        "schema_version": 1,
        "alert_id": f"{user_id}:{totals.provider.value}:{totals.day.isoformat()}:{kind.value}",
        "user_id": user_id,
        "provider": totals.provider.value,
        "day": totals.day.isoformat(),
        "kind": kind.value,
        "billed_usd": str(nanos_to_usd(totals.billed_nanos)),
        "metered_usd": str(nanos_to_usd(totals.metered_nanos)),
        "drift_usd": str(nanos_to_usd(totals.drift_nanos)),
        "price_drift_usd": str(nanos_to_usd(totals.price_drift_nanos)),
        "price_drift_percent": None if totals.price_drift_percent is None else str(totals.price_drift_percent),
        "unmetered_usd": str(nanos_to_usd(totals.unmetered_nanos)),
        "amount_display": format_usd(amount, 2),
        "models": models,
        "message": message,
        "raised_at": raised_at.isoformat().replace("+00:00", "Z"),
    }


class ReconciliationAlerter:
    """Raises each due alert once (see the module docstring); `store` and `bus` are repositories."""

    def __init__(self, store: Any, bus: Any, thresholds: Thresholds) -> None:
        self._store = store
        self._bus = bus
        self._thresholds = thresholds

    def due(self, totals: DayTotals) -> list[AlertKind]:
        kinds = []
        if drift_alert_due(totals, self._thresholds):
            kinds.append(AlertKind.DRIFT)
        if unmetered_alert_due(totals, self._thresholds):
            kinds.append(AlertKind.UNMETERED)
        return kinds

    def raise_due(
        self, user_id: str, totals: Sequence[DayTotals], rows: Sequence[ReconciliationRow], now: datetime
    ) -> list[dict[str, Any]]:
        """Publish every due alert not raised before; returns the details published by this call."""
        published: list[dict[str, Any]] = []
        for day in totals:
            for kind in self.due(day):
                key = alert_key(day, kind)
                detail = alert_detail(user_id, day, kind, rows, now)
                if not self._store.record_alert(user_id, key, detail, raised_at=now):
                    found = self._store.get_alert(user_id, key)
                    if found is None:
                        continue
                    detail, raised_at, was_published = found
                    if was_published or now - raised_at < REPUBLISH_AFTER:
                        continue
                try:
                    self._bus.publish(ALERT_SOURCE, ALERT_DETAIL_TYPE, detail)
                except LLMTallyError:
                    self._store.delete_unpublished_alert(user_id, key)
                    raise
                self._store.mark_published(user_id, key)
                published.append(detail)
                logger.warning(
                    detail["message"],
                    extra={"user_id": user_id, "alert_id": detail["alert_id"], "kind": kind.value},
                )
        return published
