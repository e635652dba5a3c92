"""The CDK tier: the app synthesized once per session (cdk-nag on, bundling skipped), and once with
real local bundling for the asset tests. jsii needs node on PATH; without it the tier fails loudly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

STACK_NAME = "mantissa-log-llmtally"


def _require_node() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the CDK app (jsii) cannot be synthesized", pytrace=False)


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    template: dict[str, Any]
    report: dict[str, Any]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.template["Resources"].items() if res["Type"] == kind}

    def one(self, kind: str, **properties: Any) -> tuple[str, dict[str, Any]]:
        """The one resource of `kind` whose properties include `properties`."""
        found = [
            (name, res)
            for name, res in self.resources(kind).items()
            if all(res["Properties"].get(k) == v for k, v in properties.items())
        ]
        assert len(found) == 1, f"{len(found)} {kind} match {properties}"
        return found[0]


@pytest.fixture(scope="session")
def web_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for `web/dist` (the real one is built by `make web`; this tier needs no npm)."""
    dist = tmp_path_factory.mktemp("web-dist")
    (dist / "index.html").write_text("<!doctype html><title>llmtally</title>", encoding="utf-8")
    return dist


def _synth(outdir: Path, context: dict[str, Any], *, nag: bool) -> Synthesized:
    _require_node()
    from cdk_app.app import build_app

    app = build_app(context, outdir=str(outdir), nag=nag)
    assembly = app.synth()
    template = assembly.get_stack_by_name(STACK_NAME).template
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    return Synthesized(outdir, template, report)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Synthesized:
    """The app with default context, cdk-nag on, asset bundling skipped."""
    return _synth(
        tmp_path_factory.mktemp("cdk.out"),
        {"aws:cdk:bundling-stacks": [], "webDistDir": str(web_dist)},
        nag=True,
    )


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Synthesized:
    """The app synthesized with real local bundling (pip for arm64; pip's cache makes reruns fast)."""
    return _synth(tmp_path_factory.mktemp("cdk.out.bundled"), {"webDistDir": str(web_dist)}, nag=False)


@pytest.fixture(scope="session")
def assertions(synthesized: Synthesized) -> Any:
    """`aws_cdk.assertions.Template` of the synthesized stack."""
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized.template)
