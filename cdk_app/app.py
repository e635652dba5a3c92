"""`cdk synth` / `cdk deploy` entry point (cdk.json: `"app"`), and `python -m cdk_app.app` for offline synthesis.

Context keys: `cdk_app.config.CONTEXT_KEYS`. cdk-nag's AwsSolutions pack runs on every synthesis:
an unacknowledged finding fails it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT / "shared", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from aws_cdk import App  # noqa: E402

from cdk_app.config import AppConfig  # noqa: E402
from cdk_app.nag import add_nag  # noqa: E402
from cdk_app.stack import LlmTallyStack  # noqa: E402

#: Feature flags this app relies on (cdk.json may add others; explicit context wins).
FEATURE_FLAGS: dict[str, Any] = {
    # Server access logs are granted by a bucket policy, not the legacy LogDeliveryWrite ACL.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def build_app(context: dict[str, Any] | None = None, *, outdir: str | None = None, nag: bool = True) -> App:
    """The app with its one stack. The stack is environment-agnostic: `cdk deploy` puts it in the
    account and region of the caller's AWS profile (every ARN uses CloudFormation's pseudo parameters)."""
    app = App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    config = AppConfig.from_context(app.node.try_get_context)
    LlmTallyStack(app, config.stack_name, config=config)
    if nag:
        add_nag(app)
    return app


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context: the CDK CLI passes it in CDK_CONTEXT_JSON; `python -m cdk_app.app` reads it here."""
    if os.environ.get("CDK_CONTEXT_JSON"):
        return {}
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    return context


def main() -> None:
    build_app(cdk_json_context()).synth()


if __name__ == "__main__":
    main()
