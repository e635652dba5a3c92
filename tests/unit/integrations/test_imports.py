"""The integrations cost nothing to those who do not use them: `import llmtally` loads none of them, and the API
handler's cold start loads neither OpenTelemetry, protobuf nor LiteLLM (the OTLP decoder imports them on first use)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
import llmtally
library = sorted(sys.modules)
import api.handler
print(json.dumps({"library": library, "handler": sorted(sys.modules)}))
"""


def test_neither_the_library_nor_the_api_cold_start_imports_an_integration_package() -> None:
    # Given a fresh interpreter with the handlers' path
    path = [str(ROOT / "shared"), str(ROOT / "lambdas"), str(ROOT)]
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {path!r}\n{PROBE}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONWARNINGS": "error"},
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    # Then `import llmtally` loads no integration, and the handler none of their third-party packages
    assert not [m for m in modules["library"] if m.startswith("llmtally.integrations")]
    for package in ("opentelemetry", "google.protobuf", "litellm"):
        assert not [m for m in modules["handler"] if m == package or m.startswith(package + ".")], package
