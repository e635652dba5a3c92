"""Lambda asset sizes: each function's bundle as `make synth` builds it, unzipped and zipped.

    .venv/bin/python -m bench assets

Bundles every asset with the CDK app's own local bundling (`cdk_app.constructs.bundling.bundle`:
pip for manylinux2014_aarch64 and the runtime's Python, then the library and the handler) into a
temporary directory — no node, no Docker; pip's cache makes a rerun quick — and zips it as CDK
does (deflate). Lambda's limits: 250 MB unzipped (function and layers), 50 MB zipped for a direct
upload (CDK uploads through S3). Nothing is asserted (docs/BENCHMARKS.md records the figures).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

# jsii (imported with aws-cdk-lib) starts node; Node 20 is past jsii's support window.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cdk_app.constructs.bundling import ASSETS, RUNTIME, bundle

MB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MB


def unzipped_size(root: Path) -> tuple[int, int]:
    """(bytes, files) under `root`."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def zipped_size(root: Path, archive: Path) -> int:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root))
    return archive.stat().st_size


def main() -> None:
    print(f"runtime {RUNTIME.name}, arm64; Lambda's limit: {LAMBDA_UNZIPPED_LIMIT // MB} MB unzipped")
    with tempfile.TemporaryDirectory(prefix="llmtally-assets-") as tmp:
        for name, spec in ASSETS.items():
            out = Path(tmp) / name
            bundle(spec, out)
            raw, files = unzipped_size(out)
            zipped = zipped_size(out, Path(tmp) / f"{name}.zip")
            print(
                f"  {name:<16} {raw / MB:7.1f} MB unzipped ({files} files) {zipped / MB:7.1f} MB zipped"
                f"  ({100 * raw / LAMBDA_UNZIPPED_LIMIT:.0f}% of the limit)"
            )


if __name__ == "__main__":
    main()
