"""cdk-nag (AwsSolutions, the 3.x API): the plugin and the one way to acknowledge a finding.

Each acknowledgment names one rule — and for IAM4/IAM5, the exact policy, action or resource
(`applies_to`, as cdk-nag prints it) — on one construct and what is under it, with its reason in
code. `tests/infra` lists them and checks that synthesis reports no other finding.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def add_nag(app: App) -> None:
    """Run the AwsSolutions pack on synthesis: an unacknowledged finding fails `app.synth()`."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str, *, applies_to: Sequence[str] = ()) -> None:
    """Acknowledge `rule_id` (e.g. `AwsSolutions-IAM5`) on `scope`, only for `applies_to` if given."""
    ids = [f"{PACK}::{rule_id}[{finding}]" for finding in applies_to] or [f"{PACK}::{rule_id}"]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule in ids))
