"""`llmtally summary`: the usage-missing count, and `--by` / `--where` (a breakdown under a filter)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from llmtally import cli, queries
from tests.unit.test_queries import MemoryRollups
from tests.unit.test_rollups import Entry


def summary_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], entries: list[Entry], *flags: str
) -> str:
    """The summary command's text over in-memory rollups (no stack needed)."""
    repo = MemoryRollups(entries)
    real_summarize, real_daily = queries.summarize, queries.daily_usage
    monkeypatch.setattr(cli, "use_target", lambda *_: None)
    monkeypatch.setattr(queries, "summarize", lambda *a, **k: real_summarize(*a, repository=repo, **k))
    monkeypatch.setattr(queries, "daily_usage", lambda *a, **k: real_daily(*a, repository=repo, **k))
    monkeypatch.setattr(queries, "last_days", lambda days, tz, **_: [date(2025, 1, 1)])
    assert cli.main(["summary", "--user", "acme", "--days", "1", *flags]) == 0
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


def test_summary_by_a_tag_under_a_model_filter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given calls of two customers on two models, one call without the tag
    at = datetime(2025, 1, 1, 10, tzinfo=UTC)
    entries = [
        Entry(timestamp=at, model="gpt-5", provider="openai", tags={"customer": "acme"}, cost_nanos=3_000_000_000),
        Entry(timestamp=at, model="gpt-5", provider="openai", tags={"customer": "initech"}, cost_nanos=1_000_000_000),
        Entry(timestamp=at, model="gpt-5", provider="openai", cost_nanos=500_000_000),
        Entry(timestamp=at, tags={"customer": "acme"}, cost_nanos=7_000_000_000),
    ]
    repo = MemoryRollups(entries)
    real = queries.breakdown
    monkeypatch.setattr(queries, "breakdown", lambda *a, **k: real(*a, repository=repo, **k))
    # When `llmtally summary --by tag:customer --where model:gpt-5` runs
    out = summary_output(monkeypatch, capsys, entries, "--by", "tag:customer", "--where", "model:gpt-5")
    # Then it prints gpt-5's cost by customer, costliest first, with the untagged calls and the total
    assert "where model = gpt-5" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("    ")]
    assert [(cells[0], cells[1], cells[2]) for cells in lines[:4]] == [
        ("acme", "$3.0000", "66.67%"),
        ("initech", "$1.0000", "22.22%"),
        ("(none)", "$0.5000", "11.11%"),
        ("(total)", "$4.5000", "100.00%"),
    ]
    assert "by provider" not in out


def test_summary_refuses_a_bad_filter_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "use_target", lambda *_: None)
    assert cli.main(["summary", "--where", "colour:blue"]) == 1
    assert "not one of provider, model, operation or tag:<key>" in capsys.readouterr().err
