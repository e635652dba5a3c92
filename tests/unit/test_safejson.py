"""The bounded JSON parser: the same answer as `json.loads` within the bounds, a JSONDecodeError beyond."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally import safejson

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('[]{}"\\,:ab 1'), max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(JSON_VALUES)
def test_within_the_bounds_it_parses_exactly_as_json_loads(value: Any) -> None:
    # Given any JSON document (strings full of brackets, quotes and escapes included)
    text = json.dumps(value)
    # Then the string-aware depth is the document's real depth, and parsing agrees with json
    assert safejson.nesting_depth(text) == _depth(value)
    assert safejson.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9" * 5000, "a number longer than 64 characters"),
        ('{"a": [1, ' + "9" * 4000 + "]}", "a number longer than 64 characters"),
        ("0." + "1" * 5000, "a number longer than 64 characters"),
        ("1e" + "9" * 100, "a number longer than 64 characters"),
        ("[" * 10_000 + "]" * 10_000, "nested deeper than 32 levels"),
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "nested deeper than 32 levels"),
        ("[" * 33 + "]" * 33, "nested deeper than 32 levels"),
    ],
    ids=["5000-digit int", "deep int", "long fraction", "long exponent", "10000 arrays", "10000 objects", "33 levels"],
)
def test_beyond_a_bound_it_raises_a_decode_error_naming_the_bound(text: str, message: str) -> None:
    # When a body beyond a bound is parsed
    with pytest.raises(json.JSONDecodeError) as caught:
        safejson.loads(text)
    # Then the error is bad JSON (every caller handles it), names the bound, and carries no document
    assert isinstance(caught.value, safejson.JSONLimitError)
    assert caught.value.msg == message
    assert safejson.is_limit_message(caught.value.msg)
    assert caught.value.doc == ""


def test_the_bounds_are_inclusive_and_configurable() -> None:
    assert safejson.loads("[" * 32 + "]" * 32) == json.loads("[" * 32 + "]" * 32)
    assert safejson.loads("9" * 64) == int("9" * 64)
    with pytest.raises(safejson.JSONLimitError):
        safejson.loads("[[1]]", max_depth=1)
    with pytest.raises(safejson.JSONLimitError):
        safejson.loads("123", max_number_chars=2)


def test_brackets_in_strings_and_unbalanced_closers_do_not_count() -> None:
    assert safejson.nesting_depth(json.dumps({"k": "[" * 1000})) == 1
    assert safejson.nesting_depth("]]]]" + "[[]]") == 2
    assert safejson.loads(json.dumps(["[" * 100, "{" * 100])) == ["[" * 100, "{" * 100]


def test_parse_float_and_parse_constant_are_passed_through() -> None:
    assert safejson.loads('{"cost": 0.1}', parse_float=Decimal) == {"cost": Decimal("0.1")}

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} refused")

    with pytest.raises(ValueError, match="NaN refused"):
        safejson.loads("[NaN]", parse_constant=refuse)


def test_ordinary_syntax_errors_stay_ordinary() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        safejson.loads('{"a": }')
    assert not isinstance(caught.value, safejson.JSONLimitError)
    assert not safejson.is_limit_message(caught.value.msg)
