"""Producers: the managed policy a service attaches to publish usage events (bus or queue)."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from llmtally.events import EVENT_SOURCE


class Producers(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, bus: events.EventBus, queue: sqs.Queue
    ) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.ManagedPolicy(
            self,
            "PublishUsage",
            managed_policy_name=f"{config.prefix}-publish-usage",
            description="Publish llmtally usage events: PutEvents on the usage bus, or SendMessage on the ingest queue",
            statements=[
                iam.PolicyStatement(
                    sid="PutUsageEvents",
                    actions=["events:PutEvents"],
                    resources=[bus.event_bus_arn],
                    # Only events of the usage contract's source.
                    conditions={"StringEquals": {"events:source": EVENT_SOURCE}},
                ),
                iam.PolicyStatement(sid="SendUsageMessages", actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
            ],
        )
