"""The `llmtally` command line without a stack: help for every command, the price catalog, the bar
chart's arithmetic, and clear errors (busy port, missing dashboard build, no local stack)."""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally import cli

COMMANDS = ("local", "demo", "summary", "rebuild", "prices", "rejects")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: llmtally {command}")
    assert "--" in out  # it documents options


def test_prices_lists_the_catalog_filtered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "--provider", "anthropic", "--search", "3-5-sonnet")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "USD per 1M tokens"
    assert lines[1].split() == ["provider", "model", "input", "output", "cache", "rd", "cache", "wr", "1M+1M", "source"]
    assert lines[2].split() == [
        "anthropic",
        "claude-3-5-sonnet-20241022",
        "3.000",
        "15.000",
        "0.300",
        "3.750",
        "18.00",
        "catalog",
        "(legacy)",
    ]
    assert len(lines) == 3


def test_prices_as_json_keeps_decimal_strings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "--provider", "openai", "--current", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows
    assert {row["provider"] for row in rows} == {"openai"}
    assert {row["status"] for row in rows} == {"current"}
    gpt4o = next(row for row in rows if row["model"] == "gpt-4o")
    assert gpt4o["prices_per_mtok"]["input_mtok"] == "2.5"


def test_prices_says_when_nothing_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "prices", "--search", "no-such-model")[:2] == (0, "no model matches\n")


@pytest.mark.parametrize(
    ("value", "peak", "expected"),
    [
        (Decimal(0), Decimal(5), ""),
        (Decimal(5), Decimal(5), "█" * 40),
        (Decimal("2.5"), Decimal(5), "█" * 20),
        (Decimal("0.0001"), Decimal(5), "▏"),  # visible, however small
        (Decimal(1), Decimal(3), "█" * 13 + "▎"),  # 40/3 = 13 2/8
    ],
)
def test_bar_is_exact_in_eighths(value: Decimal, peak: Decimal, expected: str) -> None:
    assert cli.bar(value, peak) == expected


def test_local_refuses_a_busy_port_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "local", "--port", str(port), "--aws-port", "0")
    assert code == 2
    assert err.strip() == (
        f"llmtally local: port {port} on 127.0.0.1 is busy (dashboard and API); "
        "stop what uses it or choose another port"
    )
    assert out == ""


def test_local_refuses_a_missing_build_when_required(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "local", "--require-web", "--web-root", str(tmp_path), "--port", "0", "--aws-port", "0")
    assert code == 2
    assert f"the dashboard is not built: {tmp_path / 'index.html'} is missing" in err


def test_target_local_without_a_stack_says_how_to_start_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMTALLY_STATE_DIR", str(tmp_path))
    code, _, err = run(capsys, "summary", "--target", "local")
    assert code == 2
    assert err.strip() == "llmtally summary: no local stack is running: start one with `make run` (or `llmtally local`)"


def test_demo_refuses_days_outside_the_contract_window(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--days", "120")
    assert code == 2
    assert "--days must be between 1 and 89" in err
