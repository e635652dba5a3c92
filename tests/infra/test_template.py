"""The synthesized template: every resource and the properties that matter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_app.constructs.api import CONNECTION_TEST_ROUTE, EXPORT_ROUTE
from cdk_app.stack import OUTPUTS
from llmtally import topology as topo
from llmtally.resources import ResourceNames
from llmtally.tables import table_specs
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()
FUNCTIONS = ("ingest", "aggregate", "api", "connection-test", "notify")
PROVIDER_ENV = ("ANTHROPIC", "OPENAI", "GOOGLE", "GEMINI")


def _function(synthesized: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    return synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-{name}")


def _statements(synthesized: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to one role."""
    out: list[dict[str, Any]] = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_resource_counts(assertions: Template) -> None:
    # Given the synthesized stack / Then it holds exactly the system's resources
    for kind, count in {
        "AWS::DynamoDB::Table": 6,
        "AWS::SQS::Queue": 5,
        "AWS::Events::EventBus": 1,
        "AWS::Events::Rule": 3,
        "AWS::Events::Archive": 1,
        "AWS::Lambda::EventSourceMapping": 2,
        "AWS::ApiGatewayV2::Api": 1,
        "AWS::ApiGatewayV2::Authorizer": 1,
        "AWS::ApiGatewayV2::Stage": 1,
        "AWS::Cognito::UserPool": 1,
        "AWS::Cognito::UserPoolClient": 1,
        "AWS::Cognito::UserPoolDomain": 1,
        "AWS::Cognito::UserPoolGroup": 1,
        "AWS::KMS::Key": 3,
        "AWS::SecretsManager::Secret": 1,
        "AWS::S3::Bucket": 2,
        "AWS::CloudFront::Distribution": 1,
        "AWS::IAM::ManagedPolicy": 2,
        "AWS::SNS::Topic": 3,  # operators' alerts, users' own alert e-mails, alarms
        "AWS::Lambda::EventInvokeConfig": 1,
        "AWS::CloudWatch::Dashboard": 1,
        "Custom::CDKBucketDeployment": 1,
    }.items():
        assertions.resource_count_is(kind, count)


def test_functions_runtime_arch_tracing_logs(synthesized: Synthesized) -> None:
    log_groups = {
        res["Properties"]["LogGroupName"]: res["Properties"]
        for res in synthesized.resources("AWS::Logs::LogGroup").values()
    }
    roles = set()
    for name in FUNCTIONS:
        _, fn = _function(synthesized, name)
        props = fn["Properties"]
        assert props["Runtime"] == "python3.14"
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        env = props["Environment"]["Variables"]
        assert env["LLMTALLY_PREFIX"] == NAMES.prefix
        assert env["POWERTOOLS_SERVICE_NAME"] == NAMES.prefix
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "llmtally"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
        assert not any(key.startswith(PROVIDER_ENV) for key in env), "no provider key in any environment"
        assert "LLMTALLY_API_LOCAL_IDENTITY" not in env
        assert log_groups[f"/aws/lambda/{NAMES.prefix}-{name}"]["RetentionInDays"] == 30
        roles.add(props["Role"]["Fn::GetAtt"][0])
    assert len(roles) == len(FUNCTIONS), "each function has its own role"
    for role in roles:
        assert "ManagedPolicyArns" not in synthesized.template["Resources"][role]["Properties"]


def test_metrics_namespace_matches_the_library() -> None:
    from cdk_app.config import METRICS_NAMESPACE
    from llmtally.observability import METRICS_NAMESPACE as LIBRARY_NAMESPACE

    assert METRICS_NAMESPACE == LIBRARY_NAMESPACE


def test_tables_encrypted_pitr_on_demand_retained(synthesized: Synthesized) -> None:
    for spec in table_specs(NAMES).values():
        _, table = synthesized.one("AWS::DynamoDB::Table", TableName=spec.name)
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"


def test_usage_table_keys_stream_ttl(assertions: Template) -> None:
    assertions.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": NAMES.usage_table,
            "KeySchema": [
                {"AttributeName": "user_id", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "GlobalSecondaryIndexes": Match.array_with(
                [Match.object_like({"IndexName": "by_provider"}), Match.object_like({"IndexName": "by_operation"})]
            ),
        },
    )


