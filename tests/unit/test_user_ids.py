"""One user-id rule everywhere: what ingest accepts, the API's `{userId}` accepts, and the other way
round — and every such id is safe as one segment of a secret name (`{prefix}/users/{user}/…`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from llmtally.api.models import PATH_USER_ID_MAX, PATH_USER_ID_PATTERN
from llmtally.events import USER_ID_MAX_CHARS, USER_ID_PATTERN, Provider, UsageEvent
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
