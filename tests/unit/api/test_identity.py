from __future__ import annotations

from typing import Any

import pytest

from llmtally.api.config import ApiSettings
from llmtally.api.errors import ForbiddenError, NotAuthenticatedError
from llmtally.api.identity import Caller, authorize, is_loopback, parse_groups, resolve_caller

SETTINGS = ApiSettings()
LOCAL = ApiSettings(local_identity=True)


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        (None, set()),
        ("", set()),
        ("[]", set()),
        ("[a b]", {"a", "b"}),
        ('["a", "b c"]', {"a", "b c"}),
        ("a,b", {"a", "b"}),
        ("a, b  c", {"a", "b", "c"}),
        (["a", "b"], {"a", "b"}),
        ("[a,b]", {"a", "b"}),
        ("[unclosed", {"unclosed"}),
    ],
)
def test_groups_are_parsed_from_every_form(value: Any, groups: set[str]) -> None:
    assert parse_groups(value) == groups


def test_a_jwt_subject_is_the_caller() -> None:
    assert resolve_caller({"sub": "u-1"}, {}, None, SETTINGS) == Caller("u-1", admin=False, source="jwt")


def test_the_admin_group_makes_an_admin() -> None:
    caller = resolve_caller({"sub": "u-1", "cognito:groups": "[llmtally-admin]"}, {}, None, SETTINGS)
    assert caller.admin is True


@pytest.mark.parametrize("claims", [None, {}, {"sub": ""}, {"sub": 7}, {"sub": "has space"}, {"email": "a@b"}])
def test_no_usable_identity_is_401(claims: Any) -> None:
    with pytest.raises(NotAuthenticatedError):
        resolve_caller(claims, {}, "127.0.0.1", SETTINGS)


def test_local_identity_needs_the_switch_and_loopback() -> None:
    headers = {"X-Llmtally-Local-User": "dev"}
    with pytest.raises(NotAuthenticatedError):
        resolve_caller(None, headers, "127.0.0.1", SETTINGS)
    with pytest.raises(NotAuthenticatedError):
        resolve_caller(None, headers, "192.168.1.2", LOCAL)
    assert resolve_caller(None, headers, "127.0.0.1", LOCAL) == Caller("dev", admin=False, source="local")


def test_a_jwt_wins_over_the_local_header() -> None:
    caller = resolve_caller({"sub": "real"}, {"x-llmtally-local-user": "dev"}, "127.0.0.1", LOCAL)
    assert caller.subject == "real"


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
        ("nonsense", False),
    ],
)
def test_loopback(ip: str | None, loopback: bool) -> None:
    assert is_loopback(ip) is loopback


def test_authorize() -> None:
    authorize(Caller("alice", False, "jwt"), "alice")
    authorize(Caller("ops", True, "jwt"), "alice")
    with pytest.raises(ForbiddenError):
        authorize(Caller("mallory", False, "jwt"), "alice")
    with pytest.raises(ForbiddenError):
        authorize(Caller("Alice", False, "jwt"), "alice")


def test_a_deeply_nested_groups_claim_is_read_as_text_not_a_crash() -> None:
    # Given a groups claim nested 5,000 deep (json.loads would raise RecursionError: a 500)
    claim = "[" * 5000 + "]" * 5000
    # Then it is parsed as plain text and names no group that grants anything
    assert "llmtally-admin" not in parse_groups(claim)
