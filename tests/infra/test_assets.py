"""Each function's asset, really bundled (local pip for manylinux2014_aarch64, no Docker): its handler
and the library are there, binary wheels are built for arm64 and the runtime's Python, and no
provider SDK is in a pipeline or read-API asset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdk_app.constructs.bundling import PROVIDER_SDKS, RUNTIME, RUNTIME_PROVIDED
from tests.infra.conftest import STACK_NAME, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

FUNCTIONS = {"ingest": "ingest", "aggregate": "aggregate", "api": "api", "connection-test": "api", "notify": "notify"}


def asset_dirs(bundled: Synthesized) -> dict[str, Path]:
    """Function name → its bundled asset directory in cdk.out (via the assets manifest)."""
    manifest = json.loads((bundled.outdir / f"{STACK_NAME}.assets.json").read_text(encoding="utf-8"))
    by_key = {
        next(iter(entry["destinations"].values()))["objectKey"]: bundled.outdir / entry["source"]["path"]
        for entry in manifest["files"].values()
    }
    dirs = {}
    for resource in bundled.resources("AWS::Lambda::Function").values():
        name = resource["Properties"].get("FunctionName", "")
        short = name.removeprefix("mantissa-log-")
        if short in FUNCTIONS:
            dirs[short] = by_key[resource["Properties"]["Code"]["S3Key"]]
    return dirs


@pytest.fixture(scope="module")
def assets(bundled: Synthesized) -> dict[str, Path]:
    dirs = asset_dirs(bundled)
    assert set(dirs) == set(FUNCTIONS)
    return dirs


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_asset_holds_handler_and_library(assets: dict[str, Path], function: str) -> None:
    root = assets[function]
    package = FUNCTIONS[function]
    assert (root / package / "handler.py").is_file()
    assert (root / "llmtally" / "__init__.py").is_file()
    assert (root / "llmtally" / "data" / "models.json").is_file()
    assert not (root / "llmtally" / "local").exists(), "the local stack is not shipped"
    assert (root / "aws_lambda_powertools").is_dir()
    assert (root / "aws_xray_sdk").is_dir(), "Powertools' tracer needs the X-Ray SDK (tracing is active)"
    assert not list(root.rglob("__pycache__"))


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_binary_wheels_target_the_runtime(assets: dict[str, Path], function: str) -> None:
    root = assets[function]
    tag = RUNTIME.name.removeprefix("python").replace(".", "")
    (core,) = (root / "pydantic_core").glob("_pydantic_core.*.so")
    assert core.name == f"_pydantic_core.cpython-{tag}-aarch64-linux-gnu.so"
    for so in root.rglob("*.so"):
        assert "x86_64" not in so.name, so
    for name in RUNTIME_PROVIDED:
        assert not (root / name).exists(), f"{name} is provided by the Lambda runtime"


@pytest.mark.parametrize("function", ["ingest", "aggregate", "api", "notify"])
def test_no_provider_sdk_in_pipeline_or_api(assets: dict[str, Path], function: str) -> None:
    root = assets[function]
    for sdk in PROVIDER_SDKS:
        assert not (root / Path(*sdk.split("."))).exists(), f"{sdk} must not be in the {function} asset"


def test_connection_test_has_the_provider_sdks(assets: dict[str, Path]) -> None:
    root = assets["connection-test"]
    for sdk in PROVIDER_SDKS:
        assert (root / Path(*sdk.split("."))).is_dir(), sdk
