"""Reconciliation: the table, the daily function (its own least-privilege role), the schedule, its DLQ.

EventBridge Scheduler invokes the function once a day (06:00 UTC: the providers' previous day is in by
then) with a retry policy; what still fails lands in the failure queue (alarmed in Monitoring with the
function's errors). The function reads the tenants' admin keys (`{prefix}/users/*/billing/*` only),
the rollups, Cost Explorer (only with the `reconcileBedrock` context), writes its table and puts
`ReconciliationAlert` events on the usage bus; a rule sends them to the alert topic (e-mail) and to the
budget alerts' notifier (the user's Slack webhook).
"""

from __future__ import annotations

from aws_cdk import Aws, CfnElement, Duration, Stack, TimeZone
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.api import allow_secret_use
from cdk_app.constructs.bundling import PIPELINE_REQUIREMENTS, AssetSpec
from cdk_app.constructs.functions import LlmTallyFunction
from cdk_app.constructs.tables import table_from_spec
from cdk_app.nag import acknowledge
from llmtally.events import Provider
from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE, ALERT_SOURCE, EMAIL_FIELDS, EMAIL_TEMPLATE
from llmtally.tables import TableSpec
from llmtally.topology import reconciliation_alerts_rule_pattern

RECONCILE_ASSET = AssetSpec("reconcile", PIPELINE_REQUIREMENTS)
#: A run reads a few days of reports per tenant: minutes at most.
FUNCTION_TIMEOUT = Duration.minutes(10)
SCHEDULE = scheduler.ScheduleExpression.cron(minute="0", hour="6", time_zone=TimeZone.ETC_UTC)


def billing_secret_arn(config: AppConfig, *, as_nag_prints_it: bool = False) -> str:
    partition, region, account = (
        ("<AWS::Partition>", "<AWS::Region>", "<AWS::AccountId>")
        if as_nag_prints_it
        else (Aws.PARTITION, Aws.REGION, Aws.ACCOUNT_ID)
    )
    name = config.names.billing_secret_name("USER", Provider.OPENAI).replace("USER", "*").replace("/openai", "/*")
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????"


def bedrock_environment(scope: Construct) -> dict[str, str]:
    """The Bedrock source's settings from CDK context (`reconcileBedrock`, `reconcileBedrockTagKey`,
    `reconcileBedrockDefaultUser`), checked by `ReconcileSettings`; empty when Bedrock is not reconciled."""
    from llmtally.reconcile.job import ReconcileSettings

    enabled = scope.node.try_get_context("reconcileBedrock")
    if enabled not in (True, "true"):
        return {}
    tag_key = scope.node.try_get_context("reconcileBedrockTagKey")
    default_user = scope.node.try_get_context("reconcileBedrockDefaultUser")
    ReconcileSettings(bedrock_enabled=True, bedrock_tag_key=tag_key, bedrock_default_user=default_user)
    env = {"LLMTALLY_RECONCILE_BEDROCK_ENABLED": "true"}
    if tag_key:
        env["LLMTALLY_RECONCILE_BEDROCK_TAG_KEY"] = str(tag_key)
    if default_user:
        env["LLMTALLY_RECONCILE_BEDROCK_DEFAULT_USER"] = str(default_user)
    return env


