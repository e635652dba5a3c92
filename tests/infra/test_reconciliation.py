"""Reconciliation in the template: the daily schedule with retries and a DLQ, the function's own narrow
role, the API's read of the table, the alert rule to the alert topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmtally.resources import ResourceNames
from llmtally.topology import reconciliation_alerts_rule_pattern
from tests.infra.conftest import Synthesized, _synth

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()


def _function(synthesized: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    return synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-{name}")


def _statements(synthesized: Synthesized, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_the_schedule_runs_the_function_daily_with_retries_and_a_dead_letter_queue(synthesized: Synthesized) -> None:
    # Given the reconciliation schedule
    _, schedule = synthesized.one("AWS::Scheduler::Schedule", Name=NAMES.reconcile_schedule)
    props = schedule["Properties"]
    function_id, _ = _function(synthesized, "reconcile")
    failures_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.reconcile_failures)
    # Then it runs at 06:00 UTC, invokes the function, retries, and dead-letters into the failure queue
    assert props["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "Etc/UTC"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failures_id, "Arn"]}}


def test_the_function_reads_only_admin_keys_and_writes_only_its_table(synthesized: Synthesized) -> None:
    # Given the function's own role
    _, function = _function(synthesized, "reconcile")
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _statements(synthesized, role_id)
    by_action = {action: s for s in statements for action in _actions(s)}
    # Then it may read secrets only under `{prefix}/users/*/billing/*`
    secret = json.dumps(by_action["secretsmanager:GetSecretValue"]["Resource"])
    assert f"secret:{NAMES.prefix}/users/*/billing/*-??????" in secret
    # And it writes its table only (no rollup write, no other table)
    table_id, _ = synthesized.one("AWS::DynamoDB::Table", TableName=NAMES.reconciliation_table)
    assert by_action["dynamodb:PutItem"]["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
    assert "dynamodb:UpdateItem" in by_action
    assert "dynamodb:BatchWriteItem" not in by_action
    # And it puts events on the usage bus only, reconciliation alerts only (never a usage event or a budget alert)
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=NAMES.event_bus)
    assert by_action["events:PutEvents"]["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    assert by_action["events:PutEvents"]["Condition"] == {
        "StringEquals": {"events:source": "llmtally", "events:detail-type": "ReconciliationAlert"}
    }


def test_reconciliation_alerts_go_to_the_alert_topic_and_the_slack_notifier(synthesized: Synthesized) -> None:
    _, rule = synthesized.one("AWS::Events::Rule", Name=NAMES.reconciliation_alerts_rule)
    props = rule["Properties"]
    assert props["EventPattern"] == reconciliation_alerts_rule_pattern()
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.alerts_topic)
    notify_id, _ = synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-notify")
    failures_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.reconcile_failures)
    by_arn = {json.dumps(target["Arn"]): target for target in props["Targets"]}
    assert set(by_arn) == {json.dumps({"Ref": topic_id}), json.dumps({"Fn::GetAtt": [notify_id, "Arn"]})}
    assert "$.detail.message" in json.dumps(by_arn[json.dumps({"Ref": topic_id})]["InputTransformer"])
    for target in by_arn.values():
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failures_id, "Arn"]}}


def test_the_secrets_key_lets_the_function_decrypt_admin_keys_only(synthesized: Synthesized) -> None:
    # Given the users' secrets key policy
    statements = [
        statement
        for key in synthesized.resources("AWS::KMS::Key").values()
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement.get("Sid") == "ReconcileReadsAdminKeys"
    ]
    # Then one statement lets the reconcile role decrypt, through Secrets Manager, the billing secrets only
    (statement,) = statements
    assert statement["Action"] == "kms:Decrypt"
    _, function = _function(synthesized, "reconcile")
    assert json.dumps(function["Properties"]["Role"]["Fn::GetAtt"][0]) in json.dumps(statement["Principal"])
    secret_arn = json.dumps(statement["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"])
    assert f"secret:{NAMES.prefix}/users/*/billing/*-??????" in secret_arn


def test_bedrock_reconciliation_is_off_unless_the_context_turns_it_on(
    synthesized: Synthesized, tmp_path_factory: pytest.TempPathFactory, web_dist: Path
) -> None:
    def reconcile_role_actions(synth: Synthesized) -> set[str]:
        _, function = _function(synth, "reconcile")
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        return {action for statement in _statements(synth, role_id) for action in _actions(statement)}

    # Given the default synthesis / Then no Cost Explorer read and no Bedrock settings
    _, function = _function(synthesized, "reconcile")
    assert "ce:GetCostAndUsage" not in reconcile_role_actions(synthesized)
    assert "LLMTALLY_RECONCILE_BEDROCK_ENABLED" not in function["Properties"]["Environment"]["Variables"]
    # Given `-c reconcileBedrock=true -c reconcileBedrockTagKey=llmtally-user` (cdk-nag on)
    with_bedrock = _synth(
        tmp_path_factory.mktemp("cdk.out.reconcile-bedrock"),
        {
            "aws:cdk:bundling-stacks": [],
            "webDistDir": str(web_dist),
            "reconcileBedrock": "true",
            "reconcileBedrockTagKey": "llmtally-user",
        },
        nag=True,
    )
    # Then the function may read Cost Explorer and is told the tag to split the bill by
    _, function = _function(with_bedrock, "reconcile")
    assert "ce:GetCostAndUsage" in reconcile_role_actions(with_bedrock)
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["LLMTALLY_RECONCILE_BEDROCK_ENABLED"] == "true"
    assert variables["LLMTALLY_RECONCILE_BEDROCK_TAG_KEY"] == "llmtally-user"
