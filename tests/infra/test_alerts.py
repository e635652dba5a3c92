"""Budget alerts in the template: the rule on the usage bus and its two targets, the encrypted topic,
the notifier's failure handling and permissions, the aggregator's publishing rights, the e-mail
subscription only with `alertEmail`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llmtally.notify import EMAIL_FIELDS, EMAIL_TEMPLATE
from llmtally.resources import ResourceNames
from llmtally.topology import NOTIFY_MAX_RETRY_ATTEMPTS, alerts_rule_pattern
from tests.infra.conftest import Synthesized, _synth

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()


def _function_id(synthesized: Synthesized, name: str) -> str:
    return synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-{name}")[0]


def _role_statements(synthesized: Synthesized, function: str) -> list[dict[str, Any]]:
    fn = synthesized.template["Resources"][_function_id(synthesized, function)]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_rule_routes_alerts_to_the_topic_and_the_notifier(synthesized: Synthesized) -> None:
    # Given the alerts rule on the usage bus
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=NAMES.event_bus)
    _, rule = synthesized.one("AWS::Events::Rule", Name=NAMES.alerts_rule)
    props = rule["Properties"]
    assert props["EventBusName"] == {"Ref": bus_id}
    assert props["EventPattern"] == alerts_rule_pattern()
    # Then it has two targets: the alert topic and the notifier, each with the failure queue as DLQ
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    failures_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.alerts_failures)
    by_arn = {json.dumps(target["Arn"]): target for target in props["Targets"]}
    assert set(by_arn) == {
        json.dumps({"Ref": topic_id}),
        json.dumps({"Fn::GetAtt": [_function_id(synthesized, "notify"), "Arn"]}),
    }
    for target in by_arn.values():
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failures_id, "Arn"]}}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_the_email_is_the_library_template_filled_from_the_detail(synthesized: Synthesized) -> None:
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    _, rule = synthesized.one("AWS::Events::Rule", Name=NAMES.alerts_rule)
    (target,) = [t for t in rule["Properties"]["Targets"] if t["Arn"] == {"Ref": topic_id}]
    transformer = target["InputTransformer"]
    paths = transformer["InputPathsMap"]
    assert sorted(paths.values()) == sorted(f"$.detail.{name}" for name in EMAIL_FIELDS)
    # Rendering EventBridge's template with the detail's own values gives the library's text.
    template = json.loads(transformer["InputTemplate"])
    by_placeholder = {key: path.removeprefix("$.detail.") for key, path in paths.items()}
    rendered = re.sub(r"<([^>]+)>", lambda m: "{" + by_placeholder[m.group(1)] + "}", template)
    assert rendered == EMAIL_TEMPLATE


def test_the_alert_topic_is_encrypted_tls_only_and_eventbridge_may_publish(synthesized: Synthesized) -> None:
    topic_id, topic = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = synthesized.template["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    key_statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s.get("Principal") == {"Service": "events.amazonaws.com"} and "kms:GenerateDataKey*" in _actions(s)
        for s in key_statements
    )
    (policy,) = [
        p
        for p in synthesized.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    assert any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "events.amazonaws.com"}
        and s["Action"] == "sns:Publish"
        for s in statements
    )


def test_no_email_subscription_without_context(synthesized: Synthesized) -> None:
    assert synthesized.resources("AWS::SNS::Subscription") == {}


def test_the_notifier_fails_into_the_failure_queue(synthesized: Synthesized) -> None:
    failures_id, failures = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.alerts_failures)
    assert failures["Properties"]["SqsManagedSseEnabled"] is True
    _, config = synthesized.one("AWS::Lambda::EventInvokeConfig")
    assert config["Properties"]["FunctionName"] == {"Ref": _function_id(synthesized, "notify")}
    assert config["Properties"]["MaximumRetryAttempts"] == NOTIFY_MAX_RETRY_ATTEMPTS
    assert config["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [failures_id, "Arn"]}}
    }
    # EventBridge may put what it could not deliver in the queue; nothing else is allowed in without TLS.
    statements = [
        s
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": failures_id} in p["Properties"]["Queues"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(s["Effect"] == "Allow" and s["Principal"] == {"Service": "events.amazonaws.com"} for s in statements)
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_the_notifier_reads_webhooks_only(synthesized: Synthesized) -> None:
    statements = _role_statements(synthesized, "notify")
    secret_actions = {a for s in statements for a in _actions(s) if a.startswith("secretsmanager:")}
    assert secret_actions == {"secretsmanager:GetSecretValue"}
    (decrypt,) = [s for s in statements if "kms:Decrypt" in _actions(s) and "Condition" in s]
    assert "kms:ViaService" in json.dumps(decrypt["Condition"])
    env = synthesized.template["Resources"][_function_id(synthesized, "notify")]["Properties"]["Environment"]
    assert "LLMTALLY_SLACK_WEBHOOK_ALLOWED_PREFIX" not in env["Variables"], "Slack's own prefix in production"


def test_the_api_manages_webhooks_but_never_reads_one(synthesized: Synthesized) -> None:
    statements = _role_statements(synthesized, "api")
    managing = [s for s in statements if "secretsmanager:CreateSecret" in _actions(s)]
    (statement,) = managing
    assert {"secretsmanager:UpdateSecret", "secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"} <= set(
        _actions(statement)
    )
    # `{prefix}/users/*` covers `{prefix}/users/{user}/alerts/slack-webhook`.
    assert json.dumps(statement["Resource"]).endswith(f':secret:{NAMES.secrets_prefix}*"]]}}')
    assert not any("secretsmanager:GetSecretValue" in _actions(s) for s in statements)


def test_only_the_aggregator_publishes_alerts(synthesized: Synthesized) -> None:
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=NAMES.event_bus)
    publishers = {}
    for name in ("ingest", "aggregate", "api", "connection-test", "notify"):
        for statement in _role_statements(synthesized, name):
            if "events:PutEvents" in _actions(statement):
                publishers[name] = statement
    # The API publishes too (the HTTP ingest), usage events only: an alert comes from the aggregator alone.
    assert set(publishers) == {"aggregate", "api"}
    for name, detail_type in (("aggregate", "BudgetThresholdCrossed"), ("api", "LLMUsage")):
        statement = publishers[name]
        assert statement["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
        conditions = {"events:source": "llmtally", "events:detail-type": detail_type}
        assert statement["Condition"] == {"StringEquals": conditions}


def test_alert_topic_output(synthesized: Synthesized) -> None:
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    assert synthesized.template["Outputs"]["AlertTopicArn"]["Value"] == {"Ref": topic_id}


def test_alert_email_context_subscribes_the_address(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> None:
    # Given `-c alertEmail=…` / When synthesized / Then one e-mail subscription on the alert topic
    with_email = _synth(
        tmp_path_factory.mktemp("cdk.out.alert-email"),
        {"aws:cdk:bundling-stacks": [], "webDistDir": str(web_dist), "alertEmail": "finance@example.com"},
        nag=False,
    )
    topic_id, _ = with_email.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    (subscription,) = with_email.resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "finance@example.com"
    assert subscription["Properties"]["TopicArn"] == {"Ref": topic_id}
