"""Ingestion: the bus, its rule and archive, the ingest queue (+DLQ), the ingest function, the rejects store.

Names, the rule pattern, the queue's visibility timeout and redrive, and the event source's batch
settings all come from `llmtally.topology` and `llmtally.tables`, as the local stack's do.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.bundling import INGEST_ASSET
from cdk_app.constructs.functions import LlmTallyFunction
from cdk_app.constructs.tables import table_from_spec
from cdk_app.nag import acknowledge
from llmtally import topology as topo
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.tables import TableSpec


def queue_from_spec(
    scope: Construct, construct_id: str, spec: topo.QueueSpec, dead_letter: sqs.IQueue | None = None
) -> sqs.Queue:
    """SSE (SQS-managed keys), TLS enforced by the queue policy, the spec's timeouts and redrive."""
    return sqs.Queue(
        scope,
        construct_id,
        queue_name=spec.name,
        visibility_timeout=Duration.seconds(spec.visibility_timeout_seconds),
        retention_period=Duration.seconds(spec.message_retention_seconds),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        dead_letter_queue=(
            sqs.DeadLetterQueue(queue=dead_letter, max_receive_count=spec.max_receive_count)
            if dead_letter is not None and spec.max_receive_count is not None
            else None
        ),
    )


class Ingestion(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        usage_table: dynamodb.Table,
        settings_table: dynamodb.Table,
        rejects_spec: TableSpec,
    ) -> None:
        super().__init__(scope, construct_id)
        topology = topo.topology(config.names)

        self.bus = events.EventBus(self, "Bus", event_bus_name=topology.bus_name)
        self.archive = self.bus.archive(
            "Archive",
            archive_name=f"{config.prefix}-llm-usage",
            description="Every usage event, for replay through the rule (ingest dedupes redelivered events)",
            # Usage events only: a replay must not send budget alerts again.
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[EVENT_DETAIL_TYPE]),
            retention=Duration.days(config.archive_retention_days) if config.archive_retention_days else None,
        )

        self.dlq = queue_from_spec(self, "DeadLetterQueue", topology.ingest_dlq)
        acknowledge(self.dlq, "AwsSolutions-SQS3", "This queue is the ingest queue's dead-letter queue.")
        self.queue = queue_from_spec(self, "Queue", topology.ingest_queue, dead_letter=self.dlq)

        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=topology.rule_name,
            event_bus=self.bus,
            description="Usage events (source and detail-type of contract v1) to the ingest queue",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[EVENT_DETAIL_TYPE]),
            # Events EventBridge cannot deliver (after its retries) land in the DLQ too.
            targets=[targets.SqsQueue(self.queue, dead_letter_queue=self.dlq, retry_attempts=185)],
        )

        self.rejects_table = table_from_spec(self, "RejectsTable", rejects_spec, retain=config.retain_data)

        self.function = LlmTallyFunction(
            self,
            "IngestFunction",
            config=config,
            name="ingest",
            asset=INGEST_ASSET,
            description="SQS batch → validate, price, dedupe, store raw usage entries (rejects kept apart)",
            timeout=Duration.seconds(topo.INGEST_FUNCTION_TIMEOUT_SECONDS),
            memory_mb=512,
        )
        self.function.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=topo.INGEST_BATCH_SIZE,
                max_batching_window=Duration.seconds(topo.INGEST_BATCH_WINDOW_SECONDS),
                report_batch_item_failures=True,
                # With a reservation, poll no more batches at once than the function may run: messages
                # polled beyond it would be throttled back to the queue and count towards the DLQ.
                max_concurrency=self.function.reserved_concurrency or None,
            )
        )
        self.function.add_to_role(
            # Conditional put of a raw entry (dedupe) and the read-back of a duplicate.
            iam.PolicyStatement(actions=["dynamodb:PutItem", "dynamodb:GetItem"], resources=[usage_table.table_arn]),
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[self.rejects_table.table_arn]),
            # The per-tenant operation-type registry lives in the settings table.
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[settings_table.table_arn]
            ),
        )
