"""What the emulator cannot evaluate, checked against the synthesized template.

moto enforces actions only: not resources, not conditions, not key policies (docs/deploy.md,
"IAM"). The parity run already checks every recorded call's resource and conditions against the
resolved statements (`Emulator.check`); here:

- every AWS operation the code can call has an IAM mapping (`tests.iam.actions.OPERATIONS`), so a
  new repository call cannot slip past the tier;
- the users' KMS key: its key policy names the role of each principal whose recorded calls made
  Secrets Manager use the key, for exactly those secrets, and lets the account manage but not use it;
- the producer's ledger writes: the `dynamodb:Attributes` condition, against the attributes the
  recorded reservations and settlements named;
- the code paths the scenario does not run (Bedrock in the connection test, the event sources'
  failure destinations, a secret restored), against the policies.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.iam.actions import OPERATIONS, expression_attributes, requirements
from tests.iam.conftest import PRODUCER_ROLE_ARN, Outcome, Synth
from tests.iam.policies import PolicySet, _as_list
from tests.iam.scenario import ENTRIES, function_resource

pytestmark = pytest.mark.xdist_group("iam")

LIBRARY = Path(__file__).resolve().parents[2] / "shared" / "llmtally"
#: Code that provisions resources (tests, the local stack) or runs as an operator's tool, never
#: under a deployed function's or producer's role.
NOT_DEPLOYED = ("local/", "tables.py", "topology.py", "cli.py", "demo.py")
SERVICES = (
    "dynamodb",
    "dynamodbstreams",
    "secretsmanager",
    "events",
    "sqs",
    "kms",
    "bedrock",
    "bedrock-runtime",
    "ce",
    "sns",
)
USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:CreateGrant", "kms:*")


@cache
def _operations() -> dict[str, set[tuple[str, str]]]:
    """snake_case client method → the (service, Operation) pairs it names."""
    session = botocore.session.get_session()
    found: dict[str, set[tuple[str, str]]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            method = botocore.xform_name(operation)
            found.setdefault(method, set()).add((service, operation))
    return found


def _called_methods(path: Path) -> set[str]:
    """Client methods a module calls: `x.get_item(...)`, and `self._call("get_item", ...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    methods: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in _operations():
            methods.add(node.func.attr)
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "_call"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            methods.add(node.args[0].value)
    return methods


def test_every_client_method_the_deployed_code_calls_has_an_iam_mapping() -> None:
    # Given every module of the library that runs in a function or a producer
    modules = [p for p in LIBRARY.rglob("*.py") if not str(p.relative_to(LIBRARY)).startswith(NOT_DEPLOYED)]
    # When the AWS operations they call are collected
    unmapped = {}
    for module in modules:
        for method in _called_methods(module):
            pairs = _operations().get(method, set())
            if pairs and not any(pair in OPERATIONS for pair in pairs):
                unmapped[f"{module.relative_to(LIBRARY)}: {method}"] = sorted(pairs)
    # Then each has its IAM action in tests/iam/actions.py
    assert not unmapped, f"map these to their IAM action in tests/iam/actions.py OPERATIONS: {unmapped}"


def test_the_scan_sees_the_repositories_calls() -> None:
    # Given the budget repository (its calls go through `_call("…")` as well as the client)
    methods = _called_methods(LIBRARY / "repositories" / "budgets.py")
    # Then the scan finds both forms (a scan that found nothing would prove nothing)
    assert {"delete_item", "query", "update_item", "put_item"} <= methods


def _secrets_key(synth: Synth) -> dict[str, Any]:
    key: dict[str, Any]
    (key,) = [
        r
        for r in synth.template["Resources"].values()
        if r["Type"] == "AWS::KMS::Key" and "provider API keys" in r["Properties"].get("Description", "")
    ]
    return key


def _names_principal(statement: dict[str, Any], arn: str) -> bool:
    return arn in [str(p) for p in _as_list(statement.get("Principal", {}).get("AWS", []))]


def test_the_users_key_policy_names_each_role_that_uses_it_for_its_secrets(outcome: Outcome, synth: Synth) -> None:
    scenario = outcome.scenario
    statements = [scenario.resolver.resolve(s) for s in _secrets_key(synth)["Properties"]["KeyPolicy"]["Statement"]]
    key_arn = scenario.resolver.get_att(
        next(k for k, r in synth.template["Resources"].items() if r is _secrets_key(synth)), "Arn"
    )
    checked = 0
    for entry_key, principal in scenario.principals.items():
        # Given the KMS uses Secrets Manager made for this principal's recorded calls
        needs = [
            n
            for call in scenario.emulator.calls(0, principal)
            for n in requirements(call, scenario.emulator.arns)
            if n.action.startswith("kms:") and n.resource == key_arn
        ]
        if not needs:
            continue
        role_arn = _role_arn(synth, scenario, entry_key)
        named = PolicySet(entry_key, [s for s in statements if _names_principal(s, role_arn)])
        # Then the key policy itself allows each, for that role (IAM alone is not enough for a key)
        for need in needs:
            checked += 1
            assert named.allows(need.action, need.resource, need.context), (
                f"{entry_key}: the key policy does not let {role_arn} {need}"
            )
    assert checked >= 4  # API writes, connection test, notifier, producer read the key in the scenario


def _role_arn(synth: Synth, scenario: Any, entry_key: str) -> str:
    entry = next(e for e in ENTRIES if e.key == entry_key)
    if entry.function is None:
        return PRODUCER_ROLE_ARN
    _, function = function_resource(synth.template, synth.prefix, entry.function)
    return str(scenario.resolver.resolve(function["Properties"]["Role"]))


def test_the_account_administers_the_users_key_but_cannot_use_it(synth: Synth) -> None:
    # Given the users' key policy
    statements = _secrets_key(synth)["Properties"]["KeyPolicy"]["Statement"]
    # Then the account root (anyone IAM lets in) only administers it
    for statement in statements:
        principals = str(statement.get("Principal"))
        if ":root" in principals or statement.get("Principal") == "*":
            actions = _as_list(statement["Action"])
            assert not [a for a in actions if a.startswith(USE_ACTIONS)], statement
    # And every use names its principals and goes through Secrets Manager for matching secrets
    for statement in statements:
        if any(a.startswith(USE_ACTIONS) for a in _as_list(statement["Action"])):
            assert "kms:ViaService" in str(statement["Condition"]), statement
            assert "kms:EncryptionContext:SecretARN" in str(statement["Condition"]), statement


def test_the_notifier_and_the_connection_test_cannot_decrypt_each_others_secrets(
    outcome: Outcome, synth: Synth
) -> None:
    scenario = outcome.scenario
    statements = [scenario.resolver.resolve(s) for s in _secrets_key(synth)["Properties"]["KeyPolicy"]["Statement"]]
    via = {"kms:ViaService": f"secretsmanager.{scenario.resolver.region}.amazonaws.com"}
    secret = scenario.emulator.arns.secret
    webhook = secret(scenario.names.slack_webhook_secret_name("alice"))
    provider_key = secret(f"{scenario.names.secrets_prefix}alice/llm/openai")
    for entry_key, allowed, refused in (
        ("notify", webhook, provider_key),
        ("connection-test", provider_key, webhook),
        ("producer-provider", provider_key, webhook),
    ):
        named = PolicySet(
            entry_key, [s for s in statements if _names_principal(s, _role_arn(synth, scenario, entry_key))]
        )
        # Given a decrypt through Secrets Manager of each kind of secret
        # Then the key policy allows the principal's own kind only
        assert named.allows("kms:Decrypt", "*", {**via, "kms:EncryptionContext:SecretARN": allowed}), entry_key
        assert not named.allows("kms:Decrypt", "*", {**via, "kms:EncryptionContext:SecretARN": refused}), entry_key


def test_the_producer_writes_only_ledger_attributes(outcome: Outcome) -> None:
    from cdk_app.constructs.producers import LEDGER_ATTRIBUTES

    scenario = outcome.scenario
    policies = scenario.principals["producer-provider"].policies
    # Given the producer's recorded UpdateItems (a strict budget's reservation and settlement)
    updates = [
        c for c in scenario.emulator.calls(0, scenario.principals["producer-provider"]) if c.operation == "UpdateItem"
    ]
    assert updates, "the scenario made no reservation"
    named = set().union(*(expression_attributes(c.params, "UpdateExpression", "ConditionExpression") for c in updates))
    # Then they name ledger attributes only, which the condition allows
    assert named <= set(LEDGER_ATTRIBUTES), named
    settings = scenario.emulator.arns.table(scenario.names.settings_table)
    ledger_write = {"dynamodb:Attributes": ["user_id", "setting_type", "holds", "outstanding_nanos"]}
    assert policies.allows("dynamodb:UpdateItem", settings, ledger_write)
    # And an UpdateItem of a budget's limit, a preference or an alert record is refused
    for attribute in ("limit_nanos", "action", "preferences", "published_at"):
        forged = {"dynamodb:Attributes": ["user_id", "setting_type", attribute]}
        assert not policies.allows("dynamodb:UpdateItem", settings, forged), attribute
    assert not policies.allows("dynamodb:UpdateItem", settings, {**ledger_write, "dynamodb:ReturnValues": "ALL_NEW"})
    # And the plain producer reads no secret
    plain = scenario.principals["producer-publish"].policies
    assert not [a for a in plain.actions() if a.startswith(("secretsmanager:", "kms:"))]


def test_the_paths_the_scenario_does_not_run_are_allowed(outcome: Outcome, synth: Synth) -> None:
    scenario = outcome.scenario
    r = scenario.resolver
    failures = {
        name: r.get_att(
            next(k for k, v in synth.template["Resources"].items() if v["Properties"].get("QueueName") == name), "Arn"
        )
        for name in (scenario.names.aggregate_failures, scenario.names.alerts_failures)
    }
    stored_key = scenario.emulator.arns.secret(f"{scenario.names.secrets_prefix}alice/llm/openai")
    model = f"arn:aws:bedrock:{r.region}::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"
    profile = f"arn:aws:bedrock:{r.region}:{r.account}:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    paths = [
        # The connection test with Bedrock: the model lookup and one Converse call.
        ("connection-test", "bedrock:GetFoundationModel", model),
        ("connection-test", "bedrock:InvokeModel", model),
        ("connection-test", "bedrock:GetInferenceProfile", profile),
        ("connection-test", "bedrock:InvokeModel", profile),
        # Lambda records a batch that keeps failing in the stream source's on-failure queue, and a
        # notification that keeps failing in the notifier's, with the function's role.
        ("aggregate", "sqs:SendMessage", failures[scenario.names.aggregate_failures]),
        ("notify", "sqs:SendMessage", failures[scenario.names.alerts_failures]),
        # A key stored again after its secret was scheduled for deletion by hand.
        ("api", "secretsmanager:RestoreSecret", stored_key),
    ]
    for key, action, resource in paths:
        assert scenario.principals[key].policies.allows(action, resource), f"{key}: {action} on {resource}"


#: Operations the deployed code can call that the scenario does not reach, and where they are covered.
NOT_RUN: dict[str, str] = {
    "converse": "Bedrock (no Bedrock runtime in moto): the connection test's InvokeModel is checked in "
    "test_the_paths_the_scenario_does_not_run_are_allowed; a producer calling Bedrock uses its own role's grant",
    "converse_stream": "Bedrock streams, in producers only (their own role's bedrock:InvokeModelWithResponseStream)",
    "get_foundation_model": "the connection test's Bedrock model lookup: "
    "test_the_paths_the_scenario_does_not_run_are_allowed",
    "get_inference_profile": "the same, for an inference profile",
    "restore_secret": "the API storing a key whose secret was scheduled for deletion by hand: "
    "test_the_paths_the_scenario_does_not_run_are_allowed",
    # Users' alert e-mails (issue 17): the tier's recording server logs JSON-protocol calls only, and
    # SNS speaks the query protocol; the calls run on moto in tests/integration/api/test_alert_email.py,
    # their grants are checked on the template in tests/infra/test_user_alert_emails.py.
    "subscribe": "the API subscribing a user's alert address (SNS, not recorded by the tier)",
    "unsubscribe": "the API removing or replacing a user's alert address (SNS, not recorded by the tier)",
    "get_subscription_attributes": "the API reading whether the address confirmed (SNS, not recorded)",
    "scan": "`llmtally migrate-rollups --all` listing the tenants of the layout before packing (one Scan "
    "of the rollups table): an operator's command run with the operator's credentials, no deployed role",
    "publish": "the notifier publishing a user's alert e-mail (SNS, not recorded by the tier); the other "
    "`.publish(` calls the scan sees are llmtally's own publishers, not SNS",
}


def test_every_operation_the_code_calls_is_run_by_the_scenario_or_accounted_for(outcome: Outcome) -> None:
    # Given the AWS operations the deployed code calls, and those the scenario's principals made
    modules = [p for p in LIBRARY.rglob("*.py") if not str(p.relative_to(LIBRARY)).startswith(NOT_DEPLOYED)]
    called = {m for module in modules for m in _called_methods(module) if _operations().get(m)}
    made = {
        botocore.xform_name(call.operation)
        for principal in outcome.scenario.principals.values()
        for call in outcome.scenario.emulator.calls(0, principal)
    }
    # Then each is either run under a synthesized policy or listed with where it is covered
    assert called - made == set(NOT_RUN), sorted(called - made)
