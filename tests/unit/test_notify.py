"""Budget alert delivery without AWS: the alert as text, the Slack webhook check, the post itself
(against a stand-in webhook on loopback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from llmtally.budgets import BudgetAction, BudgetAlert, TagScope
from llmtally.notify import (
    EMAIL_FIELDS,
    EMAIL_TEMPLATE,
    MAX_WEBHOOK_URL_LENGTH,
    AlertEnvelope,
    AlertNotice,
    SlackDeliveryError,
    alert_text,
    check_slack_webhook_url,
    email_text,
    post_to_slack,
    slack_payload,
    usd,
)
from tests.support.slack import WEBHOOK_SECRET, fake_slack

SLACK = "https://hooks.slack.com/services/"
VALID = f"{SLACK}T0LLMTALLY/B0ALERTS1/{WEBHOOK_SECRET}"


def alert(
    percent: int = 80, *, spent_nanos: int = 24_120_000_000, action: BudgetAction = BudgetAction.BLOCK
) -> BudgetAlert:
    return BudgetAlert(
        user_id="alice",
        period="2026-11",
        timezone="Europe/Paris",
        threshold_percent=percent,
        limit_nanos=30 * 10**9,
        spent_nanos=spent_nanos,
        action=action,
        crossed_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
    )


def notice(**kwargs: Any) -> AlertNotice:
    return AlertNotice.model_validate(alert(**kwargs).detail())


# -- text --------------------------------------------------------------------------------------------


def test_the_alert_line_reads_as_the_budget_says() -> None:
    # Given the alert event's detail, as the aggregator publishes it
    # When it is rendered / Then one plain sentence says threshold, budget, spend and action
    assert alert_text(notice()) == (
        "llmtally budget alert: 80% of your $30.00 November 2026 budget used ($24.12) — action at 100%: block"
    )


@pytest.mark.parametrize(
    ("action", "tail"),
    [
        (BudgetAction.NOTIFY, "action: notify (calls go on)"),
        (BudgetAction.BLOCK, "action: block (calls are refused until the next period or a higher limit)"),
        (BudgetAction.SWITCH, "action: switch (calls go to the cheaper model configured for the budget)"),
    ],
)
def test_at_100_percent_the_action_is_said_to_apply(action: BudgetAction, tail: str) -> None:
    text = alert_text(notice(percent=100, spent_nanos=30_004_000_000, action=action))
    assert text.startswith("llmtally budget alert: 100% of your $30.00 November 2026 budget used ($30.00) — ")
    assert text.endswith(tail)


def test_cents_are_rounded_half_even_with_thousands_separators() -> None:
    assert usd(Decimal("24.125000000")) == "$24.12"
    assert usd(Decimal("24.135")) == "$24.14"
    assert usd(Decimal("1234567.5")) == "$1,234,567.50"


def test_slack_payload_has_text_and_figures() -> None:
    payload = slack_payload(notice())
    assert payload["text"] == alert_text(notice())
    fields = " ".join(f["text"] for f in payload["blocks"][1]["fields"])
    assert "$24.12 (80.4%)" in fields
    assert "$30.00 for November 2026 (Europe/Paris)" in fields
    assert payload["blocks"][2]["elements"][0]["text"] == "alert alice:2026-11:80"
    json.dumps(payload)  # a webhook body: plain JSON


def test_email_template_uses_only_the_event_detail() -> None:
    detail = alert().detail()
    assert set(EMAIL_FIELDS) <= set(detail)
    text = email_text(detail)
    assert text == EMAIL_TEMPLATE.format(**detail)
    assert "user alice reached 80% of the 2026-11 monthly budget" in text
    assert "Spent $24.12 of $30.00 (80.4%)" in text


def test_a_tag_budgets_email_names_the_tag() -> None:
    # Given the 80% alert of customer c-42's budget
    tagged = BudgetAlert(**{**alert().model_dump(), "tag": TagScope(key="customer", value="c-42")})
    # When EventBridge renders the e-mail from its detail
    text = email_text(tagged.detail())
    # Then the e-mail says which budget, and the alert id is the tag's
    assert "user alice reached 80% of the 2026-11 customer=c-42 budget (Europe/Paris)" in text
    assert "Alert alice:tag:customer=c-42:2026-11:80 at" in text
    parsed = AlertNotice.model_validate(tagged.detail())
    assert (parsed.tag_key, parsed.tag_value, parsed.is_tag_budget) == ("customer", "c-42", True)
    assert "November 2026 customer=c-42 budget used" in alert_text(parsed)


def test_the_envelope_as_eventbridge_delivers_it() -> None:
    event = {
        "version": "0",
        "id": "e-1",
        "source": "llmtally",
        "detail-type": "BudgetThresholdCrossed",
        "time": "2026-11-20T09:30:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": alert().detail(),
    }
    envelope = AlertEnvelope.model_validate(event)
    assert envelope.detail_type == "BudgetThresholdCrossed"
    assert envelope.detail == notice()


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 2},
        {"limit_usd": 30.0},  # a float is not money
        {"spent_usd": "-1"},
        {"period": "2026-13"},
        {"user_id": "../admin"},
        {"action": "explode"},
    ],
)
def test_a_detail_that_breaks_the_contract_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AlertNotice.model_validate({**alert().detail(), **change})


# -- the webhook URL ----------------------------------------------------------------------------------


def test_a_slack_webhook_url_is_accepted_as_a_secret() -> None:
    checked = check_slack_webhook_url(VALID, allowed_prefix=SLACK)
    assert isinstance(checked, SecretStr)
    assert checked.get_secret_value() == VALID
    assert WEBHOOK_SECRET not in repr(checked)
    assert WEBHOOK_SECRET not in str(checked)


def test_the_default_prefix_is_slacks() -> None:
    assert check_slack_webhook_url(VALID).get_secret_value() == VALID


BAD_URLS = [
    f"http://hooks.slack.com/services/T0/B0/{WEBHOOK_SECRET}",
    f"https://hooks.slack.com.evil.example/services/T0/B0/{WEBHOOK_SECRET}",
    f"https://evil.example/services/T0/B0/{WEBHOOK_SECRET}",
    f"https://hooks.slack.com@evil.example/services/T0/B0/{WEBHOOK_SECRET}",
    f"{SLACK}T0/B0/{WEBHOOK_SECRET}?redirect=https://evil.example",
    f"{SLACK}T0/B0/{WEBHOOK_SECRET}#x",
    f"{SLACK}../../api/{WEBHOOK_SECRET}",
    f"{SLACK}T0/B0/{WEBHOOK_SECRET} ",
    f"{SLACK}T0/B0/{WEBHOOK_SECRET}\n",
    f"{SLACK}{WEBHOOK_SECRET}",
    f"{SLACK}T0/B0/{WEBHOOK_SECRET}" + "a" * MAX_WEBHOOK_URL_LENGTH,
    f" {SLACK}T0/B0/{WEBHOOK_SECRET}",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_is_refused_without_being_repeated(url: str) -> None:
    with pytest.raises(ValueError, match="Slack webhook URL") as caught:
        check_slack_webhook_url(url, allowed_prefix=SLACK)
    assert WEBHOOK_SECRET not in str(caught.value)
    assert url.strip() not in str(caught.value)


@pytest.mark.parametrize("url", ["", None, 42])
def test_no_url_is_refused(url: Any) -> None:
    with pytest.raises(ValueError, match="Slack incoming-webhook URL"):
        check_slack_webhook_url(url, allowed_prefix=SLACK)


@given(
    secret=st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=16, max_size=40),
    junk=st.text(min_size=1, max_size=600),
    where=st.sampled_from(["before", "after", "host"]),
)
def test_no_refusal_ever_holds_the_secret_part(secret: str, junk: str, where: str) -> None:
    # Given a URL whose secret path segment is surrounded by arbitrary text
    url = {
        "before": f"{junk}{SLACK}T0/B0/{secret}",
        "after": f"{SLACK}T0/B0/{secret}{junk}",
        "host": f"https://{junk}/services/T0/B0/{secret}",
    }[where]
    # When it is checked / Then either it passes, or the refusal never carries the secret
    message = ""
    try:
        check_slack_webhook_url(url, allowed_prefix=SLACK)
    except ValueError as exc:
        message = str(exc)
    assert secret not in message


# -- posting ------------------------------------------------------------------------------------------


def test_post_sends_the_payload_as_json() -> None:
    with fake_slack() as slack:
        post_to_slack(SecretStr(slack.webhook_url), slack_payload(notice()))
    ((path, body),) = slack.posts
    assert path.endswith(WEBHOOK_SECRET)
    assert body == slack_payload(notice())


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (403, False), (404, False), (410, False), (429, True), (500, True), (503, True)],
)
def test_a_refusal_says_the_status_only(status: int, retryable: bool) -> None:
    with fake_slack() as slack:
        slack.status = status
        with pytest.raises(SlackDeliveryError) as caught:
            post_to_slack(SecretStr(slack.webhook_url), {"text": "x"})
    assert str(caught.value) == f"Slack webhook answered HTTP {status}"
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is None


def test_a_redirect_is_never_followed() -> None:
    with fake_slack() as slack:
        slack.status = 302
        slack.headers = {"Location": f"{slack.base_url}/elsewhere"}
        with pytest.raises(SlackDeliveryError, match="HTTP 302"):
            post_to_slack(SecretStr(slack.webhook_url), {"text": "x"})
    assert [path for path, _ in slack.posts] == [f"/{slack.webhook_url.split('/', 3)[3]}"]


def test_an_unreachable_webhook_is_retryable_and_unnamed() -> None:
    with fake_slack() as slack:
        url = slack.webhook_url
    # The server is gone: the connection is refused.
    with pytest.raises(SlackDeliveryError) as caught:
        post_to_slack(SecretStr(url), {"text": "x"})
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert str(caught.value).startswith("Slack webhook unreachable: ")
    assert "127.0.0.1" not in str(caught.value)
    assert WEBHOOK_SECRET not in str(caught.value)
    assert caught.value.__suppress_context__ is True


def test_a_slow_webhook_times_out_as_retryable() -> None:
    with fake_slack() as slack:
        slack.delay_seconds = 1.0
        with pytest.raises(SlackDeliveryError, match="unreachable") as caught:
            post_to_slack(SecretStr(slack.webhook_url), {"text": "x"}, timeout=0.2)
    assert caught.value.retryable is True
    assert WEBHOOK_SECRET not in str(caught.value)
