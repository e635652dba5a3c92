"""Monitoring: alarms (DLQ depth, function errors and throttles, stream iterator age, rejects) to an
encrypted SNS topic, and one CloudWatch dashboard of the pipeline and the API.

The functions' own figures are Powertools EMF metrics in the `llmtally` namespace with the
`service` dimension (the deployment prefix): EventsStored, EventsRejected, EventsUnpriced, ….
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import METRICS_NAMESPACE, AppConfig
from cdk_app.constructs.functions import LlmTallyFunction

_PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        functions: Sequence[LlmTallyFunction],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        aggregate: LlmTallyFunction,
        http_api: apigw.HttpApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "AlarmsKey",
            alias=f"alias/{config.prefix}/alarms",
            description="Encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch alarms publish to the encrypted topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, `*` is this key
            )
        )
        self.topic = sns.Topic(
            self,
            "Alarms",
            topic_name=f"{config.prefix}-alarms",
            display_name=f"llmtally alarms ({config.prefix})",
            master_key=self.key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
            created = cloudwatch.Alarm(
                self,
                construct_id,
                alarm_name=f"{config.prefix}-{construct_id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            self.alarms.append(created)

        for name, queue in dead_letter_queues.items():
            alarm(
                f"{name}-depth",
                queue.metric_approximate_number_of_messages_visible(period=_PERIOD, statistic="Maximum"),
                0,
                f"Messages are waiting in {queue.node.path}: poison events or failed batches to inspect and redrive",
            )
        for fn in functions:
            short = fn.node.id.removesuffix("Function")
            alarm(
                f"{short}-errors",
                fn.function.metric_errors(period=_PERIOD, statistic="Sum"),
                0,
                f"{fn.node.path} reported errors (invocation failures, not rejected events)",
            )
            alarm(
                f"{short}-throttles",
                fn.function.metric_throttles(period=_PERIOD, statistic="Sum"),
                0,
                f"{fn.node.path} was throttled (account or reserved concurrency)",
            )
        iterator_age = aggregate.function.metric(
            "IteratorAge", period=Duration.minutes(1), statistic="Maximum", unit=cloudwatch.Unit.MILLISECONDS
        )
        alarm(
            "aggregate-iterator-age",
            iterator_age,
            config.iterator_age_alarm_seconds * 1000,
            "The usage stream's oldest unprocessed record is old: rollups are falling behind",
        )
        rejected = self._powertools_metric(config, "EventsRejected")
        alarm("ingest-rejects", rejected, 0, "Usage events were rejected (invalid, or too far in the past or future)")

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.prefix}-llmtally")
        pipeline = [
            self._powertools_metric(config, name)
            for name in ("EventsStored", "EventsDuplicate", "EventsRejected", "EventsUnpriced")
        ]
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Usage events", left=pipeline, width=12),
            cloudwatch.GraphWidget(
                title="Rollups",
                left=[self._powertools_metric(config, n) for n in ("StreamRecordsApplied", "RollupTransactions")],
                right=[iterator_age],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Function errors", left=[fn.function.metric_errors(period=_PERIOD) for fn in functions], width=8
            ),
            cloudwatch.GraphWidget(
                title="Function duration (p99)",
                left=[fn.function.metric_duration(period=_PERIOD, statistic="p99") for fn in functions],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queues",
                left=[
                    q.metric_approximate_number_of_messages_visible(period=_PERIOD) for q in dead_letter_queues.values()
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[
                    http_api.metric_count(period=_PERIOD),
                    http_api.metric_client_error(period=_PERIOD),
                    http_api.metric_server_error(period=_PERIOD),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency (p99)", left=[http_api.metric_latency(period=_PERIOD, statistic="p99")], width=12
            ),
        )

    @staticmethod
    def _powertools_metric(config: AppConfig, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": config.prefix},
            period=_PERIOD,
            statistic="Sum",
        )