def test_ingest_queue_sse_tls_redrive(synthesized: Synthesized) -> None:
    dlq_id, dlq = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_dlq)
    queue_id, queue = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_queue)
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": topo.INGEST_MAX_RECEIVE_COUNT,
    }
    # Every queue's policy denies requests without TLS.
    for logical in (queue_id, dlq_id):
        policies = [
            p
            for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
            if {"Ref": logical} in p["Properties"]["Queues"]
        ]
        statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_ingest_event_source_batches_partial_failures(synthesized: Synthesized) -> None:
    queue_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_queue)
    ingest_id, _ = _function(synthesized, "ingest")
    _, mapping = synthesized.one("AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": [queue_id, "Arn"]})
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": ingest_id}
    assert props["BatchSize"] == topo.INGEST_BATCH_SIZE
    assert props["MaximumBatchingWindowInSeconds"] == topo.INGEST_BATCH_WINDOW_SECONDS
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_aggregate_stream_source_insert_filter_batches_retries(synthesized: Synthesized) -> None:
    table_id, _ = synthesized.one("AWS::DynamoDB::Table", TableName=NAMES.usage_table)
    aggregate_id, _ = _function(synthesized, "aggregate")
    failures_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.aggregate_failures)
    _, mapping = synthesized.one(
        "AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": [table_id, "StreamArn"]}
    )
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": aggregate_id}
    assert [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]] == [topo.stream_filter_pattern()]
    assert props["BatchSize"] == topo.AGGREGATE_BATCH_SIZE
    assert props["MaximumBatchingWindowInSeconds"] == topo.AGGREGATE_BATCH_WINDOW_SECONDS
    assert props["MaximumRetryAttempts"] == topo.AGGREGATE_MAX_RETRY_ATTEMPTS
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [failures_id, "Arn"]}}}


def test_bus_rule_archive(synthesized: Synthesized) -> None:
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=NAMES.event_bus)
    queue_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_queue)
    dlq_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_dlq)
    _, rule = synthesized.one("AWS::Events::Rule", Name=NAMES.ingest_rule)
    (target,) = rule["Properties"]["Targets"]
    assert rule["Properties"]["EventBusName"] == {"Ref": bus_id}
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    (archive,) = synthesized.resources("AWS::Events::Archive").values()
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    # Usage events only: replaying the archive never sends a budget alert again.
    assert archive["Properties"]["EventPattern"] == {"source": ["llmtally"], "detail-type": ["LLMUsage"]}
    assert archive["Properties"]["RetentionDays"] == 30


