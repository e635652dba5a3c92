"""Each principal's real code, run under the policy the CDK app synthesizes for it, on an emulator
that enforces IAM (actions), with every call also checked against the resolved statements
(resources and conditions). A call the policy does not allow fails here, naming action and resource.
"""

from __future__ import annotations

import pytest

from tests.iam.conftest import Outcome, Synth
from tests.iam.harness import Denial, Emulator
from tests.iam.scenario import ALICE, ENTRIES, STEPS, Scenario

pytestmark = pytest.mark.xdist_group("iam")


def _report(key: str, denials: list[Denial], problems: list[str]) -> str:
    lines = [f"{key}: the synthesized policy does not allow what its code does:"]
    lines += [f"  - {d}" for d in denials]
    if problems:
        lines.append(f"{key}: and the code's run went wrong:")
        lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


def assert_allowed(key: str, denials: list[Denial], problems: list[str]) -> None:
    if denials or problems:
        raise AssertionError(_report(key, denials, problems))


@pytest.mark.parametrize("key", [entry.key for entry in ENTRIES])
def test_every_call_of_the_code_is_allowed_by_its_synthesized_policy(outcome: Outcome, key: str) -> None:
    # Given the principal's code run in the scenario, under its synthesized policy (moto enforcing)
    calls = outcome.scenario.emulator.calls(0, outcome.scenario.principals[key])
    # Then it made AWS calls, none was refused, and each is allowed on its resource
    assert calls, f"{key}: the scenario ran none of its code against the emulator"
    assert_allowed(key, outcome.findings[key], outcome.scenario.problems.get(key, []))


def test_no_step_of_the_scenario_failed(outcome: Outcome) -> None:
    # Given the scenario's steps
    step_names = {step.name for step in STEPS}
    # Then none raised
    raised = {k: v for k, v in outcome.scenario.problems.items() if k in step_names}
    assert not raised, raised


def test_every_route_of_the_openapi_document_ran_under_the_function_the_template_routes_it_to(
    outcome: Outcome,
) -> None:
    from api.handler import openapi_document

    # Given the served OpenAPI document
    operations = {(method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item}
    # Then the scenario drove each of its operations
    missing = operations - set(outcome.scenario.routes)
    assert not missing, f"routes the IAM tier does not drive: {sorted(missing)}"
    # And the connection test ran in its own function, everything else in the API function
    assert outcome.scenario.routes[("POST", "/api/llm-settings/{userId}/test")] == "connection-test"
    assert {k for r, k in outcome.scenario.routes.items() if r[1] != "/api/llm-settings/{userId}/test"} == {"api"}


def test_every_function_of_the_stack_has_an_entry(synth: Synth) -> None:
    # Given the functions the app synthesizes (the CDK's own helper functions aside)
    ours = {
        res["Properties"]["FunctionName"].removeprefix(f"{synth.prefix}-")
        for res in synth.template["Resources"].values()
        if res["Type"] == "AWS::Lambda::Function"
        and str(res["Properties"].get("FunctionName", "")).startswith(synth.prefix)
    }
    managed = {
        res["Properties"]["ManagedPolicyName"].removeprefix(f"{synth.prefix}-")
        for res in synth.template["Resources"].values()
        if res["Type"] == "AWS::IAM::ManagedPolicy"
    }
    # Then each function and each producer policy is run by the tier
    assert ours == {e.function for e in ENTRIES if e.function}, "add an Entry and a Step in tests/iam/scenario.py"
    assert managed == {p for e in ENTRIES for p in e.managed_policies}


def test_the_tier_fails_when_an_action_is_removed_from_a_synthesized_policy(
    outcome: Outcome, synth: Synth, emulator: Emulator
) -> None:
    # Given the API function's synthesized policy without dynamodb:DeleteItem (granted nowhere else:
    # moto's action check refuses it), and without dynamodb:Query on the settings table only (still
    # granted on the usage and rollups tables: only the resource check sees it)
    scenario = outcome.scenario
    settings_arn = scenario.resolver.get_att(
        next(
            k
            for k, r in synth.template["Resources"].items()
            if r["Type"] == "AWS::DynamoDB::Table" and r["Properties"]["TableName"] == scenario.names.settings_table
        ),
        "Arn",
    )
    synthesized = scenario.principals["api"].policies
    trimmed = synthesized.without_action("dynamodb:DeleteItem").without_action("dynamodb:Query", settings_arn)
    assert "dynamodb:DeleteItem" in synthesized.actions()
    assert "dynamodb:DeleteItem" not in trimmed.actions()
    assert "dynamodb:Query" in trimmed.actions()
    weakened = Scenario(**{**scenario.__dict__, "principals": dict(scenario.principals), "problems": {}, "routes": {}})
    weakened.principals["api"] = emulator.principal("api-weakened", trimmed)
    # When the alert list and the budget's removal run under it
    start = emulator.mark()
    weakened.api("GET", "/api/llm-settings/{userId}/budget/alerts", f"/api/llm-settings/{ALICE}/budget/alerts")
    weakened.api("DELETE", "/api/llm-settings/{userId}/budget", f"/api/llm-settings/{ALICE}/budget")
    denials = emulator.check(weakened.principals["api"], emulator.calls(start, weakened.principals["api"]))
    # Then the tier fails, naming each action with its resource
    with pytest.raises(AssertionError) as failed:
        assert_allowed("api", denials, weakened.problems.get("api", []))
    message = str(failed.value)
    assert f"dynamodb:DeleteItem on {settings_arn}" in message
    assert "refused by the emulator: AccessDenied" in message
    assert f"dynamodb:Query on {settings_arn}" in message
    assert "not allowed on that resource by the synthesized policy" in message
    assert "DELETE /api/llm-settings/alice-iam/budget answered 503" in message
