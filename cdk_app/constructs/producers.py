"""Producers: the managed policies a service attaches to publish usage events (bus or queue),
enforce budgets and use the response cache — and, for services that build users' providers
(`llmtally.providers.provider_for_user`), read the users' provider keys. And the response cache table.

- `{prefix}-publish-usage` (`policy`, output `ProducerPolicyArn`): no secret. Budget checks read
  the settings table; a strict caller's reservation and settlement update the period's ledger
  item only in its ledger attributes (`LEDGER_ATTRIBUTES`, a `dynamodb:Attributes` condition): a
  producer cannot rewrite a budget's limit or action, a user's preferences or an alert record.
- `{prefix}-provider-keys` (`provider_keys_policy`, output `ProviderKeysPolicyArn`): `GetSecretValue`
  on `{prefix}/users/*/llm/*` only (never a Slack webhook or a billing key) and `kms:Decrypt` of the
  users' key through Secrets Manager. The key's own policy must also name the producer's role
  (context `producerRoleArns`, see `cdk_app.constructs.api`).

A producer is a trusted service acting for many tenants (it already publishes events for any user),
so the table statements are per table, not per tenant: a `dynamodb:LeadingKeys` condition needs the
tenant in the caller's identity, which a shared service role does not have. The ledger shares the
settings table with the budget (one user partition), so the restriction is by attribute, not by
item: docs/deploy.md ("IAM").
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.tables import table_from_spec
from cdk_app.nag import acknowledge
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.tables import TableSpec

#: What a reservation, a settlement and a ledger's first use name (`llmtally.repositories.budgets`:
#: `reserve`, `settle`, `_init_ledger`), with the table's key attributes.
LEDGER_ATTRIBUTES: Final = ("user_id", "setting_type", "holds", "outstanding_nanos", "spent_nanos", "expires_at")


def provider_key_arn(config: AppConfig, *, as_nag_prints_it: bool = False) -> str:
    """Every user's provider keys (`{prefix}/users/{user}/llm/{provider}` plus AWS's suffix)."""
    partition, region, account = (
        ("<AWS::Partition>", "<AWS::Region>", "<AWS::AccountId>")
        if as_nag_prints_it
        else (Aws.PARTITION, Aws.REGION, Aws.ACCOUNT_ID)
    )
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{config.names.secrets_prefix}*/llm/*"


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
        secrets_key: kms.IKey,
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
                # The budget, the period's ledger and the user's preferences, read before a call.
                iam.PolicyStatement(
                    sid="ReadBudgets", actions=["dynamodb:GetItem"], resources=[settings_table.table_arn]
                ),
                # A strict caller's reservation and settlement (conditional UpdateItem): ledger attributes only.
                iam.PolicyStatement(
                    sid="ReserveOnLedgers",
                    actions=["dynamodb:UpdateItem"],
                    resources=[settings_table.table_arn],
                    conditions={
                        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(LEDGER_ATTRIBUTES)},
                        "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE"]},
                    },
                ),
                iam.PolicyStatement(
                    sid="ResponseCache",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem"],
                    resources=[self.response_cache_table.table_arn],
                ),
            ],
        )
        self.provider_keys_policy = iam.ManagedPolicy(
            self,
            "ProviderKeys",
            managed_policy_name=f"{config.prefix}-provider-keys",
            description="llmtally producers that build users' providers (provider_for_user): read the users' "
            "provider keys, nothing else of Secrets Manager",
            statements=[
                iam.PolicyStatement(
                    sid="ReadProviderKeys",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[provider_key_arn(config)],
                ),
                iam.PolicyStatement(
                    sid="DecryptProviderKeys",
                    actions=["kms:Decrypt"],
                    resources=[secrets_key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
                ),
            ],
        )
        acknowledge(
            self.provider_keys_policy,
            "AwsSolutions-IAM5",
            "Users' provider keys are per user and provider under `{prefix}/users/*/llm/` (named at run time).",
            applies_to=[f"Resource::{provider_key_arn(config, as_nag_prints_it=True)}"],
        )
