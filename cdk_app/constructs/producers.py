"""Producers: the managed policy a service attaches to publish usage events (bus or queue), enforce
budgets and use the response cache — and the response cache table itself.

A producer is a trusted service acting for many tenants (it already publishes events for any user),
so the table statements are per table, not per tenant: a `dynamodb:LeadingKeys` condition needs the
tenant in the caller's identity, which a shared service role does not have.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.tables import table_from_spec
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.tables import TableSpec


class Producers(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        bus: events.EventBus,
        queue: sqs.Queue,
        settings_table: dynamodb.ITable,
        response_cache_spec: TableSpec,
    ) -> None:
        super().__init__(scope, construct_id)
        #: The opt-in response cache (`llmtally.response_cache`): per user, items expire by TTL.
        self.response_cache_table = table_from_spec(
            self, "ResponseCacheTable", response_cache_spec, retain=config.retain_data
        )
        self.policy = iam.ManagedPolicy(
            self,
            "PublishUsage",
            managed_policy_name=f"{config.prefix}-publish-usage",
            description="llmtally producers: publish usage events (bus or queue), budget checks and "
            "reservations, the response cache",
            statements=[
                iam.PolicyStatement(
                    sid="PutUsageEvents",
                    actions=["events:PutEvents"],
                    resources=[bus.event_bus_arn],
                    # Only usage events: a producer cannot forge another event type (a budget alert).
                    conditions={
                        "StringEquals": {"events:source": EVENT_SOURCE, "events:detail-type": EVENT_DETAIL_TYPE}
                    },
                ),
                iam.PolicyStatement(sid="SendUsageMessages", actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
                # The budget and the period's ledger (`llmtally.repositories.budgets`): read before a
                # call, and a strict caller's reservation and settlement (conditional UpdateItem).
                iam.PolicyStatement(
                    sid="EnforceBudgets",
                    actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                    resources=[settings_table.table_arn],
                ),
                iam.PolicyStatement(
                    sid="ResponseCache",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem"],
                    resources=[self.response_cache_table.table_arn],
                ),
            ],
        )
