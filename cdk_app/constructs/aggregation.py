"""Aggregation: the usage table and its stream, the rollups table, the aggregate function.

The stream source only passes INSERTs (`llmtally.topology.stream_filter_pattern`), in batches of
`AGGREGATE_BATCH_SIZE` within `AGGREGATE_BATCH_WINDOW_SECONDS`; the function reports the first
uncommitted record on failure, and a batch that still fails after the retries is recorded (its
stream coordinates) in an on-failure queue.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.bundling import AGGREGATE_ASSET
from cdk_app.constructs.functions import LlmTallyFunction
from cdk_app.constructs.tables import table_from_spec
from cdk_app.nag import acknowledge
from llmtally import topology as topo
from llmtally.budgets import ALERT_DETAIL_TYPE, ALERT_SOURCE
from llmtally.tables import ROLLUPS, USAGE, TableSpec


class Aggregation(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, specs: dict[str, TableSpec]) -> None:
        super().__init__(scope, construct_id)
        self.usage_table = table_from_spec(self, "UsageTable", specs[USAGE], retain=config.retain_data)
        self.rollups_table = table_from_spec(self, "RollupsTable", specs[ROLLUPS], retain=config.retain_data)

        self.failures = sqs.Queue(
            self,
            "FailedBatches",
            queue_name=config.names.aggregate_failures,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(
            self.failures,
            "AwsSolutions-SQS3",
            "This queue is the stream source's on-failure destination, itself the dead-letter store.",
        )

        self.function = LlmTallyFunction(
            self,
            "AggregateFunction",
            config=config,
            name="aggregate",
            asset=AGGREGATE_ASSET,
            description="Usage stream (INSERTs) → coalesced rollup deltas, exactly once per shard checkpoint",
            timeout=Duration.seconds(topo.AGGREGATE_FUNCTION_TIMEOUT_SECONDS),
            memory_mb=1024,
        )
        self.function.function.add_event_source(
            sources.DynamoEventSource(
                self.usage_table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=topo.AGGREGATE_BATCH_SIZE,
                max_batching_window=Duration.seconds(topo.AGGREGATE_BATCH_WINDOW_SECONDS),
                retry_attempts=topo.AGGREGATE_MAX_RETRY_ATTEMPTS,
                report_batch_item_failures=True,
                bisect_batch_on_error=False,
                on_failure=sources.SqsDlq(self.failures),
                filters=[lambda_.FilterCriteria.filter(topo.stream_filter_pattern())],
            )
        )
        self.function.add_to_role(
            # Deltas and checkpoints in TransactWriteItems (an Update per item), the checkpoint reads
            # (BatchGetItem), a high-water mark read back after a refused condition (GetItem) — the
            # rollups table only.
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:BatchGetItem"],
                resources=[self.rollups_table.table_arn],
            )
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            "dynamodb:ListStreams (added by the stream event source) supports no resource-level permission; "
            "nor do X-Ray's PutTraceSegments/PutTelemetryRecords. Every other statement names its resource.",
            applies_to=["Resource::*"],
        )

    def evaluate_budgets(self, *, settings_table: dynamodb.ITable, bus: events.IEventBus) -> None:
        """After each commit the aggregator evaluates the tenants' budgets: the budget items and period
        ledgers (read, and updated in the rollup transaction), the alert records (written once, then
        queried and marked published, or removed again when the bus refused the event), a period's
        spend from the rollups, and the alert events on the usage bus — only `BudgetThresholdCrossed`
        from `llmtally`."""
        self.function.add_to_role(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    # `delete_unpublished_alert`: an alert whose event the bus refused fires again on retry.
                    "dynamodb:DeleteItem",
                ],
                resources=[settings_table.table_arn],
            ),
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.rollups_table.table_arn]),
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": ALERT_SOURCE, "events:detail-type": ALERT_DETAIL_TYPE}},
            ),
        )
