"""cdk-nag (AwsSolutions) with zero unacknowledged findings, every acknowledgment with a reason;
cfn-lint with no error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import STACK_NAME, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

#: What is acknowledged, and where: a new finding must be fixed or added here with its reason in code.
EXPECTED_ACKNOWLEDGED = {
    "AwsSolutions-APIG4",  # the HTTP ingest routes: ingest keys checked by the function (docs/ingest.md)
    "AwsSolutions-CFR1",
    "AwsSolutions-CFR2",
    "AwsSolutions-CFR3",
    "AwsSolutions-CFR4",
    "AwsSolutions-COG8",
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-L1",
    "AwsSolutions-SMG4",
    "AwsSolutions-SQS3",
}


def test_cdk_nag_passes(synthesized: Synthesized) -> None:
    # Synthesis itself fails on an unacknowledged finding; the report confirms the plugin ran.
    (report,) = synthesized.report["pluginReports"]
    assert report["pluginName"] == "AwsSolutions"
    assert report["conclusion"] == "success"
    assert report["violations"] == []


def test_every_acknowledgment_is_expected_and_explained(synthesized: Synthesized) -> None:
    (report,) = synthesized.report["pluginReports"]
    suppressed = report["suppressedViolations"]
    rules = {item["ruleName"].split("[", 1)[0] for item in suppressed}
    assert rules == EXPECTED_ACKNOWLEDGED
    for item in suppressed:
        assert len(item["reason"]) >= 40, item


def test_own_functions_need_no_runtime_acknowledgment(synthesized: Synthesized) -> None:
    # L1 (latest runtime) is acknowledged for CDK's BucketDeployment handler only.
    (report,) = synthesized.report["pluginReports"]
    for item in report["suppressedViolations"]:
        if item["ruleName"] == "AwsSolutions-L1":
            paths = [c["constructPath"] for c in item["violatingConstructs"]]
            assert all("CDKBucketDeployment" in path for path in paths), paths


def test_cfn_lint_reports_no_error(synthesized: Synthesized) -> None:
    template = synthesized.outdir / f"{STACK_NAME}.template.json"
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--non-zero-exit-code", "error", str(template)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
