"""Users' own alert e-mails in the template (docs/budgets.md, "E-mail to the user"): a second,
encrypted topic; the notifier may publish to it and is told its ARN; the API may subscribe
addresses to it (and nothing else) and is told its ARN too."""

from __future__ import annotations

from typing import Any

import pytest

from llmtally.resources import ResourceNames
from tests.infra.conftest import Synthesized
from tests.infra.test_alerts import _actions, _function_id, _role_statements

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()


def _env(synthesized: Synthesized, function: str) -> dict[str, Any]:
    fn = synthesized.template["Resources"][_function_id(synthesized, function)]
    variables: dict[str, Any] = fn["Properties"]["Environment"]["Variables"]
    return variables


def test_the_user_topic_is_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    topic_id, topic = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.user_alerts_topic)
    assert "KmsMasterKeyId" in topic["Properties"]
    policies = [
        p
        for p in synthesized.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_the_notifier_publishes_to_the_user_topic_only(synthesized: Synthesized) -> None:
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.user_alerts_topic)
    assert _env(synthesized, "notify")["LLMTALLY_USER_ALERTS_TOPIC_ARN"] == {"Ref": topic_id}
    statements = _role_statements(synthesized, "notify")
    sns = [s for s in statements if any(a.startswith("sns:") for a in _actions(s))]
    assert [(_actions(s), s["Resource"]) for s in sns] == [(["sns:Publish"], {"Ref": topic_id})]


def test_the_api_subscribes_addresses_but_never_publishes(synthesized: Synthesized) -> None:
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=NAMES.user_alerts_topic)
    assert _env(synthesized, "api")["LLMTALLY_USER_ALERTS_TOPIC_ARN"] == {"Ref": topic_id}
    statements = _role_statements(synthesized, "api")
    granted = {a: s["Resource"] for s in statements for a in _actions(s) if a.startswith("sns:")}
    assert granted["sns:Subscribe"] == {"Ref": topic_id}
    # Unsubscribe and GetSubscriptionAttributes act on a subscription, which IAM does not scope.
    assert set(granted) == {"sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes"}
    assert "sns:Publish" not in granted
