"""One user-id rule everywhere: what ingest accepts, the API's `{userId}` accepts, and the other way
round — and every such id is safe as one segment of a secret name (`{prefix}/users/{user}/…`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from llmtally.api.models import PATH_USER_ID_MAX, PATH_USER_ID_PATTERN
from llmtally.events import (
    USER_ID_MAX_CHARS,
    USER_ID_PATTERN,
    Provider,
    UsageEvent,
    check_user_id,
    is_valid_user_id,
)
from llmtally.ingest import tenant_hint
from llmtally.instrumentation._core import InstrumentSettings
from llmtally.instrumentation.context import clean_user_id
from llmtally.notify import AlertNotice, ReconciliationNotice
from llmtally.providers.base import LLMProvider
from llmtally.providers.tracking import TrackedProvider, UsageSink
from llmtally.reconcile.job import ReconcileSettings
from llmtally.resources import ResourceNames

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def contract_accepts(user_id: str) -> bool:
    try:
        UsageEvent(user_id=user_id, provider=Provider.OPENAI, model="gpt-4o", operation_type="conversation")
    except ValidationError:
        return False
    return True


def api_path_accepts(user_id: str) -> bool:
    return len(user_id) <= PATH_USER_ID_MAX and re.match(PATH_USER_ID_PATTERN, user_id) is not None


USER_IDS = st.text(alphabet=st.sampled_from("aZ09._@-/% é"), max_size=12) | st.builds(
    lambda head, n, tail: head + "b" * n + tail,
    st.sampled_from(["a", "a.", "a..", ".a"]),
    st.integers(min_value=120, max_value=135),
    st.sampled_from(["", ".", "..", ".c"]),
)


@given(USER_IDS)
@example("a..b")
@example("..")
@example("a.b")
@example("trailing.")
@example("a" * 128)
@example("a" * 129)
@example("a." * 64)
def test_ingest_and_the_api_accept_exactly_the_same_user_ids(user_id: str) -> None:
    # Given any string; then the event contract and the API path pattern agree on it
    assert contract_accepts(user_id) is api_path_accepts(user_id)


@given(USER_IDS)
def test_every_accepted_user_id_is_a_safe_secret_name_segment(user_id: str) -> None:
    if contract_accepts(user_id):
        name = ResourceNames("mantissa-log").secret_name(user_id, Provider.OPENAI)
        assert name.startswith(f"mantissa-log/users/{user_id}/")
        assert ".." not in user_id


@pytest.mark.parametrize("user_id", ["a..b", "..", "x..", "user@..example.com", "a" * 129])
def test_dot_dot_and_overlong_ids_are_refused_by_the_contract(user_id: str) -> None:
    assert not contract_accepts(user_id)
    assert not api_path_accepts(user_id)


def test_the_pattern_alone_refuses_dot_dot_for_callers_that_only_match_it() -> None:
    # (the tracked provider, the instrumentation's attribution, notify: each matches the pattern)
    assert re.match(USER_ID_PATTERN, "a..b") is None
    assert re.match(USER_ID_PATTERN, "user@example.com")
    assert USER_ID_MAX_CHARS == PATH_USER_ID_MAX == 128


# -- every early check holds the length too ------------------------------------------------------
# The pattern bounds the length only loosely (two characters a step: up to 257), so an id of
# 129–256 characters with dots matches it; each place that checks an id before the contract does
# must refuse it as the contract would.

LONG_DOTTED_IDS = ["a." * 65, "org." + "a.b" * 60, "user@example." + "c.d" * 50 + ".", "a." * 128]


def refuses_field(model: type[BaseModel], field: str, value: str) -> bool:
    """Whether validating `model` with `value` in `field` reports an error on that field."""
    try:
        model.model_validate({field: value})
    except ValidationError as exc:
        return any(error["loc"] == (field,) for error in exc.errors())
    return False


def test_the_long_dotted_ids_match_the_pattern_but_not_the_contract() -> None:
    for user_id in LONG_DOTTED_IDS:
        assert 129 <= len(user_id) <= 256
        assert re.match(USER_ID_PATTERN, user_id)
        assert not contract_accepts(user_id)


@pytest.mark.parametrize("user_id", LONG_DOTTED_IDS)
def test_each_early_check_refuses_an_overlong_id_the_pattern_lets_by(user_id: str) -> None:
    # Given an id that matches USER_ID_PATTERN but is longer than USER_ID_MAX_CHARS
    # Then the shared check, and each module that checks an id before an event is built, refuse it
    assert not is_valid_user_id(user_id)
    with pytest.raises(ValueError, match="invalid user_id"):
        check_user_id(user_id)
    with pytest.raises(ValueError, match="invalid user_id"):
        TrackedProvider(cast("LLMProvider", object()), cast("UsageSink", object()), user_id=user_id)
    assert clean_user_id(user_id) is None
    assert tenant_hint({"user_id": user_id, "event_id": "evt-00000001"}) == (None, "evt-00000001")
    with pytest.raises(ValueError, match="invalid user id"):
        ResourceNames("mantissa-log").secret_name(user_id, Provider.OPENAI)
    assert refuses_field(AlertNotice, "user_id", user_id)
    assert refuses_field(ReconciliationNotice, "user_id", user_id)
    assert refuses_field(InstrumentSettings, "default_user_id", user_id)
    assert refuses_field(ReconcileSettings, "bedrock_default_user", user_id)


def test_each_early_check_accepts_the_longest_valid_id() -> None:
    # Given a valid id of exactly USER_ID_MAX_CHARS with dots (the checks above refuse for length only)
    user_id = "a." * 63 + "bc"
    assert len(user_id) == USER_ID_MAX_CHARS
    assert contract_accepts(user_id)
    assert is_valid_user_id(user_id)
    assert check_user_id(user_id) == user_id
    tracked = TrackedProvider(cast("LLMProvider", object()), cast("UsageSink", object()), user_id=user_id)
    assert tracked.user_id == user_id
    assert clean_user_id(user_id) == user_id
    assert tenant_hint({"user_id": user_id}) == (user_id, None)
    assert ResourceNames("mantissa-log").secret_name(user_id, Provider.OPENAI)
    assert not refuses_field(AlertNotice, "user_id", user_id)
    assert not refuses_field(ReconciliationNotice, "user_id", user_id)
    assert not refuses_field(InstrumentSettings, "default_user_id", user_id)
    assert not refuses_field(ReconcileSettings, "bedrock_default_user", user_id)


@given(st.text(alphabet=st.sampled_from("ab._@-/ "), max_size=300))
def test_is_valid_user_id_is_the_contract(user_id: str) -> None:
    assert is_valid_user_id(user_id) is contract_accepts(user_id)
