from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from enum import StrEnum

import pytest
from pydantic import SecretStr

from llmtally.api.csv_export import CSV_COLUMNS, render_csv
from llmtally.api.jsonout import dumps
from llmtally.api.scrub import REDACTED, scrub
from llmtally.events import TokenCounts, UsageEvent


class Colour(StrEnum):
    RED = "red"


def test_money_is_written_digit_for_digit() -> None:
    value = Decimal("123456789.123456789")
    text = dumps({"cost_usd": value, "n": 3, "ok": True, "none": None, "c": Colour.RED, "l": [Decimal("0.000000001")]})
    assert text == '{"cost_usd":123456789.123456789,"n":3,"ok":true,"none":null,"c":"red","l":[0.000000001]}'
    assert json.loads(text, parse_float=Decimal)["cost_usd"] == value
    assert json.loads(text)["cost_usd"] == pytest.approx(123456789.12345679)


def test_exponent_decimals_are_written_plainly() -> None:
    assert dumps(Decimal("1E-9")) == "0.000000001"
    assert dumps(Decimal("1E+3")) == "1000"


def test_secrets_and_non_finite_values_never_become_json() -> None:
    with pytest.raises(TypeError):
        dumps({"k": SecretStr("x")})
    with pytest.raises(ValueError, match="finite"):
        dumps(Decimal("NaN"))
    with pytest.raises(ValueError, match="Out of range"):
        dumps(float("inf"))


def test_strings_are_escaped() -> None:
    assert json.loads(dumps({'a"b': "</script>\n\u2028"})) == {'a"b': "</script>\n\u2028"}


def test_scrub_removes_the_key_its_fragments_and_key_shapes() -> None:
    key = "sk-ant-api03-" + "Zz9" * 20
    text = f"bad key {key}; echoed as {key[:12]}***{key[-6:]}; other sk-proj-abcdefghijklmnop; AIzaSyA1234567890"
    cleaned = scrub(text, [key])
    assert key not in cleaned
    assert key[-6:] not in cleaned
    assert "sk-proj-abcdefghijklmnop" not in cleaned
    assert "AIzaSyA1234567890" not in cleaned
    assert REDACTED in cleaned
    assert len(scrub("x" * 5000)) <= 500


def test_csv_has_every_ledger_column_and_defuses_formulas() -> None:
    ledger = set(TokenCounts.model_fields) | {"total_tokens"}
    assert ledger <= set(CSV_COLUMNS)
    identity = {"event_id", "user_id", "request_id", "timestamp", "provider", "model", "operation_type", "status"}
    assert identity <= set(CSV_COLUMNS)
    assert {"cost_usd", "cost_source", "price_version", "latency_ms"} <= set(CSV_COLUMNS)
    assert set(UsageEvent.model_fields) - {"schema_version", "metadata"} <= set(CSV_COLUMNS)
    row = {"request_id": "=HYPERLINK(1)", "cost_usd": Decimal("0.012000000"), "model": "gpt-4o", "input_tokens": 10}
    text = render_csv([row])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0]["request_id"] == "'=HYPERLINK(1)"
    assert parsed[0]["cost_usd"] == "0.012000000"
    assert parsed[0]["input_tokens"] == "10"
    assert parsed[0]["reasoning_tokens"] == ""
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
