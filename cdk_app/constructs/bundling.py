"""Lambda assets bundled without Docker: pip for the target platform, then the library and the handler.

`LocalPipBundling.try_bundle` runs on the synthesizing machine (Docker is never used):

1. `pip install --platform manylinux2014_aarch64 --only-binary=:all: --python-version <runtime>
   --implementation cp -t <asset>` of the function's requirements — the library's dependencies
   (from pyproject.toml, so the bundle follows the library), Powertools (the `lambda` extra, with
   its tracer), and for the connection test only, the provider SDKs;
2. the packages the Lambda runtime already provides (boto3, botocore, s3transfer, pulled in by
   the X-Ray SDK) are removed: the runtime's own are used, as by every other AWS SDK call;
3. `shared/llmtally` (without `local/`, the emulator-backed local stack) and the handler package
   (`lambdas/<name>`) are copied in.

The asset hash is computed from those inputs (sources, requirements, platform), so an unchanged
function is not bundled again and its asset keeps its hash.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement

from cdk_app.config import REPO_ROOT

#: The Lambda runtime every function uses: the newest Python that aws-cdk-lib offers.
RUNTIME: Final = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE: Final = lambda_.Architecture.ARM_64
PIP_PLATFORM: Final = "manylinux2014_aarch64"
#: Provided by the Lambda Python runtime; never shipped in an asset.
RUNTIME_PROVIDED: Final = ("boto3", "botocore", "s3transfer")
#: Never in a pipeline or API asset (only the connection test's, which calls the providers).
PROVIDER_SDKS: Final = ("anthropic", "openai", "google.genai")
SHARED_DIR: Final = REPO_ROOT / "shared" / "llmtally"
LAMBDAS_DIR: Final = REPO_ROOT / "lambdas"
_IGNORED: Final = ("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
#: The library's subpackages no function needs: the local stack (moto, threads, an HTTP server).
_LIBRARY_EXCLUDED: Final = ("local",)


def runtime_python_version(runtime: lambda_.Runtime = RUNTIME) -> str:
    """`python3.14` → `3.14` (pip's `--python-version`)."""
    return runtime.name.removeprefix("python")


def _pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _without_runtime_provided(requirements: Iterable[str]) -> list[str]:
    return [req for req in requirements if Requirement(req).name not in RUNTIME_PROVIDED]


def _extra(name: str) -> list[str]:
    extras: dict[str, list[str]] = _pyproject()["project"]["optional-dependencies"]
    return [req for req in extras[name] if not req.startswith("llmtally[")]


def library_requirements() -> list[str]:
    """The library's own dependencies, boto3 excepted (the runtime has it)."""
    return _without_runtime_provided(_pyproject()["project"]["dependencies"])


def powertools_requirements() -> list[str]:
    """The `lambda` extra, with Powertools' tracer (the X-Ray SDK: the functions trace actively)."""
    out = []
    for req in _extra("lambda"):
        parsed = Requirement(req)
        if parsed.name == "aws-lambda-powertools":
            parsed.extras = {*parsed.extras, "tracer"}
        out.append(str(parsed))
    return out


def provider_requirements() -> list[str]:
    """The provider SDK extras (Bedrock is boto3, provided by the runtime)."""
    return _without_runtime_provided([req for name in ("anthropic", "openai", "google") for req in _extra(name)])


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """What one function's asset holds: a handler package from `lambdas/` and pip requirements."""

    handler_package: str
    requirements: tuple[str, ...]

    @property
    def handler_dir(self) -> Path:
        return LAMBDAS_DIR / self.handler_package

    def fingerprint(self) -> str:
        """A hash of everything the bundle is made from."""
        digest = hashlib.sha256()
        digest.update("\n".join((PIP_PLATFORM, RUNTIME.name, *self.requirements)).encode())
        for root in (SHARED_DIR, self.handler_dir):
            for path in sorted(_source_files(root)):
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


def _source_files(root: Path) -> Iterable[Path]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        if root == SHARED_DIR and relative.parts[0] in _LIBRARY_EXCLUDED:
            continue
        yield path


def pip_command(requirements: Sequence[str], target: str, *, runtime: lambda_.Runtime = RUNTIME) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        PIP_PLATFORM,
        "--only-binary=:all:",
        "--python-version",
        runtime_python_version(runtime),
        "--implementation",
        "cp",
        "--upgrade",
        "--target",
        target,
        *requirements,
    ]


def bundle(spec: AssetSpec, output_dir: Path) -> None:
    """Fill `output_dir` with the function's asset (see the module docstring)."""
    subprocess.run(pip_command(spec.requirements, str(output_dir)), check=True)  # noqa: S603 - fixed argv, no shell
    for name in RUNTIME_PROVIDED:
        shutil.rmtree(output_dir / name, ignore_errors=True)
        for info in output_dir.glob(f"{name}-*.dist-info"):
            shutil.rmtree(info, ignore_errors=True)
    shutil.copytree(
        SHARED_DIR,
        output_dir / "llmtally",
        ignore=shutil.ignore_patterns(*_IGNORED, *_LIBRARY_EXCLUDED),
        dirs_exist_ok=True,
    )
    shutil.copytree(
        spec.handler_dir,
        output_dir / spec.handler_package,
        ignore=shutil.ignore_patterns(*_IGNORED),
        dirs_exist_ok=True,
    )


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """CDK's local bundling hook: bundle on this machine and report success (no Docker)."""

    def __init__(self, spec: AssetSpec) -> None:
        self._spec = spec

    def try_bundle(self, output_dir: str, *, image: Any = None, **_options: Any) -> bool:
        bundle(self._spec, Path(output_dir))
        return True


def function_code(spec: AssetSpec) -> lambda_.Code:
    """The function's code asset, bundled locally; its hash is the inputs' fingerprint."""
    return lambda_.Code.from_asset(
        str(spec.handler_dir),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=spec.fingerprint(),
        bundling=BundlingOptions(
            # Required by the API, never pulled: local bundling always succeeds.
            image=RUNTIME.bundling_image,
            local=LocalPipBundling(spec),
        ),
    )


#: The assets. The pipeline, read and notifier functions never hold a provider SDK.
PIPELINE_REQUIREMENTS: Final = (*library_requirements(), *powertools_requirements())
INGEST_ASSET: Final = AssetSpec("ingest", PIPELINE_REQUIREMENTS)
AGGREGATE_ASSET: Final = AssetSpec("aggregate", PIPELINE_REQUIREMENTS)
#: The API also receives OTLP traces: `opentelemetry-proto` (protobuf) decodes them, imported on first use.
API_ASSET: Final = AssetSpec("api", (*PIPELINE_REQUIREMENTS, *_extra("otlp")))
#: The budget alert notifier (Slack through urllib: no extra dependency).
NOTIFY_ASSET: Final = AssetSpec("notify", PIPELINE_REQUIREMENTS)
#: The connection test runs the API's handler with the provider SDKs (it calls the providers).
CONNECTION_TEST_ASSET: Final = AssetSpec("api", (*PIPELINE_REQUIREMENTS, *provider_requirements()))
ASSETS: Final = {
    "ingest": INGEST_ASSET,
    "aggregate": AGGREGATE_ASSET,
    "api": API_ASSET,
    "connection-test": CONNECTION_TEST_ASSET,
    "notify": NOTIFY_ASSET,
}