def test_every_route_has_the_jwt_authorizer(synthesized: Synthesized) -> None:
    authorizer_id, authorizer = next(iter(synthesized.resources("AWS::ApiGatewayV2::Authorizer").items()))
    pool_id = next(iter(synthesized.resources("AWS::Cognito::UserPool")))
    client_id = next(iter(synthesized.resources("AWS::Cognito::UserPoolClient")))
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"]["Audience"] == [{"Ref": client_id}]
    assert {"Ref": pool_id} in authorizer["Properties"]["JwtConfiguration"]["Issuer"]["Fn::Join"][1]
    routes = synthesized.resources("AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "GET /api/{proxy+}",
        "PUT /api/{proxy+}",
        "POST /api/{proxy+}",
        "DELETE /api/{proxy+}",
        f"POST {CONNECTION_TEST_ROUTE}",
        f"GET {EXPORT_ROUTE}",
        "POST /api/usage-events",
        "POST /api/otel/v1/traces",
    }
    for route in routes.values():
        if route["Properties"]["RouteKey"] in {"POST /api/usage-events", "POST /api/otel/v1/traces"}:
            # ingest keys, checked by the function (tests/infra/test_http_ingest.py)
            assert route["Properties"]["AuthorizationType"] == "NONE"
            continue
        assert route["Properties"]["AuthorizationType"] == "JWT"
        assert route["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}


def test_connection_test_route_goes_to_its_own_function(synthesized: Synthesized) -> None:
    connection_id, _ = _function(synthesized, "connection-test")
    api_id, _ = _function(synthesized, "api")
    by_route = {}
    for route in synthesized.resources("AWS::ApiGatewayV2::Route").values():
        integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = synthesized.template["Resources"][integration_id]["Properties"]["IntegrationUri"]
        by_route[route["Properties"]["RouteKey"]] = uri["Fn::GetAtt"][0]
    assert by_route.pop(f"POST {CONNECTION_TEST_ROUTE}") == connection_id
    assert set(by_route.values()) == {api_id}


def test_api_stage_throttling_access_logs_cors(synthesized: Synthesized) -> None:
    (stage,) = synthesized.resources("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default"
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50}
    log_fields = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "status", "routeKey", "authorizerError"} <= set(log_fields)
    assert "DestinationArn" in props["AccessLogSettings"]
    (api,) = synthesized.resources("AWS::ApiGatewayV2::Api").values()
    cors = api["Properties"]["CorsConfiguration"]
    distribution_id = next(iter(synthesized.resources("AWS::CloudFront::Distribution")))
    # Only the dashboard's own origin (plus `allowedWebOrigins`, none by default): never `*`.
    assert cors["AllowOrigins"] == [{"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}]
    assert set(cors["AllowHeaders"]) == {"authorization", "content-type"}
    # What the dashboard reads from a response: the CSV export's next page and a 429's wait.
    assert {"x-next-cursor", "retry-after"} <= set(cors["ExposeHeaders"])


def test_user_pool_admin_only_mfa_and_client(synthesized: Synthesized) -> None:
    (pool,) = synthesized.resources("AWS::Cognito::UserPool").values()
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["MfaConfiguration"] == "ON"
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    (client,) = synthesized.resources("AWS::Cognito::UserPoolClient").values()
    client_props = client["Properties"]
    assert client_props["GenerateSecret"] is False
    assert client_props["AllowedOAuthFlows"] == ["code"]
    assert set(client_props["AllowedOAuthScopes"]) == {"openid", "email"}
    (group,) = synthesized.resources("AWS::Cognito::UserPoolGroup").values()
    assert group["Properties"]["GroupName"] == "llmtally-admin"


def test_secrets_key_rotation_and_cursor_secret(synthesized: Synthesized) -> None:
    keys = synthesized.resources("AWS::KMS::Key")
    assert all(key["Properties"]["EnableKeyRotation"] is True for key in keys.values())
    (secret,) = synthesized.resources("AWS::SecretsManager::Secret").values()
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    # The AWS-managed key: the users' key is for users' secrets, and names who may use it.
    assert "KmsKeyId" not in secret["Properties"]
    _, api = _function(synthesized, "api")
    cursor = api["Properties"]["Environment"]["Variables"]["LLMTALLY_API_CURSOR_SECRET"]
    # A dynamic reference, resolved by CloudFormation at deploy time: the value is never in the template.
    assert "resolve:secretsmanager:" in json.dumps(cursor)
    _, connection = _function(synthesized, "connection-test")
    assert "LLMTALLY_API_CURSOR_SECRET" not in connection["Properties"]["Environment"]["Variables"]
    for name in ("api", "connection-test"):
        env = _function(synthesized, name)[1]["Properties"]["Environment"]["Variables"]
        assert env["LLMTALLY_SECRETS_KMS_KEY_ID"]["Fn::GetAtt"][0] in keys


def test_dashboard_bucket_private_behind_cloudfront_oac(synthesized: Synthesized) -> None:
    for bucket in synthesized.resources("AWS::S3::Bucket").values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
        assert "AccessControl" not in props
    (distribution,) = synthesized.resources("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert all("OriginAccessControlId" in origin for origin in config["Origins"])
    assert config["DefaultRootObject"] == "index.html"


def test_dashboard_runtime_config(synthesized: Synthesized) -> None:
    (deployment,) = synthesized.resources("Custom::CDKBucketDeployment").values()
    markers = json.dumps(deployment["Properties"].get("SourceMarkers", []))
    # config.json is rendered at deploy time with the API URL, the hosted UI and the app client.
    assert len(deployment["Properties"]["SourceObjectKeys"]) == 2
    for token in ("ApiHttpApi", "ApiUserPoolDashboard", "ApiUserPool"):
        assert token in markers


def test_producer_policy_publishes_only(synthesized: Synthesized) -> None:
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=NAMES.event_bus)
    queue_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_queue)
    _, policy = synthesized.one("AWS::IAM::ManagedPolicy", ManagedPolicyName=f"{NAMES.prefix}-publish-usage")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    settings_id, _ = synthesized.one("AWS::DynamoDB::Table", TableName=NAMES.settings_table)
    cache_id, _ = synthesized.one("AWS::DynamoDB::Table", TableName=NAMES.response_cache_table)
    assert statements == [
        {
            "Action": "events:PutEvents",
            # Usage events only: a producer cannot publish a budget alert.
            "Condition": {"StringEquals": {"events:source": "llmtally", "events:detail-type": "LLMUsage"}},
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [bus_id, "Arn"]},
            "Sid": "PutUsageEvents",
        },
        {
            "Action": "sqs:SendMessage",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
            "Sid": "SendUsageMessages",
        },
        {
            "Action": "dynamodb:GetItem",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [settings_id, "Arn"]},
            "Sid": "ReadBudgets",
        },
        {
            "Action": "dynamodb:UpdateItem",
            # Reservations and settlements touch the period ledger's attributes only.
            "Condition": {
                "ForAllValues:StringEquals": {
                    "dynamodb:Attributes": [
                        "user_id",
                        "setting_type",
                        "holds",
                        "outstanding_nanos",
                        "spent_nanos",
                        "expires_at",
                    ]
                },
                "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE"]},
            },
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [settings_id, "Arn"]},
            "Sid": "ReserveOnLedgers",
        },
        {
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [cache_id, "Arn"]},
            "Sid": "ResponseCache",
        },
    ]


