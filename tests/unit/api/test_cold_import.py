"""The API handler's cold start imports no provider SDK and creates no AWS client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[3]
PROVIDER_SDKS = ("anthropic", "openai", "google.genai", "google.generativeai", "httpx2", "httpx")

PROBE = """
import json, sys
import api.handler
import llmtally.aws as aws
print(json.dumps({"modules": sorted(sys.modules), "clients": aws._client.cache_info().currsize}))
"""


def _probe(code: str) -> dict[str, object]:
    env_path = [str(ROOT / "shared"), str(ROOT / "lambdas"), str(ROOT)]
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path!r}\n{code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONWARNINGS": "error"},
    )
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_importing_the_handler_imports_no_provider_sdk_nor_the_provider_layer() -> None:
    data = _probe(PROBE)
    modules = set(cast(list[str], data["modules"]))
    for sdk in PROVIDER_SDKS:
        assert sdk not in modules, sdk
    assert not any(m.startswith("llmtally.providers") for m in modules)
    assert data["clients"] == 0
