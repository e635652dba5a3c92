"""The API handler's cold start imports no provider SDK and creates no AWS client; and it pays for
the X-Ray SDK only when tracing is on (inside Lambda, `POWERTOOLS_TRACE_DISABLED` not true)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROVIDER_SDKS = ("anthropic", "openai", "google.genai", "google.generativeai", "httpx2", "httpx")
#: What the Lambda runtime sets (the tracer is created only inside Lambda).
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api", "LAMBDA_TASK_ROOT": "/var/task"}

PROBE = """
import json, sys
import api.handler
import llmtally.aws as aws
from llmtally.observability import tracer
print(json.dumps({
    "modules": sorted(sys.modules),
    "clients": aws._client.cache_info().currsize,
    "tracer": type(tracer).__module__ + "." + type(tracer).__name__,
}))
"""


def _probe(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    env_path = [str(ROOT / "shared"), str(ROOT / "lambdas"), str(ROOT)]
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path!r}\n{code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONWARNINGS": "error", **(env or {})},
    )
    data: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_importing_the_handler_imports_no_provider_sdk_nor_the_provider_layer() -> None:
    data = _probe(PROBE)
    modules = set(cast(list[str], data["modules"]))
    for sdk in PROVIDER_SDKS:
        assert sdk not in modules, sdk
    assert not any(m.startswith("llmtally.providers") for m in modules)
    assert data["clients"] == 0


@pytest.mark.parametrize(
    ("env", "traced"),
    [
        ({}, False),  # tests, the local stack: no X-Ray daemon to send to
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),  # deployed with `-c tracing=false`
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),  # deployed, tracing on (the default)
    ],
)
def test_the_x_ray_sdk_is_imported_only_when_tracing_is_on(env: dict[str, str], traced: bool) -> None:
    # Given the environment the function starts in / When the handler is imported
    data = _probe(PROBE, env)
    modules = set(cast(list[str], data["modules"]))
    # Then Powertools' Tracer (and with it the X-Ray SDK) exists only when tracing is on
    assert ("aws_xray_sdk" in modules) is traced
    # And it patches what the functions use, not every library X-Ray supports (`patch_all` would
    # import sqlite3, requests, httpx … at cold start)
    assert "sqlite3" not in modules
    assert ("aws_xray_sdk.ext.botocore.patch" in modules) is traced
    expected = "aws_lambda_powertools.tracing.tracer.Tracer" if traced else "llmtally.observability.Untraced"
    assert data["tracer"] == expected
