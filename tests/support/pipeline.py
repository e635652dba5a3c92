"""The ingest route on the emulator, built like the CDK app builds it: bus → rule → queue (+ DLQ).

Everything goes through `llmtally.aws.client`, so it talks to whatever endpoint the settings name
(the `moto` fixture points them at the per-worker moto server).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmtally import aws
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.ingest import default_ingestor
from llmtally.resources import ResourceNames
from llmtally.tables import create_tables


@dataclass(frozen=True)
class IngestRoute:
    bus_name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


def create_ingest_route(
    names: ResourceNames, *, max_receive_count: int = 3, visibility_timeout: int = 30
) -> IngestRoute:
    sqs, events = aws.client("sqs"), aws.client("events")
    dlq_url = sqs.create_queue(QueueName=names.ingest_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=names.ingest_queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=names.event_bus)
    events.put_rule(
        Name=names.ingest_rule,
        EventBusName=names.event_bus,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]}),
        State="ENABLED",
    )
    events.put_targets(
        Rule=names.ingest_rule, EventBusName=names.event_bus, Targets=[{"Id": "ingest-queue", "Arn": queue_arn}]
    )
    return IngestRoute(names.event_bus, queue_url, queue_arn, dlq_url, dlq_arn)


def create_pipeline(names: ResourceNames | None = None) -> IngestRoute:
    """Every table (from `llmtally.tables`) and the ingest route."""
    names = names or ResourceNames()
    create_tables(aws.client("dynamodb"), names)
    return create_ingest_route(names)


def put_usage_events(
    bus_name: str,
    details: Iterable[Mapping[str, Any]],
    *,
    source: str = EVENT_SOURCE,
    detail_type: str = EVENT_DETAIL_TYPE,
) -> None:
    """Publish details on the bus (10 per call, EventBridge's limit), failing on any failed entry."""
    events = aws.client("events")
    batch: list[dict[str, Any]] = []
    for detail in [*details, None]:
        if detail is not None:
            batch.append(
                {"EventBusName": bus_name, "Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
            )
        if batch and (len(batch) == 10 or detail is None):
            response = events.put_events(Entries=batch)
            assert response["FailedEntryCount"] == 0, response
            batch = []


_DEFAULT_INGESTOR = default_ingestor


def reset_ingest_state() -> None:
    """Forget the process-wide ingestor (it caches per-tenant operation-type decisions, which a
    reset emulator no longer holds). Call before and after each test that runs the ingest handler."""
    _DEFAULT_INGESTOR.cache_clear()
