"""Monitoring: alarms to an encrypted SNS topic, and one CloudWatch dashboard of the pipeline and the API.

Alarms: DLQ depth, function errors and throttles, stream iterator age, rejects — and the failures a
function handles itself, which Lambda never counts as errors (`HANDLED_FAILURE_ALARMS`): the API's
5xx answers (a storage failure is a 503 from a successful invocation; the HTTP API's own `5xx` and
`Count` metrics, as a rate), ingest's transient failures (a message reported in
`batchItemFailures`), aggregate's failed stream batches (a partial batch response), and budget
alerts the notifier could not deliver.

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
from llmtally import metric_names as names

_PERIOD = Duration.minutes(5)

#: The EMF metric each handled-failure alarm watches (`lambdas/*/handler.py` emits it), and how many
#: consecutive 5-minute periods must hold one before it fires: a transient failure is retried (SQS
#: redelivery, the stream's retries), so one bad period is noise and the DLQ alarms catch what is
#: lost; two in a row is an outage. A failed alert delivery is a user not told: one is enough.
HANDLED_FAILURE_ALARMS: dict[str, tuple[str, int, str]] = {
    "ingest-transient-failures": (
        names.EVENTS_TRANSIENT_FAILURE,
        2,
        "Ingest failed on usage events for 10 minutes (storage errors or throttling): SQS redelivers them, "
        "the DLQ alarm fires for those that run out of receives",
    ),
    "aggregate-batch-failures": (
        names.STREAM_BATCH_FAILURES,
        2,
        "Aggregation stopped on stream batches for 10 minutes (a failed rollup commit, checkpoint or budget read, "
        "or a budget alert not published): Lambda retries from the first uncommitted record",
    ),
    "http-ingest-bus-refused": (
        names.HTTP_INGEST_BUS_REFUSED,
        2,
        "The usage bus refused events posted to the HTTP ingest routes for 10 minutes (PutEvents throttled or "
        "failing after retries): the callers were answered retryable or 503 and must resend",
    ),
    "alert-delivery-failures": (
        names.ALERT_DELIVERIES_FAILED,
        1,
        "A budget alert was not delivered to a user's Slack webhook (refused for good, or failed and retried)",
    ),
}
#: The math of the API 5xx rate alarm: percent of requests answered 5xx in a period, 0 below the
#: minimum number of requests (a single 503 among three requests is not an outage).
API_ERROR_RATE_EXPRESSION = "IF(requests >= {min_requests}, 100 * FILL(errors, 0) / requests, 0)"


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
        alert_topic: sns.ITopic | None = None,
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

        def alarm(
            construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str, periods: int = 1
        ) -> None:
            created = cloudwatch.Alarm(
                self,
                construct_id,
                alarm_name=f"{config.prefix}-{construct_id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
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
        rejected = self._powertools_metric(config, names.EVENTS_REJECTED)
        alarm("ingest-rejects", rejected, 0, "Usage events were rejected (invalid, or too far in the past or future)")
        for alarm_id, (metric_name, periods, description) in HANDLED_FAILURE_ALARMS.items():
            alarm(alarm_id, self._powertools_metric(config, metric_name), 0, description, periods)
        self.api_error_rate = cloudwatch.MathExpression(
            expression=API_ERROR_RATE_EXPRESSION.format(min_requests=config.api_error_rate_min_requests),
            using_metrics={
                "requests": http_api.metric_count(period=_PERIOD, statistic="Sum"),
                "errors": http_api.metric_server_error(period=_PERIOD, statistic="Sum"),
            },
            label="API 5xx (% of requests)",
            period=_PERIOD,
        )
        alarm(
            "api-5xx-rate",
            self.api_error_rate,
            config.api_error_rate_alarm_percent,
            f"More than {config.api_error_rate_alarm_percent} % of API requests were answered 5xx in 5 minutes "
            f"(with at least {config.api_error_rate_min_requests} requests): storage failures the function answers "
            "503, integration errors and timeouts — none of them a Lambda error",
        )
        if alert_topic is not None:
            # The e-mail half of alert delivery: SNS's own count of notifications it gave up on.
            alarm(
                "alert-email-failures",
                alert_topic.metric_number_of_notifications_failed(period=_PERIOD, statistic="Sum"),
                0,
                "The budget alert topic failed to deliver notifications to a subscription (e-mail or other)",
            )

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
        handled: list[cloudwatch.IMetric] = [
            self._powertools_metric(config, name)
            for name in (*(metric for metric, _, _ in HANDLED_FAILURE_ALARMS.values()), names.API_SERVER_ERRORS)
        ]
        if alert_topic is not None:
            handled.append(alert_topic.metric_number_of_notifications_failed(period=_PERIOD, statistic="Sum"))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Handled failures (not Lambda errors)", left=handled, right=[self.api_error_rate], width=24
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
