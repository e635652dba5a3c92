"""DynamoDB stream batch → `llmtally.aggregate`: one coalesced commit per record range.

Not Powertools' BatchProcessor: it handles records one by one, while the aggregator coalesces the
whole batch into one delta per rollup key and commits consecutive record ranges with a checkpoint.
On a failure the answer names the first uncommitted record (ReportBatchItemFailures), so Lambda
retries from there; records at or below a tenant's checkpoint are skipped on any retry.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llmtally import aggregate
from llmtally.budget_alerts import BudgetKeeper
from llmtally.metric_names import STREAM_BATCH_FAILURES
from llmtally.observability import logger, metrics, tracer


@cache
def budget_keeper() -> BudgetKeeper:
    """Built once per container (its repositories' clients are built on first use)."""
    return BudgetKeeper()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response, result = aggregate.handle_stream_event(event, budgets=budget_keeper())
    for name, value in (
        ("StreamRecordsApplied", result.applied),
        ("StreamRecordsSkipped", result.skipped),
        ("StreamRecordsIgnored", result.ignored),
        ("RollupTransactions", result.transactions),
        ("RollupItemsWritten", result.items_written),
        ("BudgetAlertsPublished", result.alerts),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if result.failed_sequence_number is not None:
        metrics.add_metric(name=STREAM_BATCH_FAILURES, unit=MetricUnit.Count, value=1)
        logger.warning(
            "aggregation stopped; Lambda retries from the first uncommitted record",
            extra={"sequence_number": result.failed_sequence_number, "error": result.error},
        )
    else:
        logger.debug("stream batch aggregated", extra={"records": result.records, "applied": result.applied})
    return dict(response)


#: The brief's name for it; the CDK app and the local stack use `lambda_handler`.
handler = lambda_handler
