"""`llmtally summary` prints the usage-missing count when some calls' usage never arrived."""

from __future__ import annotations

from datetime import date

import pytest

from llmtally import cli, queries
from tests.unit.test_queries import MemoryRollups
from tests.unit.test_rollups import Entry


def summary_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], entries: list[Entry]) -> str:
    """The summary command's text over in-memory rollups (no stack needed)."""
    repo = MemoryRollups(entries)
    real_summarize, real_daily = queries.summarize, queries.daily_usage
    monkeypatch.setattr(cli, "use_target", lambda *_: None)
    monkeypatch.setattr(queries, "summarize", lambda *a, **k: real_summarize(*a, repository=repo, **k))
    monkeypatch.setattr(queries, "daily_usage", lambda *a, **k: real_daily(*a, repository=repo, **k))
    monkeypatch.setattr(queries, "last_days", lambda days, tz, **_: [date(2025, 1, 1)])
    assert cli.main(["summary", "--user", "acme", "--days", "1"]) == 0
    return capsys.readouterr().out


def test_the_summary_line_counts_calls_whose_usage_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three calls, two of them with missing usage
    entries = [Entry(), Entry(usage_missing=True), Entry(usage_missing=True, status="error")]
    # When the summary is printed, Then the requests line says so
    out = summary_output(monkeypatch, capsys, entries)
    assert "requests   3  (1 errors, 0 unpriced, 2 usage missing)" in out


def test_the_summary_line_is_unchanged_without_missing_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = summary_output(monkeypatch, capsys, [Entry(), Entry()])
    assert "requests   2  (0 errors, 0 unpriced)" in out
    assert "usage missing" not in out
