"""`import llmtally` / `import llmtally.providers` load no provider SDK; each loads when its provider is used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SDKS = ("anthropic", "openai", "google.genai", "boto3", "botocore", "httpx2")


def _loaded_after(code: str) -> list[str]:
    script = "\n".join(
        [
            "import json, sys",
            textwrap.dedent(code).strip(),
            f"print(json.dumps([m for m in {SDKS!r} if m in sys.modules]))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_library_and_the_providers_loads_no_sdk() -> None:
    assert _loaded_after("import llmtally, llmtally.providers") == []
    assert _loaded_after("from llmtally.providers import LLMProviderFactory, FallbackProvider, TrackedProvider") == []


def test_creating_a_provider_loads_nothing_and_first_use_loads_only_its_sdk() -> None:
    code = """
        from llmtally.providers import LLMProviderFactory
        p = LLMProviderFactory.create("openai", api_key="sk-test-0000000000000000")
        assert "openai" not in sys.modules
        p.client
    """
    assert _loaded_after(code) == ["openai", "httpx2"]


PROVIDER_SDKS = {"anthropic": "anthropic", "openai": "openai", "google": "google.genai", "bedrock": "boto3"}


def test_each_provider_loads_its_own_sdk_and_no_other() -> None:
    for name, sdk in PROVIDER_SDKS.items():
        key = "" if name == "bedrock" else ', api_key="test-key-0000"'
        code = f"""
            from llmtally.providers import LLMProviderFactory
            LLMProviderFactory.create("{name}"{key}).client
        """
        loaded = set(_loaded_after(code))
        others = {s for n, s in PROVIDER_SDKS.items() if n != name and s != "boto3"}
        assert sdk in loaded, name
        assert not loaded & others, (name, loaded)
