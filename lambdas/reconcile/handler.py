"""EventBridge Scheduler → the daily reconciliation (`llmtally.reconcile.job.ReconciliationJob`).

The schedule invokes this function once a day with an empty payload (or `{"start": "YYYY-MM-DD",
"end": "YYYY-MM-DD"}` for a backfill). The job replaces the window's rows, so a retry is safe; it
raises when a source failed for a reason a retry may fix (throttling, an outage), so the scheduler's
retry policy runs it again, then its dead-letter queue. A refused admin key is recorded on the
tenant's source status and is not retried. No admin key is ever logged.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llmtally.observability import logger, metrics, tracer
from llmtally.reconcile.job import ReconciliationJob


class RetryableRunError(Exception):
    """Some sources failed for a reason a retry may fix; the rows of the others are stored."""


@cache
def job() -> ReconciliationJob:
    return ReconciliationJob()


def _day(event: dict[str, Any], name: str) -> date | None:
    value = event.get(name)
    return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    outcome = job().run(start=_day(event, "start"), end=_day(event, "end"))
    metrics.add_metric(name="ReconciledSources", unit=MetricUnit.Count, value=len(outcome.sources))
    metrics.add_metric(name="ReconciliationAlerts", unit=MetricUnit.Count, value=len(outcome.alerts))
    metrics.add_metric(name="ReconciliationSourceFailures", unit=MetricUnit.Count, value=outcome.failures)
    summary = {
        "start": outcome.start.isoformat(),
        "end": outcome.end.isoformat(),
        "sources": len(outcome.sources),
        "rows": sum(s.rows for s in outcome.sources),
        "alerts": outcome.alerts,
        "failures": outcome.failures,
        "unattributed_bedrock_nanos": outcome.unattributed_nanos,
    }
    logger.info("reconciliation run", extra=summary)
    if outcome.retryable_failures:
        raise RetryableRunError(f"{outcome.retryable_failures} source(s) failed; the scheduler retries the run")
    return summary


def reset() -> None:
    job.cache_clear()
