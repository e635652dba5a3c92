"""The IAM-parity tier: the CDK app synthesized once, an emulator with IAM enforcement on, every
principal's real code run once under its synthesized policy (see tests/iam/scenario.py).

Every test module here is in the `iam` xdist group, so one worker pays for the synthesis, the
emulator and the scenario once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.iam.harness import Denial, Emulator
from tests.iam.policies import Resolver
from tests.iam.scenario import ENTRIES, STEPS, Scenario, entry_policies, function_resource

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

#: The producer role the deployment names in `producerRoleArns` (the users' key policy lets it decrypt).
PRODUCER_ROLE_ARN = "arn:aws:iam::123456789012:role/iam-tier-producer"


@dataclass(frozen=True)
class Synth:
    template: dict[str, Any]
    prefix: str


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The real app (`cdk_app.app.build_app`): default context but for one producer role named for
    the users' key and the reconciler's Bedrock source switched on; asset bundling skipped."""
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the CDK app (jsii) cannot be synthesized", pytrace=False)
    from cdk_app.app import build_app

    web = tmp_path_factory.mktemp("iam-web")
    (web / "index.html").write_text("<!doctype html><title>llmtally</title>", encoding="utf-8")
    app = build_app(
        {
            "aws:cdk:bundling-stacks": [],
            "webDistDir": str(web),
            "producerRoleArns": [PRODUCER_ROLE_ARN],
            # The reconciler's Bedrock source (Cost Explorer) runs too.
            "reconcileBedrock": True,
            "reconcileBedrockDefaultUser": "alice-iam",
        },
        outdir=str(tmp_path_factory.mktemp("iam-cdk")),
        nag=False,
    )
    (stack,) = app.synth().stacks
    template = stack.template
    prefixes = {
        res["Properties"]["Environment"]["Variables"]["LLMTALLY_PREFIX"]
        for res in template["Resources"].values()
        if res["Type"] == "AWS::Lambda::Function"
        and "LLMTALLY_PREFIX" in res["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert len(prefixes) == 1, prefixes
    return Synth(template, prefixes.pop())


@dataclass
class Outcome:
    scenario: Scenario
    findings: dict[str, list[Denial]]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    started = Emulator.start(tmp_path_factory.mktemp("iam-emulator"))
    try:
        yield started
    finally:
        started.stop()


def build_scenario(emulator: Emulator, synth: Synth, slack: Any) -> Scenario:
    from llmtally.resources import ResourceNames

    resolver: Resolver = emulator.provision(synth.template, synth.prefix)
    scenario = Scenario(emulator, synth.template, resolver, synth.prefix, slack, ResourceNames(synth.prefix))
    overrides = {
        # Not from the template: where the stand-in Slack listens (the deployed default is hooks.slack.com).
        "LLMTALLY_SLACK_WEBHOOK_ALLOWED_PREFIX": slack.allowed_prefix,
    }
    for entry in ENTRIES:
        policies = entry_policies(synth.template, synth.prefix, entry, resolver)
        scenario.principals[entry.key] = emulator.principal(entry.key, policies)
        if entry.function is not None:
            _, function = function_resource(synth.template, synth.prefix, entry.function)
            variables = function["Properties"].get("Environment", {}).get("Variables", {})
            scenario.environments[entry.key] = {**emulator.environment(variables, resolver), **overrides}
        else:
            scenario.environments[entry.key] = {"LLMTALLY_PREFIX": synth.prefix, **overrides}
    return scenario


@pytest.fixture(scope="session")
def outcome(emulator: Emulator, synth: Synth) -> Iterator[Outcome]:
    """Every step of the scenario, run once; then each principal's calls checked."""
    from tests.support.slack import fake_slack

    with fake_slack() as slack:
        start = emulator.mark()
        scenario = build_scenario(emulator, synth, slack)
        for step in STEPS:
            try:
                step.run(scenario)
            except Exception as exc:  # reported against every principal the step concerns
                scenario.problem(step.name, f"step raised {exc!r}")
        emulator.learn_secret_keys(start)
        findings = {
            key: emulator.check(principal, emulator.calls(start, principal))
            for key, principal in scenario.principals.items()
        }
        yield Outcome(scenario, findings)