def test_provider_keys_policy_reads_provider_keys_only(synthesized: Synthesized) -> None:
    _, policy = synthesized.one("AWS::IAM::ManagedPolicy", ManagedPolicyName=f"{NAMES.prefix}-provider-keys")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (read,) = [s for s in statements if s["Sid"] == "ReadProviderKeys"]
    assert read["Action"] == "secretsmanager:GetSecretValue"
    assert json.dumps(read["Resource"]).endswith(f':secret:{NAMES.secrets_prefix}*/llm/*"]]}}')
    (decrypt,) = [s for s in statements if s["Sid"] == "DecryptProviderKeys"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    assert {s["Sid"] for s in statements} == {"ReadProviderKeys", "DecryptProviderKeys"}


def test_the_users_key_policy_names_its_users(synthesized: Synthesized) -> None:
    (key,) = [
        k
        for k in synthesized.resources("AWS::KMS::Key").values()
        if "provider API keys" in k["Properties"]["Description"]
    ]
    by_sid = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    # The account administers the key; the API, the connection test and the notifier use it, by role.
    assert set(by_sid) == {
        "KeyAdministration",
        "ApiWritesUsersSecrets",
        "ConnectionTestReadsProviderKeys",
        "NotifierReadsSlackWebhooks",
        "ReconcileReadsAdminKeys",
    }
    assert "kms:Decrypt" not in by_sid["KeyAdministration"]["Action"]
    assert "kms:CreateGrant" not in by_sid["KeyAdministration"]["Action"]
    for sid in set(by_sid) - {"KeyAdministration"}:
        assert "Fn::GetAtt" in by_sid[sid]["Principal"]["AWS"], sid
    assert by_sid["ConnectionTestReadsProviderKeys"]["Action"] == "kms:Decrypt"
    # No producer may decrypt by default (producerRoleArns names them: tests/iam/test_static.py)


def test_outputs(synthesized: Synthesized) -> None:
    outputs = synthesized.template["Outputs"]
    assert set(OUTPUTS) <= set(outputs)
    exported = {name for name, out in outputs.items() if "Export" in out}
    assert exported == {"EventBusName", "EventBusArn", "ProducerPolicyArn"}
    assert outputs["ProducerPolicyArn"]["Export"]["Name"] == f"{NAMES.prefix}-ProducerPolicyArn"


def test_alarms_and_topic(synthesized: Synthesized) -> None:
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    names = {alarm["Properties"]["AlarmName"] for alarm in alarms.values()}
    expected = {
        f"{NAMES.prefix}-ingest-dlq-depth",
        f"{NAMES.prefix}-aggregate-failures-depth",
        f"{NAMES.prefix}-budget-alerts-failures-depth",
        f"{NAMES.prefix}-reconcile-failures-depth",
    }
    expected |= {
        f"{NAMES.prefix}-{fn}-{kind}"
        for fn in ("Ingest", "Aggregate", "Api", "ConnectionTest", "Notify", "Reconcile")
        for kind in ("errors", "throttles")
    }
    expected |= {f"{NAMES.prefix}-aggregate-iterator-age", f"{NAMES.prefix}-ingest-rejects"}
    # The handled failures (tests/infra/test_alarms.py)
    expected |= {
        f"{NAMES.prefix}-{name}"
        for name in (
            "api-5xx-rate",
            "ingest-transient-failures",
            "aggregate-batch-failures",
            "alert-delivery-failures",
            "alert-email-failures",
            "http-ingest-bus-refused",
        )
    }
    assert names == expected
    topic_id, topic = synthesized.one("AWS::SNS::Topic", TopicName=f"{NAMES.prefix}-alarms")
    assert "KmsMasterKeyId" in topic["Properties"]
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    rejects = next(a for a in alarms.values() if a["Properties"]["AlarmName"].endswith("ingest-rejects"))
    assert rejects["Properties"]["Namespace"] == "llmtally"
    assert rejects["Properties"]["Dimensions"] == [{"Name": "service", "Value": NAMES.prefix}]


# -- least privilege ------------------------------------------------------------------------------

#: Every `*` (action or resource) a function role may hold, and why.
EXPLAINED_WILDCARDS = {
    # X-Ray accepts no resource-level permissions (active tracing).
    ("xray:PutTraceSegments", "*"),
    ("xray:PutTelemetryRecords", "*"),
    # The stream event source; ListStreams accepts no resource-level permission.
    ("dynamodb:ListStreams", "*"),
    # Users' alert e-mails: these act on a subscription ARN, which IAM does not scope (the API calls
    # them only with the subscription ARN it stored for the user; Subscribe is on the topic).
    ("sns:Unsubscribe", "*"),
    ("sns:GetSubscriptionAttributes", "*"),
}


def _resources_text(statement: dict[str, Any]) -> list[str]:
    return [json.dumps(r) if not isinstance(r, str) else r for r in _as_list(statement["Resource"])]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_roles_least_privilege(synthesized: Synthesized, name: str) -> None:
    _, fn = _function(synthesized, name)
    statements = _statements(synthesized, fn["Properties"]["Role"]["Fn::GetAtt"][0])
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{name}: wildcard action {action}"
        for resource in _resources_text(statement):
            if resource == "*":
                assert all((a, "*") in EXPLAINED_WILDCARDS for a in actions), f"{name}: {actions} on *"
            elif "*" in resource:
                # Only users' secrets under the prefix, and Bedrock models for the connection test.
                assert f"secret:{NAMES.secrets_prefix}*" in resource or "bedrock" in resource, f"{name}: {resource}"
            if "/index/" in resource:
                # An index is only ever read by Query (or Scan): item operations have no index form.
                assert set(actions) <= {"dynamodb:Query", "dynamodb:Scan"}, f"{name}: {actions} on an index"


def test_only_the_connection_test_reads_keys_and_the_notifier_webhooks(synthesized: Synthesized) -> None:
    readers: dict[str, list[str]] = {}
    for name in FUNCTIONS:
        _, fn = _function(synthesized, name)
        for statement in _statements(synthesized, fn["Properties"]["Role"]["Fn::GetAtt"][0]):
            if "secretsmanager:GetSecretValue" in _as_list(statement["Action"]):
                readers.setdefault(name, []).extend(_resources_text(statement))
    assert set(readers) == {"connection-test", "notify"}
    # Provider keys for the connection test, Slack webhooks for the notifier: neither reads the other.
    (keys,) = readers["connection-test"]
    assert keys.endswith(f':secret:{NAMES.secrets_prefix}*/llm/*"]]}}')
    (webhooks,) = readers["notify"]
    assert webhooks.endswith(f':secret:{NAMES.secrets_prefix}*/alerts/slack-webhook-??????"]]}}')


def test_pipeline_functions_touch_only_their_tables(synthesized: Synthesized) -> None:
    table_ids = {
        spec_key: synthesized.one("AWS::DynamoDB::Table", TableName=spec.name)[0]
        for spec_key, spec in table_specs(NAMES).items()
    }

    def tables_of(name: str) -> set[str]:
        _, fn = _function(synthesized, name)
        found = set()
        for statement in _statements(synthesized, fn["Properties"]["Role"]["Fn::GetAtt"][0]):
            text = json.dumps(statement["Resource"])
            found |= {
                key
                for key, logical in table_ids.items()
                if logical in text and "dynamodb:" in json.dumps(statement["Action"])
            }
        return found

    assert tables_of("ingest") == {"usage", "rejects", "settings"}
    # usage: its stream only; settings: budgets, ledgers and alert records
    assert tables_of("aggregate") == {"usage", "rollups", "settings"}
    assert tables_of("api") == {"usage", "rollups", "settings", "reconciliation"}
    assert tables_of("connection-test") == {"settings"}
    assert tables_of("notify") == {"settings"}  # the delivery records
    assert tables_of("reconcile") == {"rollups", "reconciliation"}
