"""The observability module's tracing switch: the Tracer only inside Lambda and not switched off;
otherwise `Untraced`, whose decorators hand back the very function (the caller sees no difference)."""

from __future__ import annotations

from typing import Any

import pytest

from llmtally.observability import Untraced, _Runtime, make_tracer


@pytest.mark.parametrize(
    ("env", "tracing"),
    [
        ({}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"POWERTOOLS_TRACE_DISABLED": "false"}, False),  # outside Lambda there is no daemon to send to
    ],
)
def test_tracing_is_on_only_inside_lambda_and_not_switched_off(
    env: dict[str, str], tracing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "POWERTOOLS_TRACE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime = _Runtime()
    assert runtime.tracing is tracing
    if not tracing:
        # No Tracer is built (building one imports the X-Ray SDK: tests/unit/api/test_cold_import.py)
        assert isinstance(make_tracer(runtime), Untraced)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"seen": event}


def test_untraced_decorators_return_the_function_itself_in_every_form() -> None:
    untraced = Untraced()
    # Bare and with arguments, as the handlers use them
    assert untraced.capture_lambda_handler(handler) is handler
    assert untraced.capture_lambda_handler(capture_response=False)(handler) is handler
    assert untraced.capture_method(handler) is handler
    assert untraced.capture_method(capture_response=False)(handler) is handler
    # And the function answers as before, exceptions included
    assert untraced.capture_lambda_handler(handler)({"a": 1}, None) == {"seen": {"a": 1}}

    def failing() -> None:
        raise ValueError("kept")

    with pytest.raises(ValueError, match="kept"):
        untraced.capture_method(failing)()