class Reconciliation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        spec: TableSpec,
        rollups_table: dynamodb.ITable,
        bus: events.IEventBus,
        secrets_key: kms.IKey,
        alert_topic: sns.ITopic,
        notifier: lambda_.IFunction,
        api_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        self.table = table_from_spec(self, "Table", spec, retain=config.retain_data)

        self.failures = sqs.Queue(
            self,
            "Failures",
            queue_name=names.reconcile_failures,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(
            self.failures, "AwsSolutions-SQS3", "This queue is the reconciliation schedule's dead-letter queue."
        )

        self.function = LlmTallyFunction(
            self,
            "ReconcileFunction",
            config=config,
            name="reconcile",
            asset=RECONCILE_ASSET,
            description="Daily: metered spend against the providers' bills (usage and cost reports, Cost Explorer)",
            timeout=FUNCTION_TIMEOUT,
            memory_mb=512,
            environment=bedrock_environment(self),
        )
        self.function.add_to_role(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[self.table.table_arn],
            ),
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[rollups_table.table_arn]),
            # Only the admin keys: never a provider key or a webhook.
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[billing_secret_arn(config)]),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[secrets_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
            ),
            # Which tenants stored an admin key (by name prefix; the action has no resource scoping).
            iam.PolicyStatement(actions=["secretsmanager:ListSecrets"], resources=["*"]),
            # Reconciliation alerts only: the role cannot forge a usage event or a budget alert.
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": ALERT_SOURCE, "events:detail-type": ALERT_DETAIL_TYPE}},
            ),
        )
        if bedrock_environment(self):
            # The account's Bedrock bill (Cost Explorer has no resource-level permissions).
            self.function.add_to_role(iam.PolicyStatement(actions=["ce:GetCostAndUsage"], resources=["*"]))
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            "Admin keys are named `{prefix}/users/{user_id}/billing/{provider}` (created at run time, ARN suffixed "
            "by AWS); ListSecrets and Cost Explorer's GetCostAndUsage (with `reconcileBedrock`) support no "
            "resource-level permissions.",
            applies_to=[f"Resource::{billing_secret_arn(config, as_nag_prints_it=True)}", "Resource::*"],
        )
        # The key's side (its policy names each role that may use it): the admin keys' secrets only.
        allow_secret_use(
            secrets_key, "ReconcileReadsAdminKeys", [self.function.role], ["kms:Decrypt"], billing_secret_arn(config)
        )
        # The API reads the rows (Query) and the alert records of its tenants.
        api_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.table.table_arn])
        )

        function_resource = self.function.function.node.default_child
        assert isinstance(function_resource, CfnElement)
        schedule_role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description=f"{names.reconcile_schedule}: invokes the reconciliation function, sends failures to its DLQ",
        )
        acknowledge(
            schedule_role,
            "AwsSolutions-IAM5",
            "lambda:InvokeFunction on the reconciliation function and its versions (`:*`), as CDK grants it.",
            applies_to=[f"Resource::<{Stack.of(self).get_logical_id(function_resource)}.Arn>:*"],
        )
        self.schedule = scheduler.Schedule(
            self,
            "Daily",
            schedule_name=names.reconcile_schedule,
            description="Runs the daily reconciliation against the providers' bills",
            schedule=SCHEDULE,
            target=scheduler_targets.LambdaInvoke(
                self.function.function,
                role=schedule_role,
                dead_letter_queue=self.failures,
                max_event_age=Duration.hours(6),
                retry_attempts=3,
            ),
        )

        pattern = reconciliation_alerts_rule_pattern()
        self.rule = events.Rule(
            self,
            "AlertsRule",
            rule_name=names.reconciliation_alerts_rule,
            event_bus=bus,
            description="Reconciliation alerts (drift, unmetered spend) to the alert topic and the Slack notifier",
            event_pattern=events.EventPattern(source=pattern["source"], detail_type=pattern["detail-type"]),
            targets=[
                targets.SnsTopic(
                    alert_topic,
                    message=events.RuleTargetInput.from_text(
                        EMAIL_TEMPLATE.format(**{n: events.EventField.from_path(f"$.detail.{n}") for n in EMAIL_FIELDS})
                    ),
                    dead_letter_queue=self.failures,
                    retry_attempts=20,
                    max_event_age=Duration.hours(6),
                ),
                # The Slack notifier of budget alerts posts these too (deduped by alert id).
                targets.LambdaFunction(
                    notifier, dead_letter_queue=self.failures, retry_attempts=20, max_event_age=Duration.hours(6)
                ),
            ],
        )
