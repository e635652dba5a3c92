"""API: the HTTP API behind a Cognito JWT authorizer, the API and connection-test functions, the
settings table, the customer-managed key of users' secrets.

- Every route carries the JWT authorizer (the user pool's app client is the dashboard's); the
  handler then checks that the token's `sub` is the path's `{userId}` unless the caller is in
  the admin group.
- The connection test (`POST /api/llm-settings/{userId}/test`) is a separate function running the
  same handler code with the provider SDKs bundled: the API function holds no provider SDK and
  cannot read a stored key (only the connection test may `GetSecretValue`).
- The read API signs pagination cursors with a generated secret (Secrets Manager, resolved into
  the API function's environment at deploy time).
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.constructs.bundling import API_ASSET, CONNECTION_TEST_ASSET
from cdk_app.constructs.functions import LlmTallyFunction, retention
from cdk_app.constructs.tables import index_arns, table_from_spec
from cdk_app.nag import acknowledge
from llmtally.api.config import ApiSettings
from llmtally.api.ingest import OTLP_TRACES_PATH, USAGE_EVENTS_PATH
from llmtally.api.usage import NEXT_CURSOR_HEADER
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.tables import SETTINGS, USAGE, TableSpec

#: API Gateway stops waiting at 30 s; the connection test itself waits at most 10 s for a provider.
API_TIMEOUT = Duration.seconds(15)
CONNECTION_TEST_ROUTE = "/api/llm-settings/{userId}/test"
#: The CSV export has its own route (so its own, lower throttle); `?format=csv` on the entries path
#: is redirected here by the function (docs/api.md).
EXPORT_ROUTE = "/api/llm-usage/{userId}/export"
ADMIN_GROUP = ApiSettings.model_fields["admin_group"].default
OAUTH_SCOPES = ("openid", "email")
_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "authorizerError": "$context.authorizer.error",
    "integrationError": "$context.integrationErrorMessage",
}


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        specs: dict[str, TableSpec],
        usage_table: dynamodb.Table,
        rollups_table: dynamodb.Table,
        dashboard_origin: str,
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        self.settings_table = table_from_spec(self, "SettingsTable", specs[SETTINGS], retain=config.retain_data)
        removal = config.data_removal_policy

        # The key policy administers the key for the account (no use of it) and names each role that
        # may use it (`allow_secret_use`): the API, the connection test, the notifier, `producerRoleArns`.
        self.secrets_key = kms.Key(
            self,
            "SecretsKey",
            alias=f"alias/{config.prefix}/user-secrets",
            description="Encrypts users' provider API keys in Secrets Manager",
            enable_key_rotation=True,
            removal_policy=removal,
            policy=iam.PolicyDocument(statements=[key_administration()]),
        )
        secret_arn = f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:secret:{names.secrets_prefix}*"
        #: The same ARN as cdk-nag prints it (pseudo parameters in angle brackets).
        secret_arn_pattern = (
            f"arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{names.secrets_prefix}*"
        )
        via_secrets_manager = {"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}}

        self.cursor_secret = secretsmanager.Secret(
            self,
            "CursorSecret",
            secret_name=f"{config.prefix}/api/cursor-key",
            description="HMAC key of the read API's pagination cursors",
            # The AWS-managed key: CloudFormation reads it at deploy time with the deployer's access,
            # and a customer-managed key here would have to let every principal of the account use it.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.cursor_secret,
            "AwsSolutions-SMG4",
            "The cursor key only signs pagination cursors (tenant isolation never rests on it) and is read "
            "at deploy time into the API function's environment; rotating it means redeploying, which "
            "also invalidates outstanding cursors — harmless, but not worth a rotation Lambda.",
        )

        self._build_auth(config, dashboard_origin)
        common_env = {
            "LLMTALLY_SECRETS_KMS_KEY_ID": self.secrets_key.key_arn,
            "LLMTALLY_API_BEDROCK_AVAILABLE": "true" if config.bedrock_enabled else "false",
            "LLMTALLY_API_ADMIN_GROUP": ADMIN_GROUP,
        }
        self.function = LlmTallyFunction(
            self,
            "ApiFunction",
            config=config,
            name="api",
            asset=API_ASSET,
            description="HTTP API: settings, keys, usage summaries from rollups, raw entries, catalog",
            timeout=API_TIMEOUT,
            memory_mb=1024,
            environment={
                **common_env,
                # A CloudFormation dynamic reference: resolved at deploy, never in the template.
                "LLMTALLY_API_CURSOR_SECRET": self.cursor_secret.secret_value.unsafe_unwrap(),
            },
        )
        self.function.add_to_role(
            # Raw entries: Queries of the table and its indexes; one entry by key (GetItem has no index form).
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=index_arns(usage_table, specs[USAGE])),
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[usage_table.table_arn]),
            # Summaries, series and insights are Queries of the rollups (checkpoints are the aggregator's).
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[rollups_table.table_arn]),
            # Settings, budgets and ledgers; alert records listed (Query); a budget removed (DeleteItem).
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Query",
                ],
                resources=[self.settings_table.table_arn],
            ),
            # Keys are written, checked for existence and deleted — never read back (no GetSecretValue).
            iam.PolicyStatement(
                actions=[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:UpdateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:RestoreSecret",
                    "secretsmanager:TagResource",
                ],
                resources=[secret_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.secrets_key.key_arn],
                conditions=via_secrets_manager,
            ),
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            f"Users' secrets are named `{names.secrets_prefix}{{user_id}}/llm/{{provider}}` (one per user and "
            "provider, created at run time, ARN suffixed by AWS): the resource is that prefix.",
            applies_to=[f"Resource::{secret_arn_pattern}"],
        )

        self.connection_test = LlmTallyFunction(
            self,
            "ConnectionTestFunction",
            config=config,
            name="connection-test",
            asset=CONNECTION_TEST_ASSET,
            description="POST /api/llm-settings/{userId}/test: the API handler with the provider SDKs",
            timeout=API_TIMEOUT,
            memory_mb=1024,
            environment=common_env,
        )
        # Provider keys only (`…/users/{user}/llm/{provider}`): not the users' Slack webhooks.
        key_arn = secret_arn + "/llm/*"
        self.connection_test.add_to_role(
            # The per-user rate limit of connection tests (a counter item in the settings table).
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[self.settings_table.table_arn]
            ),
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[key_arn]),
            iam.PolicyStatement(
                actions=["kms:Decrypt"], resources=[self.secrets_key.key_arn], conditions=via_secrets_manager
            ),
        )
        # The key's side: who may use it, for which secrets (the roles' own policies say the same).
        allow_secret_use(
            self.secrets_key,
            "ApiWritesUsersSecrets",
            [self.function.role],
            ["kms:GenerateDataKey", "kms:Decrypt"],
            secret_arn,
        )
        allow_secret_use(
            self.secrets_key, "ConnectionTestReadsProviderKeys", [self.connection_test.role], ["kms:Decrypt"], key_arn
        )
        if config.producer_role_arns:
            allow_secret_use(
                self.secrets_key,
                "ProducersReadProviderKeys",
                [iam.ArnPrincipal(arn) for arn in config.producer_role_arns],
                ["kms:Decrypt"],
                key_arn,
            )
        if config.bedrock_enabled:
            self.connection_test.add_to_role(
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel", "bedrock:GetFoundationModel"],
                    resources=[f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/*"],
                ),
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel", "bedrock:GetInferenceProfile"],
                    resources=[f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/*"],
                ),
            )
        acknowledge(
            self.connection_test.role,
            "AwsSolutions-IAM5",
            f"Users' provider keys are per user and provider under `{names.secrets_prefix}*/llm/` (named at run time).",
            applies_to=[f"Resource::{secret_arn_pattern}/llm/*"],
        )
        if config.bedrock_enabled:
            acknowledge(
                self.connection_test.role,
                "AwsSolutions-IAM5",
                "Bedrock's connection test may name any foundation model or inference profile the user picks "
                "(Converse needs bedrock:InvokeModel on it, the lookup bedrock:Get*): read-only, billed per call.",
                applies_to=[
                    "Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/*",
                    "Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:inference-profile/*",
                ],
            )

        self._build_http_api(config, dashboard_origin)

    # -- Cognito ------------------------------------------------------------------------------

    def _build_auth(self, config: AppConfig, dashboard_origin: str) -> None:
        removal = config.data_removal_policy
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{config.prefix}-users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=config.retain_data,
            removal_policy=removal,
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "Threat protection (the Plus feature plan) is billed per monthly active user; the pool is "
            "admin-only (no self sign-up) with required TOTP MFA and a strong password policy. Choose the "
            "Plus plan in the console if your policy requires it.",
        )
        cognito.CfnUserPoolGroup(
            self,
            "AdminGroup",
            user_pool_id=self.user_pool.user_pool_id,
            group_name=ADMIN_GROUP,
            description="May read and manage every tenant's settings and usage",
        )
        self.domain_prefix = config.cognito_domain_prefix or f"{config.prefix}-{config.stage}-{Aws.ACCOUNT_ID}"
        self.user_pool_domain = self.user_pool.add_domain(
            "HostedUi", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=self.domain_prefix)
        )
        callbacks = [f"{origin}/" for origin in (dashboard_origin, *config.allowed_web_origins)]
        self.user_pool_client = self.user_pool.add_client(
            "Dashboard",
            user_pool_client_name=f"{config.prefix}-dashboard",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=callbacks,
                logout_urls=callbacks,
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(1),
            enable_token_revocation=True,
        )

    @property
    def hosted_ui_url(self) -> str:
        return f"https://{self.user_pool_domain.domain_name}.auth.{Aws.REGION}.amazoncognito.com"

    # -- HTTP API ---------------------------------------------------------------------------

    def _build_http_api(self, config: AppConfig, dashboard_origin: str) -> None:
        authorizer = authorizers.HttpUserPoolAuthorizer(
            "CognitoJwt", self.user_pool, user_pool_clients=[self.user_pool_client]
        )
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"{config.prefix}-api",
            description="llmtally: settings, keys, usage analytics (JWT on every route)",
            create_default_stage=False,
            default_authorizer=authorizer,
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=[dashboard_origin, *config.allowed_web_origins],
                allow_methods=[
                    apigw.CorsHttpMethod.GET,
                    apigw.CorsHttpMethod.PUT,
                    apigw.CorsHttpMethod.POST,
                    apigw.CorsHttpMethod.DELETE,
                    apigw.CorsHttpMethod.OPTIONS,
                ],
                allow_headers=["authorization", "content-type"],
                expose_headers=["content-disposition", "retry-after", NEXT_CURSOR_HEADER.lower()],
                max_age=Duration.hours(1),
            ),
        )
        api_integration = integrations.HttpLambdaIntegration("Api", self.function.function)
        self.http_api.add_routes(
            path="/api/{proxy+}",
            methods=[apigw.HttpMethod.GET, apigw.HttpMethod.PUT, apigw.HttpMethod.POST, apigw.HttpMethod.DELETE],
            integration=api_integration,
        )
        connection_test_routes = self.http_api.add_routes(
            path=CONNECTION_TEST_ROUTE,
            methods=[apigw.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("ConnectionTest", self.connection_test.function),
        )
        export_routes = self.http_api.add_routes(
            path=EXPORT_ROUTE, methods=[apigw.HttpMethod.GET], integration=api_integration
        )
        # HTTP ingest (docs/ingest.md): callers hold an ingest key, not a JWT; the function checks the
        # key on every request (a cached Lambda authorizer would keep a revoked key working).
        ingest_routes = [
            route
            for path in (USAGE_EVENTS_PATH, OTLP_TRACES_PATH)
            for route in self.http_api.add_routes(
                path=path,
                methods=[apigw.HttpMethod.POST],
                integration=api_integration,
                authorizer=apigw.HttpNoneAuthorizer(),
            )
        ]
        for route in ingest_routes:
            acknowledge(
                route,
                "AwsSolutions-APIG4",
                "HTTP ingest routes authenticate an ingest key (Authorization: Bearer llt_...) in the API function "
                "on every request: SHA-256 of a 256-bit secret against the settings table, so revocation is "
                "immediate (docs/ingest.md); a malformed key is refused before any AWS call, and the route and "
                "per-key throttles bound unauthenticated load.",
            )

        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/apigateway/{config.prefix}-api",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst),
        )
        cfn_stage: Any = self.stage.node.default_child
        # Route throttles (per route key, shared by every caller) below the stage's: a CSV export
        # reads up to thousands of raw entries, a connection test waits up to 10 s on a provider.
        self.route_throttles = {
            f"GET {EXPORT_ROUTE}": (config.export_throttle_rate, config.export_throttle_burst),
            f"POST {CONNECTION_TEST_ROUTE}": (
                config.connection_test_throttle_rate,
                config.connection_test_throttle_burst,
            ),
            f"POST {USAGE_EVENTS_PATH}": (config.ingest_throttle_rate, config.ingest_throttle_burst),
            f"POST {OTLP_TRACES_PATH}": (config.ingest_throttle_rate, config.ingest_throttle_burst),
        }
        cfn_stage.route_settings = {
            route_key: {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
            for route_key, (rate, burst) in self.route_throttles.items()
        }
        # A stage's route settings must name routes that exist when the stage is created.
        for route in (*connection_test_routes, *export_routes, *ingest_routes):
            self.stage.node.add_dependency(route)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn,
            format=_json_format(_ACCESS_LOG_FORMAT),
        )

    def publish_http_ingest(self, *, usage_table: dynamodb.ITable, bus: events.IEventBus) -> None:
        """`POST /api/usage-events` and the OTLP receiver (`llmtally.api.ingest`): the events already
        recorded are looked up in the raw table (BatchGetItem), the rest go on the usage bus — usage
        events only, as a producer's (`cdk_app.constructs.producers`)."""
        self.function.add_to_role(
            iam.PolicyStatement(actions=["dynamodb:BatchGetItem"], resources=[usage_table.table_arn]),
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": EVENT_SOURCE, "events:detail-type": EVENT_DETAIL_TYPE}},
            ),
        )

    @property
    def api_url(self) -> str:
        """`https://{id}.execute-api.{region}.amazonaws.com` (no trailing slash)."""
        return self.http_api.api_endpoint


#: What the account (its administrators, through IAM) may do with the users' key: manage it, never
#: use it — no Encrypt/Decrypt/GenerateDataKey/ReEncrypt, and no CreateGrant (a grant would give use).
KEY_ADMINISTRATION_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)


def key_administration() -> iam.PolicyStatement:
    """The account administers the key (and so passes KMS's lock-out check) but cannot use it."""
    return iam.PolicyStatement(
        sid="KeyAdministration",
        principals=[iam.AccountRootPrincipal()],
        actions=list(KEY_ADMINISTRATION_ACTIONS),
        resources=["*"],  # in a key policy, `*` is this key
    )


def allow_secret_use(
    key: kms.IKey, sid: str, principals: list[iam.IPrincipal], actions: list[str], secret_arns: str
) -> None:
    """Let `principals` use the users' key through Secrets Manager, for secrets matching `secret_arns`
    (Secrets Manager puts the secret's ARN in the encryption context of every data key)."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=principals,
            actions=actions,
            resources=["*"],
            conditions={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"},
                "StringLike": {"kms:EncryptionContext:SecretARN": secret_arns},
            },
        )
    )


def _json_format(fields: dict[str, str]) -> str:
    return json.dumps(fields, separators=(",", ":"))
