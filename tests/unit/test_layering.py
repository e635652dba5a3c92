"""Repositories import domain modules, never the services that use them (STYLE.md point 11).

A repository that imports its service back forms a circle (the service imports the repository
lazily, so it only bites at import order) and loads the service's dependencies wherever the
repository alone is needed.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import llmtally.repositories

#: Services, not domain modules: what a repository must not load.
SERVICES = ("llmtally.ingest", "llmtally.aggregate", "llmtally.api.usage", "llmtally.cli")


def test_no_repository_loads_a_service() -> None:
    # Given every module of llmtally.repositories, imported in a fresh interpreter
    modules = sorted(
        f"llmtally.repositories.{info.name}" for info in pkgutil.iter_modules(llmtally.repositories.__path__)
    )
    assert "llmtally.repositories.rejects" in modules
    script = "\n".join(
        [
            "import importlib, json, sys",
            f"for name in {modules!r}: importlib.import_module(name)",
            f"print(json.dumps([m for m in {SERVICES!r} if m in sys.modules]))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120)
    # Then none of the services was loaded
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_ingest_still_exports_the_reject_types() -> None:
    # (callers that imported them from the ingest before they moved keep working)
    from llmtally import ingest, rejects
    from llmtally.repositories import rejects as repository

    assert ingest.RejectReason is rejects.RejectReason
    assert ingest.MAX_STORED_BODY_BYTES == repository.MAX_STORED_BODY_BYTES == rejects.MAX_STORED_BODY_BYTES
    assert repository.RejectRecord is rejects.RejectRecord
