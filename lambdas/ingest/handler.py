"""SQS batch → `llmtally.ingest`: partial batch responses, so one bad or failing message never
holds back the others. Invalid events are consumed (recorded as rejects by the library); a
transient failure raises, the message is reported in `batchItemFailures`, and SQS redelivers it.
"""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from llmtally import ingest
from llmtally.metric_names import EVENTS_REJECTED, EVENTS_TRANSIENT_FAILURE
from llmtally.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)

_OUTCOME_METRICS = {"stored": "EventsStored", "duplicate": "EventsDuplicate", "rejected": EVENTS_REJECTED}


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    logger.append_keys(message_id=record.message_id, receive_count=record.attributes.approximate_receive_count)
    try:
        outcome = ingest.default_ingestor().ingest(record.body, message_id=record.message_id)
    except Exception:
        metrics.add_metric(name=EVENTS_TRANSIENT_FAILURE, unit=MetricUnit.Count, value=1)
        logger.exception("ingest failed; the message will be redelivered")
        raise
    finally:
        logger.remove_keys(["message_id", "receive_count"])
    metrics.add_metric(name=_OUTCOME_METRICS[outcome.status], unit=MetricUnit.Count, value=1)
    context = {"message_id": outcome.message_id, "event_id": outcome.event_id, "user_id": outcome.user_id}
    if outcome.status == "rejected":
        logger.warning(
            "usage event rejected",
            extra={**context, "reason": outcome.reason, "reason_message": outcome.reason_message},
        )
        return
    if outcome.cost_source == "unpriced":
        metrics.add_metric(name="EventsUnpriced", unit=MetricUnit.Count, value=1)
    # Folds are counted once per event: a redelivery (duplicate) folds the same way but is not new.
    if outcome.operation_folded and outcome.status == "stored":
        metrics.add_metric(name="OperationTypesFolded", unit=MetricUnit.Count, value=1)
    if outcome.model_folded and outcome.status == "stored":
        metrics.add_metric(name="ModelsFolded", unit=MetricUnit.Count, value=1)
    logger.debug(f"usage event {outcome.status}", extra=context)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="MessagesReceived", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return cast(dict[str, Any], response)
