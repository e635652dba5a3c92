"""The messaging topology as data: bus, rule, queues and the two event sources' settings, and the
budget alerts' rule and topic.

With `tables.py` this is the one source of truth the CDK app and the local stack are both built
from, so what runs on one machine is what deploys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from llmtally.budgets import ALERT_DETAIL_TYPE, ALERT_SOURCE
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.resources import ResourceNames

#: Lambda's SQS batch limit without a batching window is 10; the window lets Lambda fill a batch.
INGEST_BATCH_SIZE: Final = 10
INGEST_BATCH_WINDOW_SECONDS: Final = 1
#: Six times the function timeout, as AWS recommends for an SQS event source.
INGEST_FUNCTION_TIMEOUT_SECONDS: Final = 30
INGEST_VISIBILITY_TIMEOUT_SECONDS: Final = 6 * INGEST_FUNCTION_TIMEOUT_SECONDS
#: After this many receives a message goes to the dead-letter queue.
INGEST_MAX_RECEIVE_COUNT: Final = 5
DLQ_RETENTION_SECONDS: Final = 14 * 24 * 3600

#: Stream batches are coalesced into one delta per rollup key: larger batches mean fewer rollup
#: writes (`make bench`: 5,041 WCU per 1,000 events at 1,000 against 16,458 at 100; docs/pipeline.md).
#: The window bounds the wait for a full batch, and so the rollups' freshness.
AGGREGATE_BATCH_SIZE: Final = 1000
AGGREGATE_BATCH_WINDOW_SECONDS: Final = 5
AGGREGATE_MAX_RETRY_ATTEMPTS: Final = 10
AGGREGATE_FUNCTION_TIMEOUT_SECONDS: Final = 60


def ingest_rule_pattern() -> dict[str, Any]:
    """The rule that routes usage events from the bus to the ingest queue."""
    return {"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]}


def alerts_rule_pattern() -> dict[str, Any]:
    """The rule that routes budget alerts (published by the aggregator) to their deliveries."""
    return {"source": [ALERT_SOURCE], "detail-type": [ALERT_DETAIL_TYPE]}


def reconciliation_alerts_rule_pattern() -> dict[str, Any]:
    """The rule that routes reconciliation alerts (drift, unmetered spend) to their deliveries."""
    from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE as RECONCILIATION_DETAIL_TYPE

    return {"source": [EVENT_SOURCE], "detail-type": [RECONCILIATION_DETAIL_TYPE]}


#: The notifier is invoked asynchronously: Lambda tries an event three times (two retries).
NOTIFY_MAX_RETRY_ATTEMPTS: Final = 2
NOTIFY_FUNCTION_TIMEOUT_SECONDS: Final = 15


def stream_filter_pattern() -> dict[str, Any]:
    """Only INSERTs reach the aggregator: TTL deletions (REMOVE) and MODIFYs are filtered out."""
    return {"eventName": ["INSERT"]}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    visibility_timeout_seconds: int
    message_retention_seconds: int
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    bus_name: str
    rule_name: str
    rule_pattern: dict[str, Any]
    ingest_queue: QueueSpec
    ingest_dlq: QueueSpec


def topology(names: ResourceNames, *, visibility_timeout_seconds: int | None = None) -> Topology:
    """The bus → rule → queue (+ DLQ) wiring. The local stack may shorten the visibility timeout."""
    return Topology(
        bus_name=names.event_bus,
        rule_name=names.ingest_rule,
        rule_pattern=ingest_rule_pattern(),
        ingest_queue=QueueSpec(
            name=names.ingest_queue,
            visibility_timeout_seconds=visibility_timeout_seconds or INGEST_VISIBILITY_TIMEOUT_SECONDS,
            message_retention_seconds=4 * 24 * 3600,
            dead_letter_queue=names.ingest_dlq,
            max_receive_count=INGEST_MAX_RECEIVE_COUNT,
        ),
        ingest_dlq=QueueSpec(
            name=names.ingest_dlq,
            visibility_timeout_seconds=30,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
        ),
    )


@dataclass(frozen=True, slots=True)
class Provisioned:
    bus_name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


def provision_messaging(events_client: Any, sqs_client: Any, topo: Topology) -> Provisioned:
    """Create the bus, the queues with their redrive policy and the rule with its target (idempotent)."""
    dlq_url = sqs_client.create_queue(
        QueueName=topo.ingest_dlq.name,
        Attributes={
            "VisibilityTimeout": str(topo.ingest_dlq.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(topo.ingest_dlq.message_retention_seconds),
        },
    )["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = topo.ingest_queue
    queue_url = sqs_client.create_queue(
        QueueName=queue.name,
        Attributes={
            "VisibilityTimeout": str(queue.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(queue.message_retention_seconds),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count}),
        },
    )["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    existing = {bus["Name"] for bus in events_client.list_event_buses()["EventBuses"]}
    if topo.bus_name not in existing:
        events_client.create_event_bus(Name=topo.bus_name)
    events_client.put_rule(
        Name=topo.rule_name, EventBusName=topo.bus_name, EventPattern=json.dumps(topo.rule_pattern), State="ENABLED"
    )
    events_client.put_targets(
        Rule=topo.rule_name, EventBusName=topo.bus_name, Targets=[{"Id": "ingest-queue", "Arn": queue_arn}]
    )
    return Provisioned(topo.bus_name, queue_url, queue_arn, dlq_url, dlq_arn)


@dataclass(frozen=True, slots=True)
class AlertsTopology:
    """Budget alerts: a rule on the usage bus → the alert topic (e-mail) and the notifier (Slack).

    The local emulator delivers rule targets to SQS but not to SNS or Lambda, so locally the rule's
    target is `local_queue` (local only), which the local stack drains into the notifier's handler.
    """

    bus_name: str
    rule_name: str
    rule_pattern: dict[str, Any]
    topic_name: str
    local_queue: QueueSpec


def alerts_topology(names: ResourceNames) -> AlertsTopology:
    return AlertsTopology(
        bus_name=names.event_bus,
        rule_name=names.alerts_rule,
        rule_pattern=alerts_rule_pattern(),
        topic_name=names.alerts_topic,
        local_queue=QueueSpec(
            name=f"{names.alerts_rule}-local",
            visibility_timeout_seconds=NOTIFY_FUNCTION_TIMEOUT_SECONDS,
            message_retention_seconds=4 * 24 * 3600,
            dead_letter_queue=f"{names.alerts_rule}-local-dlq",
            max_receive_count=NOTIFY_MAX_RETRY_ATTEMPTS + 1,
        ),
    )


@dataclass(frozen=True, slots=True)
class ProvisionedAlerts:
    topic_arn: str
    queue_url: str
    queue_arn: str


def provision_alerts(events_client: Any, sns_client: Any, sqs_client: Any, topo: AlertsTopology) -> ProvisionedAlerts:
    """Create the alert topic, the local delivery queue (+ its DLQ) and the rule (idempotent; after the bus)."""
    topic_arn = sns_client.create_topic(Name=topo.topic_name)["TopicArn"]
    queue = topo.local_queue
    dlq_url = sqs_client.create_queue(
        QueueName=queue.dead_letter_queue or f"{queue.name}-dlq",
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs_client.create_queue(
        QueueName=queue.name,
        Attributes={
            "VisibilityTimeout": str(queue.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(queue.message_retention_seconds),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count}),
        },
    )["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events_client.put_rule(
        Name=topo.rule_name, EventBusName=topo.bus_name, EventPattern=json.dumps(topo.rule_pattern), State="ENABLED"
    )
    events_client.put_targets(
        Rule=topo.rule_name, EventBusName=topo.bus_name, Targets=[{"Id": "notify-local", "Arn": queue_arn}]
    )
    return ProvisionedAlerts(topic_arn, queue_url, queue_arn)


def provision_reconciliation_alerts(events_client: Any, names: ResourceNames, local_queue_arn: str) -> None:
    """Locally: route reconciliation alerts to the alerts' local queue (drained into the notifier), as the
    deployed rule routes them to the alert topic and the notifier (idempotent; after `provision_alerts`)."""
    events_client.put_rule(
        Name=names.reconciliation_alerts_rule,
        EventBusName=names.event_bus,
        EventPattern=json.dumps(reconciliation_alerts_rule_pattern()),
        State="ENABLED",
    )
    events_client.put_targets(
        Rule=names.reconciliation_alerts_rule,
        EventBusName=names.event_bus,
        Targets=[{"Id": "notify-local", "Arn": local_queue_arn}],
    )
