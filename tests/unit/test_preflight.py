"""`make test` on a fresh machine: what it cannot install itself is named in its first seconds, in
one line, instead of ten browser tests erroring ten minutes in (`make preflight`, `.ci/preflight`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT = ROOT / ".ci" / "preflight"


def _env(**changes: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAKE", "MFLAGS"))}
    env.update(LLMTALLY_PREFLIGHT_INSTALL="0", **changes)
    return env


def _messages(stderr: str) -> list[str]:
    """What preflight said (make's own `make: *** … Error 1` line left out)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("make: ***")]


@pytest.fixture
def fake_chromium(tmp_path: Path) -> Path:
    path = tmp_path / "chromium"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_make_test_runs_preflight_before_anything_else() -> None:
    # When `make test` is dry-run; then its very first command is the preflight
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(".ci/preflight")


def test_a_missing_chromium_stops_make_test_with_one_line_saying_what_to_run(tmp_path: Path) -> None:
    # Given a machine without Chromium where preflight may not install it
    missing = tmp_path / "no-chromium"
    # When `make test` starts
    result = subprocess.run(
        ["make", "--no-print-directory", "test"],
        cwd=ROOT,
        env=_env(LLMTALLY_CHROMIUM=str(missing)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it stops at once, with exactly one line naming the fix
    assert result.returncode != 0
    (line,) = _messages(result.stderr)
    assert line.startswith("make test: ")
    assert str(missing) in line
    assert "apt-get install -y chromium" in line
    assert "LLMTALLY_CHROMIUM" in line
    assert result.stdout == ""  # nothing else ran: no venv, no lint, no npm


def test_a_missing_node_is_named_in_one_line(tmp_path: Path, fake_chromium: Path) -> None:
    # Given a PATH with bash and python3 but no node
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(Path(found).resolve())
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())  # the real interpreter, not a shim
    result = subprocess.run(
        [str(PREFLIGHT)],
        env=_env(PATH=str(bin_dir), LLMTALLY_CHROMIUM=str(fake_chromium)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = _messages(result.stderr)
    assert "node/npm are not on PATH" in line
    assert "20.19" in line


def test_with_everything_present_preflight_passes_silently(fake_chromium: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "preflight"],
        cwd=ROOT,
        env=_env(LLMTALLY_CHROMIUM=str(fake_chromium)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
