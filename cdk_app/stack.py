"""The llmtally stack: composes one construct per capability; the outputs a deployer needs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack, Tags
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.aggregation import Aggregation
from cdk_app.constructs.alerts import Alerts
from cdk_app.constructs.api import OAUTH_SCOPES, Api
from cdk_app.constructs.hosting import Hosting
from cdk_app.constructs.ingestion import Ingestion
from cdk_app.constructs.monitoring import Monitoring
from cdk_app.constructs.producers import Producers
from cdk_app.constructs.reconciliation import Reconciliation
from llmtally.tables import RECONCILIATION, REJECTS, RESPONSE_CACHE, table_specs

#: The stack's outputs, by name (docs/deploy.md, tests/infra).
OUTPUTS = (
    "ApiUrl",
    "DashboardUrl",
    "EventBusName",
    "EventBusArn",
    "IngestQueueUrl",
    "ProducerPolicyArn",
    "ProviderKeysPolicyArn",
    "UserPoolId",
    "UserPoolClientId",
    "HostedUiUrl",
    "AlarmTopicArn",
    "AlertTopicArn",
)


class LlmTallyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any) -> None:
        super().__init__(
            scope, construct_id, description="llmtally: LLM usage metering (pipeline, API, dashboard)", **kwargs
        )
        Tags.of(self).add("llmtally:prefix", config.prefix)
        Tags.of(self).add("llmtally:stage", config.stage)
        specs = table_specs(config.names)

        hosting = Hosting(self, "Hosting", config=config)
        aggregation = Aggregation(self, "Aggregation", config=config, specs=specs)
        api = Api(
            self,
            "Api",
            config=config,
            specs=specs,
            usage_table=aggregation.usage_table,
            rollups_table=aggregation.rollups_table,
            dashboard_origin=hosting.origin,
        )
        ingestion = Ingestion(
            self,
            "Ingestion",
            config=config,
            usage_table=aggregation.usage_table,
            settings_table=api.settings_table,
            rejects_spec=specs[REJECTS],
        )
        aggregation.evaluate_budgets(settings_table=api.settings_table, bus=ingestion.bus)
        api.publish_http_ingest(usage_table=aggregation.usage_table, bus=ingestion.bus)
        alerts = Alerts(
            self,
            "Alerts",
            config=config,
            bus=ingestion.bus,
            secrets_key=api.secrets_key,
            settings_table=api.settings_table,
        )
        alerts.serve_user_emails(api.function)
        producers = Producers(
            self,
            "Producers",
            config=config,
            bus=ingestion.bus,
            queue=ingestion.queue,
            settings_table=api.settings_table,
            secrets_key=api.secrets_key,
            response_cache_spec=specs[RESPONSE_CACHE],
        )
        hosting.deploy_site(
            {
                "apiBaseUrl": api.api_url,
                "mode": "aws",
                "userId": "",
                "auth": {
                    "type": "cognito",
                    "domain": api.hosted_ui_url,
                    "clientId": api.user_pool_client.user_pool_client_id,
                    "scopes": list(OAUTH_SCOPES),
                },
                "region": Aws.REGION,
                "userPoolId": api.user_pool.user_pool_id,
            }
        )
        reconciliation = Reconciliation(
            self,
            "Reconciliation",
            config=config,
            spec=specs[RECONCILIATION],
            rollups_table=aggregation.rollups_table,
            bus=ingestion.bus,
            secrets_key=api.secrets_key,
            alert_topic=alerts.topic,
            notifier=alerts.function.function,
            api_role=api.function.role,
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            functions=[
                ingestion.function,
                aggregation.function,
                api.function,
                api.connection_test,
                alerts.function,
                reconciliation.function,
            ],
            dead_letter_queues={
                "ingest-dlq": ingestion.dlq,
                "aggregate-failures": aggregation.failures,
                "budget-alerts-failures": alerts.failures,
                "reconcile-failures": reconciliation.failures,
            },
            aggregate=aggregation.function,
            http_api=api.http_api,
            alert_topic=alerts.topic,
        )

        def output(name: str, value: str, description: str, *, export: bool = False) -> None:
            CfnOutput(
                self,
                name,
                value=value,
                description=description,
                export_name=f"{config.prefix}-{name}" if export else None,
            )

        output("ApiUrl", api.api_url, "The HTTP API's base URL (routes under /api/)")
        output("DashboardUrl", hosting.origin, "The dashboard (sign in with a Cognito user)")
        output("EventBusName", ingestion.bus.event_bus_name, "Publish usage events here", export=True)
        output("EventBusArn", ingestion.bus.event_bus_arn, "The usage event bus", export=True)
        output("IngestQueueUrl", ingestion.queue.queue_url, "Or send usage events to this queue")
        output(
            "ProducerPolicyArn",
            producers.policy.managed_policy_arn,
            "Attach to a producer's role: publish usage (bus or queue), budgets, the response cache",
            export=True,
        )
        output(
            "ProviderKeysPolicyArn",
            producers.provider_keys_policy.managed_policy_arn,
            "Also attach to a producer role that calls provider_for_user (reads users' provider keys; list the "
            "role in producerRoleArns)",
        )
        output("UserPoolId", api.user_pool.user_pool_id, "Create users here (admin-create-user)")
        output("UserPoolClientId", api.user_pool_client.user_pool_client_id, "The dashboard's app client")
        output("HostedUiUrl", api.hosted_ui_url, "Cognito's hosted sign-in UI")
        output("AlarmTopicArn", monitoring.topic.topic_arn, "Alarm notifications (subscribe more endpoints here)")
        output("AlertTopicArn", alerts.topic.topic_arn, "Budget alerts of every user (subscribe endpoints here)")
