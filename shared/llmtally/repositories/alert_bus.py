"""Budget alerts onto the usage bus: one `PutEvents` entry per alert (detail-type `BudgetThresholdCrossed`)."""

from __future__ import annotations

import json
from typing import Any

from llmtally.budgets import ALERT_DETAIL_TYPE, ALERT_SOURCE, BudgetAlert
from llmtally.errors import StorageError
from llmtally.settings import Settings, get_settings


class AlertBus:
    """Publishes alerts to the EventBridge bus the deployment routes to SNS and the Slack notifier."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("events", self._settings)
        self.bus = self._settings.names.event_bus

    def publish(self, alert: BudgetAlert) -> None:
        """Put the alert on the bus; StorageError if EventBridge did not take it (the caller retries)."""
        from botocore.exceptions import BotoCoreError, ClientError

        entry = {
            "Source": ALERT_SOURCE,
            "DetailType": ALERT_DETAIL_TYPE,
            "Detail": json.dumps(alert.detail(), separators=(",", ":")),
            "EventBusName": self.bus,
            "Resources": [],
        }
        try:
            response = self._client.put_events(Entries=[entry])
        except ClientError as exc:
            raise StorageError(f"alert put_events failed: {exc.response['Error'].get('Code')}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"alert put_events failed: {type(exc).__name__}") from exc
        if response.get("FailedEntryCount"):
            code = (response.get("Entries") or [{}])[0].get("ErrorCode", "unknown")
            raise StorageError(f"alert put_events refused the entry: {code}")
