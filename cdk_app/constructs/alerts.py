"""Budget alerts: the rule on the usage bus, the alert topic (e-mail), the notifier (Slack), the failure queue.

The aggregator publishes `BudgetThresholdCrossed` on the usage bus; the rule
(`llmtally.topology.alerts_topology`, as the local stack builds it) sends each alert to

- the alert topic (SNS, encrypted with its own key — EventBridge cannot publish to a topic under the
  AWS-managed SNS key), rendered by an input transformer from `llmtally.notify.EMAIL_TEMPLATE`;
  the `alertEmail` context subscribes one address;
- the notifier function, invoked asynchronously, which posts to the user's own Slack webhook (a
  secret it alone may read), and publishes the alert's e-mail text to the users' topic with the
  message attribute `user_id`: each user's address is subscribed there (by the API) with a filter
  policy on it, so it receives that user's alerts only (docs/budgets.md, "E-mail to the user").

What EventBridge cannot deliver after its retries, and what the notifier still fails after Lambda's
two retries, lands in one failure queue (alarmed in Monitoring).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.api import allow_secret_use
from cdk_app.constructs.bundling import NOTIFY_ASSET
from cdk_app.constructs.functions import LlmTallyFunction
from cdk_app.nag import acknowledge
from llmtally import topology as topo
from llmtally.notify import EMAIL_FIELDS, EMAIL_TEMPLATE

#: How long EventBridge and Lambda keep trying one alert (an alert is news for hours, not days).
ALERT_MAX_EVENT_AGE = Duration.hours(6)
#: EventBridge's attempts to reach a target (SNS, or Lambda's async queue) before the failure queue.
TARGET_RETRY_ATTEMPTS = 20


def webhook_secret_arn(config: AppConfig, *, as_nag_prints_it: bool = False) -> str:
    """Every user's Slack webhook secret (`{prefix}/users/{user}/alerts/slack-webhook`, plus AWS's
    six-character suffix); cdk-nag prints pseudo parameters in angle brackets."""
    partition, region, account = (
        ("<AWS::Partition>", "<AWS::Region>", "<AWS::AccountId>")
        if as_nag_prints_it
        else (Aws.PARTITION, Aws.REGION, Aws.ACCOUNT_ID)
    )
    name = config.names.slack_webhook_secret_name("USER").replace("USER", "*")
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????"


def email_message() -> events.RuleTargetInput:
    """`EMAIL_TEMPLATE` with each field taken from the event's detail (an input transformer)."""
    fields = {name: events.EventField.from_path(f"$.detail.{name}") for name in EMAIL_FIELDS}
    return events.RuleTargetInput.from_text(EMAIL_TEMPLATE.format(**fields))


class Alerts(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        bus: events.IEventBus,
        secrets_key: kms.IKey,
        settings_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        topology = topo.alerts_topology(names)

        self.key = kms.Key(
            self,
            "AlertsKey",
            alias=f"alias/{config.prefix}/budget-alerts",
            description="Encrypts the budget alert topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # EventBridge publishes to the encrypted topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, `*` is this key
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=topology.topic_name,
            display_name=f"llmtally budget alerts ({config.prefix})",
            master_key=self.key,
            enforce_ssl=True,
        )
        if config.alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))
        # Users' own alert e-mails: a topic apart from the operators' (EventBridge cannot set the
        # message attribute the users' filter policies match, and the operators would get each
        # alert twice); same key, TLS only.
        self.user_topic = sns.Topic(
            self,
            "UserTopic",
            topic_name=names.user_alerts_topic,
            display_name="llmtally alerts",
            master_key=self.key,
            enforce_ssl=True,
        )

        self.failures = sqs.Queue(
            self,
            "FailedAlerts",
            queue_name=names.alerts_failures,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(
            self.failures,
            "AwsSolutions-SQS3",
            "This queue is the alert rule targets' dead-letter queue and the notifier's on-failure destination.",
        )

        self.function = LlmTallyFunction(
            self,
            "NotifyFunction",
            config=config,
            name="notify",
            asset=NOTIFY_ASSET,
            description="Budget alerts → the user's Slack incoming webhook (if stored), once per alert",
            timeout=Duration.seconds(topo.NOTIFY_FUNCTION_TIMEOUT_SECONDS),
            memory_mb=256,
        )
        self.function.function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.failures),
            retry_attempts=topo.NOTIFY_MAX_RETRY_ATTEMPTS,
            max_event_age=ALERT_MAX_EVENT_AGE,
        )
        self.function.add_to_role(
            # Only the webhook secrets: never a provider key.
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[webhook_secret_arn(config)]),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[secrets_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
            ),
            # The delivery records (`llmtally.repositories.alert_deliveries`): one per alert and channel.
            iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:PutItem"], resources=[settings_table.table_arn]),
            # Each alert's e-mail onto the users' topic (encrypted: the publisher uses its key).
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.user_topic.topic_arn]),
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn]),
        )
        self.function.function.add_environment("LLMTALLY_USER_ALERTS_TOPIC_ARN", self.user_topic.topic_arn)
        allow_secret_use(
            secrets_key,
            "NotifierReadsSlackWebhooks",
            [self.function.role],
            ["kms:Decrypt"],
            webhook_secret_arn(config).removesuffix("??????") + "*",
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            "Users' Slack webhook secrets are named `{prefix}/users/{user_id}/alerts/slack-webhook` (one per "
            "user, created at run time, ARN suffixed by AWS): the resource is that pattern.",
            applies_to=[f"Resource::{webhook_secret_arn(config, as_nag_prints_it=True)}"],
        )

        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=topology.rule_name,
            event_bus=bus,
            description="Budget alerts (BudgetThresholdCrossed) to the alert topic and the Slack notifier",
            event_pattern=events.EventPattern(
                source=topology.rule_pattern["source"], detail_type=topology.rule_pattern["detail-type"]
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=email_message(),
                    dead_letter_queue=self.failures,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=ALERT_MAX_EVENT_AGE,
                ),
                targets.LambdaFunction(
                    self.function.function,
                    dead_letter_queue=self.failures,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=ALERT_MAX_EVENT_AGE,
                ),
            ],
        )

    def serve_user_emails(self, api: LlmTallyFunction) -> None:
        """The API subscribes a user's address to the users' topic (filtered on their id), reads
        whether it is confirmed, and removes it; it never publishes there."""
        api.function.add_environment("LLMTALLY_USER_ALERTS_TOPIC_ARN", self.user_topic.topic_arn)
        api.add_to_role(
            iam.PolicyStatement(actions=["sns:Subscribe"], resources=[self.user_topic.topic_arn]),
            iam.PolicyStatement(actions=["sns:Unsubscribe", "sns:GetSubscriptionAttributes"], resources=["*"]),
        )
        acknowledge(
            api.role,
            "AwsSolutions-IAM5",
            "sns:Unsubscribe and sns:GetSubscriptionAttributes act on a subscription ARN, which IAM does not "
            "scope (no resource type): the API calls them only with the subscription ARN it stored for the user.",
            applies_to=["Resource::*"],
        )
