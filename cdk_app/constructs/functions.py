"""One Lambda function: its own role (no managed policy), log group with retention, Powertools env.

Every function: the newest Python runtime, arm64, JSON logs to its own log group, X-Ray active
tracing unless the `tracing` context is off (then `POWERTOOLS_TRACE_DISABLED` keeps the X-Ray SDK out
of the cold start: `llmtally.observability`), and the reserved concurrency the context gives it by
name (`AppConfig.reserved_concurrency`; 0: none).
Permissions are added by the capability constructs, statement by statement, to this role only.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.config import METRICS_NAMESPACE, AppConfig
from cdk_app.constructs.bundling import ARCHITECTURE, RUNTIME, AssetSpec, function_code
from cdk_app.nag import acknowledge

#: CloudWatch Logs' retention periods in days, in `logs.RetentionDays` order.
_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
_RETENTION = dict(zip(_DAYS, list(logs.RetentionDays)[: len(_DAYS)], strict=True))


def retention(days: int) -> logs.RetentionDays:
    return _RETENTION[days]


class LlmTallyFunction(Construct):
    """A function from `lambdas/<package>`: `handler` is `<package>.handler.lambda_handler`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        name: str,
        asset: AssetSpec,
        description: str,
        timeout: Duration,
        memory_mb: int,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        function_name = f"{config.prefix}-{name}"
        #: 0 means no reservation (never Lambda's ReservedConcurrentExecutions 0, which stops it).
        self.reserved_concurrency = config.reserved_concurrency.get(name, 0)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: its own least-privilege role",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"{asset.handler_package}.handler.lambda_handler",
            code=function_code(asset),
            role=self.role,
            timeout=timeout,
            memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
            reserved_concurrent_executions=self.reserved_concurrency or None,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "LLMTALLY_PREFIX": config.prefix,
                "POWERTOOLS_SERVICE_NAME": config.prefix,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_TRACE_DISABLED": "false" if config.tracing else "true",
                **(environment or {}),
            },
        )
        # Only its own log group (CDK would attach AWSLambdaBasicExecutionRole, i.e. every group).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        if config.tracing:
            acknowledge(
                self.role,
                "AwsSolutions-IAM5",
                "X-Ray's PutTraceSegments and PutTelemetryRecords (added by active tracing) support no "
                "resource-level permissions, so their resource is `*`.",
                applies_to=["Resource::*"],
            )

    def add_to_role(self, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.role.add_to_policy(statement)
