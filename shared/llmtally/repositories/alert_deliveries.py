"""Which budget alerts were delivered where: the notifier's dedupe records, in the settings table.

Item: `user_id`, `setting_type` = `alert_delivery#{channel}#{period}#{percent:04d}` (one per alert —
`BudgetAlert.alert_id` is `{user}:{period}:{percent}` — and channel), `delivered_at`, `expires_at`
(TTL, a year and a month on: an alert never repeats after its period). Reconciliation alerts are
recorded by their id: `alert_delivery#{channel}#id#{alert_id}`.

The notifier reads the record before it posts and writes it after, so a repeated event is dropped
once a delivery succeeded; two deliveries of one event racing each other may both post (rare, and a
repeat is harmless — a lost alert is not).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from llmtally.events import format_timestamp
from llmtally.repositories.settings import SettingsRepository

DELIVERY_PREFIX: Final = "alert_delivery#"
DELIVERY_TTL_S: Final = 400 * 86_400


def delivery_sort_key(channel: str, period: str, percent: int) -> str:
    return f"{DELIVERY_PREFIX}{channel}#{period}#{percent:04d}"


class AlertDeliveryRepository(SettingsRepository):
    """The delivery records of the settings table (same table and client handling as `SettingsRepository`)."""

    def was_delivered(self, user_id: str, period: str, percent: int, channel: str) -> bool:
        return self._get(user_id, delivery_sort_key(channel, period, percent)) is not None

    def mark_delivered(self, user_id: str, period: str, percent: int, channel: str) -> None:
        item = {
            "user_id": user_id,
            "setting_type": delivery_sort_key(channel, period, percent),
            "delivered_at": format_timestamp(datetime.now(UTC)),
            "expires_at": int(time.time()) + DELIVERY_TTL_S,
        }
        self._call("put_item", TableName=self._table, Item=self._serialize(item))

    # -- alerts keyed by their id (reconciliation alerts: `{user}:{provider}:{day}:{kind}`) -------------

    def was_delivered_id(self, user_id: str, alert_id: str, channel: str) -> bool:
        return self._get(user_id, f"{DELIVERY_PREFIX}{channel}#id#{alert_id}") is not None

    def mark_delivered_id(self, user_id: str, alert_id: str, channel: str) -> None:
        item = {
            "user_id": user_id,
            "setting_type": f"{DELIVERY_PREFIX}{channel}#id#{alert_id}",
            "delivered_at": format_timestamp(datetime.now(UTC)),
            "expires_at": int(time.time()) + DELIVERY_TTL_S,
        }
        self._call("put_item", TableName=self._table, Item=self._serialize(item))
