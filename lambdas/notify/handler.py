"""EventBridge `BudgetThresholdCrossed` and `ReconciliationAlert` → the user's Slack webhook (`llmtally.notify`).

Invoked asynchronously by the alerts rule. A failure that a retry may fix (Slack 429/5xx, a timeout,
a storage error) raises: Lambda retries twice, then the event goes to the alerts failure queue. An
event that breaks the contract also raises, so it ends there too, for inspection. No webhook stored:
nothing to do. The webhook URL is never logged (only the outcome and the alert's id).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from llmtally import notify
from llmtally.budgets import ALERT_DETAIL_TYPE, ALERT_SOURCE
from llmtally.metric_names import ALERT_DELIVERIES_FAILED
from llmtally.observability import logger, metrics, tracer
from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE as RECONCILIATION_DETAIL_TYPE

_OUTCOME_METRICS = {
    "posted": "SlackAlertsPosted",
    "no_webhook": "AlertsWithoutWebhook",
    "duplicate": "AlertsDuplicate",
    "refused": "SlackAlertsRefused",
}


@cache
def notifier() -> notify.AlertNotifier:
    """One per process (clients are built lazily, on the first alert)."""
    return notify.AlertNotifier()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    if event.get("source") == ALERT_SOURCE and event.get("detail-type") == RECONCILIATION_DETAIL_TYPE:
        return _reconciliation(event)
    if event.get("source") != ALERT_SOURCE or event.get("detail-type") != ALERT_DETAIL_TYPE:
        metrics.add_metric(name="AlertEventsIgnored", unit=MetricUnit.Count, value=1)
        logger.warning("not a budget alert; ignored", extra={"detail_type": str(event.get("detail-type"))[:64]})
        return {"outcome": "ignored"}
    try:
        notice = notify.AlertEnvelope.model_validate(event).detail
    except ValidationError as exc:
        metrics.add_metric(name="AlertEventsInvalid", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=ALERT_DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)
        logger.error(
            "budget alert event breaks the contract; it goes to the failure queue",
            extra={"event_id": str(event.get("id"))[:64], "errors": exc.error_count()},
        )
        raise
    logger.append_keys(alert_id=notice.alert_id, user_id=notice.user_id)
    try:
        outcome = notifier().deliver(notice)
    except notify.SlackDeliveryError as exc:
        metrics.add_metric(name="SlackAlertsFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=ALERT_DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)
        logger.warning("Slack delivery failed; Lambda retries it", extra={"error": str(exc)})
        raise
    except Exception:
        # A storage error (the webhook secret, the delivery record): Lambda retries it too.
        metrics.add_metric(name=ALERT_DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name=_OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
    if outcome == "refused":
        metrics.add_metric(name=ALERT_DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)
    if outcome == "no_webhook":
        logger.info("no webhook: the user stored no Slack webhook; nothing to post")
    else:
        logger.info(f"budget alert {outcome}")
    # The user's own e-mail (after Slack: a retry of either is deduped by its delivery record).
    try:
        email = notifier().deliver_email(notice, event["detail"])
    except Exception:
        metrics.add_metric(name=ALERT_DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)
        raise
    if email == "sent":
        metrics.add_metric(name="AlertEmailsSent", unit=MetricUnit.Count, value=1)
        return {"outcome": outcome, "email": email}
    return {"outcome": outcome}


def _reconciliation(event: dict[str, Any]) -> dict[str, str]:
    """A `ReconciliationAlert` (docs/reconciliation.md): the same Slack delivery, deduped by `alert_id`."""
    try:
        notice = notify.ReconciliationEnvelope.model_validate(event).detail
    except ValidationError as exc:
        metrics.add_metric(name="AlertEventsInvalid", unit=MetricUnit.Count, value=1)
        logger.error(
            "reconciliation alert event breaks the contract; it goes to the failure queue",
            extra={"event_id": str(event.get("id"))[:64], "errors": exc.error_count()},
        )
        raise
    logger.append_keys(alert_id=notice.alert_id, user_id=notice.user_id)
    try:
        outcome = notifier().deliver_reconciliation(notice)
    except notify.SlackDeliveryError as exc:
        metrics.add_metric(name="SlackAlertsFailed", unit=MetricUnit.Count, value=1)
        logger.warning("Slack delivery failed; Lambda retries it", extra={"error": str(exc)})
        raise
    metrics.add_metric(name=_OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
    logger.info(f"reconciliation alert {outcome}")
    return {"outcome": outcome}


def reset() -> None:
    """Forget the cached notifier (tests, the local stack after a restart)."""
    notifier.cache_clear()
