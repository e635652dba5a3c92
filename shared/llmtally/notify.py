"""Budget alert delivery: the alert as text (e-mail, Slack), the Slack webhook check and the post.

A `BudgetThresholdCrossed` event (`llmtally.budgets.BudgetAlert.detail`, on the usage bus) reaches
two deliveries (docs/deploy.md, "Budget alerts"):

- the deployment's alert topic (SNS, e-mail subscriptions): EventBridge renders `EMAIL_TEMPLATE`
  itself with an input transformer, so no code runs for it;
- the notifier function (`lambdas/notify`), which posts to the user's own Slack incoming webhook
  if the user stored one (`AlertNotifier`).

The webhook URL is a bearer credential (whoever holds it can post to the channel): it is kept in
Secrets Manager, checked against `Settings.slack_webhook_allowed_prefix` when stored and again before
every post (a stored value can never send the notifier elsewhere), never followed through a
redirect, and never written to a message, a log line or an exception — errors carry the HTTP status
or the error's class only.

An alert may be published more than once (`alert_id` is the dedupe key): the notifier records each
delivered alert (`llmtally.repositories.alert_deliveries`) and drops a repeat. It records after the
post, so a crash in between can repeat a message — at least once, never lost.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from llmtally.budgets import ENFORCED_PERCENT, BudgetAction
from llmtally.errors import LLMTallyError
from llmtally.events import UserId
from llmtally.settings import Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmtally.repositories.alert_deliveries import AlertDeliveryRepository
    from llmtally.repositories.secrets import SecretsRepository

logger = logging.getLogger("llmtally.notify")

MAX_WEBHOOK_URL_LENGTH: Final = 512
#: The notifier's wait for Slack (the function's timeout leaves room for the secret and the record).
SLACK_TIMEOUT_SECONDS: Final = 5.0
#: After the allowed prefix, Slack's `T…/B…/secret` path: letters, digits, `_` and `-` segments.
_WEBHOOK_PATH: Final = re.compile(r"[A-Za-z0-9_-]{1,128}(?:/[A-Za-z0-9_-]{1,128}){1,3}")
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_CENTS: Final = Decimal("0.01")


class SlackDeliveryError(LLMTallyError):
    """Slack did not take the message. The message holds the status or the error class — never the URL.

    `retryable`: a timeout, a network error, HTTP 429 or 5xx (Lambda's async retries, then the
    failure queue); a 4xx is Slack refusing this webhook for good (revoked, archived channel).
    """

    def __init__(self, message: str, *, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def check_slack_webhook_url(url: str, *, allowed_prefix: str | None = None) -> SecretStr:
    """A Slack incoming-webhook URL, checked, as a SecretStr; ValueError (without the URL) otherwise.

    `https://hooks.slack.com/services/T…/B…/…` by default (`Settings.slack_webhook_allowed_prefix`),
    at most 512 characters, no query, fragment, credentials or whitespace.
    """
    prefix = allowed_prefix if allowed_prefix is not None else get_settings().slack_webhook_allowed_prefix
    if not isinstance(url, str) or not url:
        raise ValueError("give the Slack incoming-webhook URL")
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise ValueError(f"a Slack webhook URL has at most {MAX_WEBHOOK_URL_LENGTH} characters")
    if not url.startswith(prefix) or not _WEBHOOK_PATH.fullmatch(url[len(prefix) :]):
        raise ValueError(f"a Slack webhook URL looks like {prefix}T…/B…/… (Slack → Apps → Incoming Webhooks)")
    return SecretStr(url)


# -- the alert as text ---------------------------------------------------------------------------


def _exact_decimal(value: Any) -> Any:
    """Money arrives as a decimal string; a float (already rounded) is refused, never converted."""
    if isinstance(value, float | bool):
        raise ValueError("an amount is a decimal string, not a float")
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]


class AlertNotice(BaseModel):
    """The `BudgetThresholdCrossed` detail as the deliveries read it (`BudgetAlert.detail()`, v1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1]
    alert_id: str = Field(min_length=1, max_length=256)
    user_id: UserId
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    timezone: str = Field(min_length=1, max_length=64)
    threshold_percent: int = Field(ge=1, le=1000)
    limit_usd: ExactDecimal = Field(gt=0)
    spent_usd: ExactDecimal = Field(ge=0)
    percent_used: ExactDecimal = Field(ge=0)
    action: BudgetAction
    crossed_at: datetime
    #: A tag budget's alert (issue 17): its tag; "customer=c-42 budget" (else "monthly budget").
    budget_label: str = Field(default="monthly budget", max_length=200)
    tag_key: str | None = Field(default=None, max_length=40)
    tag_value: str | None = Field(default=None, max_length=128)

    @property
    def is_tag_budget(self) -> bool:
        return self.tag_key is not None

    @property
    def period_label(self) -> str:
        """`2026-11` → `November 2026`."""
        year, month = self.period.split("-")
        return f"{_MONTHS[int(month) - 1]} {year}"

    @property
    def enforced(self) -> bool:
        return self.threshold_percent >= ENFORCED_PERCENT

    def action_text(self) -> str:
        if not self.enforced:
            return f"action at {ENFORCED_PERCENT}%: {self.action.value}"
        return {
            BudgetAction.NOTIFY: "action: notify (calls go on)",
            BudgetAction.BLOCK: "action: block (calls are refused until the next period or a higher limit)",
            BudgetAction.SWITCH: "action: switch (calls go to the cheaper model configured for the budget)",
        }[self.action]


class AlertEnvelope(BaseModel):
    """The EventBridge envelope around an alert, as a rule target receives it.

    Only what the notifier reads: Powertools' `EventBridgeModel` requires `account`, which the local
    emulator's deliveries lack.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str | None = None
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: AlertNotice


def usd(amount: Decimal) -> str:
    """`$1,234.50`: display cents (half-even); the exact figure stays in the event."""
    return f"${amount.quantize(_CENTS, rounding=ROUND_HALF_EVEN):,}"


def alert_text(notice: AlertNotice) -> str:
    """One line, e.g.

    `llmtally budget alert: 80% of your $30.00 November 2026 budget used ($24.12) — action at 100%: block`
    """
    what = f"{notice.tag_key}={notice.tag_value} budget" if notice.is_tag_budget else "budget"
    return (
        f"llmtally budget alert: {notice.threshold_percent}% of your {usd(notice.limit_usd)} "
        f"{notice.period_label} {what} used ({usd(notice.spent_usd)}) — {notice.action_text()}"
    )


def _slack_escape(text: str) -> str:
    # Slack's three control characters in message text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notice: AlertNotice) -> dict[str, Any]:
    """The webhook body: `text` (notifications, fallbacks) and blocks with the figures."""
    text = _slack_escape(alert_text(notice))
    fields = [
        ("Spent", f"{usd(notice.spent_usd)} ({notice.percent_used}%)"),
        ("Budget", f"{usd(notice.limit_usd)} for {notice.period_label} ({notice.timezone})"),
        ("Threshold", f"{notice.threshold_percent}%"),
        *([("Tag", f"{notice.tag_key}={notice.tag_value}")] if notice.is_tag_budget else []),
        ("Action at 100%", notice.action.value),
    ]
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"} for name, value in fields],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _slack_escape(f"alert {notice.alert_id}")}],
            },
        ],
    }


#: The e-mail (SNS) message. EventBridge fills it in (input transformer), so only the detail's own
#: fields are available — amounts in the detail's display form (`spent_display`: "$24.12").
EMAIL_FIELDS: Final = (
    "user_id",
    "budget_label",
    "threshold_percent",
    "period",
    "timezone",
    "spent_display",
    "limit_display",
    "percent_used",
    "action",
    "alert_id",
    "crossed_at",
)
EMAIL_TEMPLATE: Final = (
    "llmtally budget alert: user {user_id} reached {threshold_percent}% of the {period} {budget_label} "
    "({timezone}). Spent {spent_display} of {limit_display} ({percent_used}%). "
    "Action at 100%: {action}. Alert {alert_id} at {crossed_at}."
)


def email_text(detail: dict[str, Any]) -> str:
    """`EMAIL_TEMPLATE` as EventBridge renders it for `detail` (tests; the local stack)."""
    return EMAIL_TEMPLATE.format(**{name: detail[name] for name in EMAIL_FIELDS})


# -- reconciliation alerts (docs/reconciliation.md) ------------------------------------------------


class ReconciliationNotice(BaseModel):
    """The `ReconciliationAlert` detail as the deliveries read it (`llmtally.reconcile.alerts.alert_detail`, v1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1]
    alert_id: str = Field(min_length=1, max_length=256)
    user_id: UserId
    provider: Literal["anthropic", "openai", "google", "bedrock"]
    day: date
    kind: Literal["drift", "unmetered"]
    message: str = Field(min_length=1, max_length=2000)
    amount_display: str = Field(max_length=32)


class ReconciliationEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str | None = None
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: ReconciliationNotice


def reconciliation_slack_payload(notice: ReconciliationNotice) -> dict[str, Any]:
    """The webhook body of a reconciliation alert: the one-line message, then the figures' context."""
    text = _slack_escape(notice.message)
    what = "Unmetered spend" if notice.kind == "unmetered" else "Price drift"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{what}*\n{_slack_escape(notice.amount_display)}"},
                    {"type": "mrkdwn", "text": f"*Day (UTC)*\n{notice.day.isoformat()}"},
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(f"alert {notice.alert_id}")}]},
        ],
    }


# -- Slack -----------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers, it does not redirect: following one would post the alert elsewhere."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_opener: Final = urllib.request.build_opener(_NoRedirect())


def post_to_slack(url: SecretStr, payload: dict[str, Any], *, timeout: float = SLACK_TIMEOUT_SECONDS) -> None:
    """POST `payload` as JSON to the webhook; `SlackDeliveryError` (status or class, no URL) on failure."""
    request = urllib.request.Request(  # noqa: S310 - the URL was checked against the allowed prefix
        url.get_secret_value(),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "llmtally-notify"},
        method="POST",
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = int(response.status)
            response.read(1024)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        exc.close()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        # `from None`: the chained error's text could hold the host or the path.
        raise SlackDeliveryError(
            f"Slack webhook unreachable: {type(reason).__name__}", status=None, retryable=True
        ) from None
    if 200 <= status < 300:
        return
    retryable = status == 429 or status >= 500
    raise SlackDeliveryError(f"Slack webhook answered HTTP {status}", status=status, retryable=retryable)


# -- the notifier ------------------------------------------------------------------------------------

Outcome = Literal["posted", "no_webhook", "duplicate", "refused"]
EmailOutcome = Literal["sent", "no_address", "duplicate", "not_configured"]


class AlertNotifier:
    """Delivers one alert to the user's Slack webhook, if any (see the module docstring)."""

    def __init__(
        self,
        secrets: SecretsRepository | None = None,
        deliveries: AlertDeliveryRepository | None = None,
        settings: Settings | None = None,
    ) -> None:
        from llmtally.repositories.alert_deliveries import AlertDeliveryRepository
        from llmtally.repositories.secrets import SecretsRepository

        self._settings = settings or get_settings()
        self._secrets = secrets or SecretsRepository(settings=self._settings)
        self._deliveries = deliveries or AlertDeliveryRepository(settings=self._settings)
        self._emails: Any | None = None

    def deliver_email(self, notice: AlertNotice, detail: dict[str, Any]) -> EmailOutcome:
        """The alert's e-mail to the user's own address, if they gave one (docs/budgets.md, "E-mail").

        Published to the user-alerts topic with the message attribute `user_id`: SNS hands it to
        the subscriptions whose filter policy names that user (their confirmed address) only.
        Deduped by `alert_id`; raises `StorageError` when SNS or the store fail (Lambda retries).
        """
        if not self._settings.user_alerts_topic_arn:
            return "not_configured"
        if self._emails is None:
            from llmtally.repositories.alert_email import AlertEmailRepository

            self._emails = AlertEmailRepository(settings=self._settings)
        stored = self._emails.get(notice.user_id)
        if stored is None:
            return "no_address"
        if self._deliveries.was_delivered_id(notice.user_id, notice.alert_id, "email"):
            return "duplicate"
        what = f"{notice.tag_key}={notice.tag_value} budget" if notice.is_tag_budget else "budget"
        subject = f"llmtally: {notice.threshold_percent}% of your {notice.period_label} {what}"
        self._emails.publish(notice.user_id, subject, email_text(detail))
        self._deliveries.mark_delivered_id(notice.user_id, notice.alert_id, "email")
        from llmtally.repositories.alert_email import masked_address

        logger.info(
            "budget alert e-mail published", extra={"user_id": notice.user_id, "to": masked_address(stored.address)}
        )
        return "sent"

    def deliver(self, notice: AlertNotice) -> Outcome:
        """`posted`, `no_webhook`, `duplicate` (delivered before) or `refused` (Slack said no for good).

        Raises `SlackDeliveryError` when a retry may succeed, and `StorageError` from the stores.
        """
        # A tag budget's alert shares its period and threshold with the tenant's: dedupe it by alert id.
        if (
            self._deliveries.was_delivered_id(notice.user_id, notice.alert_id, "slack")
            if notice.is_tag_budget
            else self._deliveries.was_delivered(notice.user_id, notice.period, notice.threshold_percent, "slack")
        ):
            return "duplicate"
        outcome = self._post(notice.user_id, lambda: slack_payload(notice))
        if outcome == "posted":
            if notice.is_tag_budget:
                self._deliveries.mark_delivered_id(notice.user_id, notice.alert_id, "slack")
            else:
                self._deliveries.mark_delivered(notice.user_id, notice.period, notice.threshold_percent, "slack")
        return outcome

    def deliver_reconciliation(self, notice: ReconciliationNotice) -> Outcome:
        """Like `deliver`, for a reconciliation alert (deduped by its `alert_id`)."""
        if self._deliveries.was_delivered_id(notice.user_id, notice.alert_id, "slack"):
            return "duplicate"
        outcome = self._post(notice.user_id, lambda: reconciliation_slack_payload(notice))
        if outcome == "posted":
            self._deliveries.mark_delivered_id(notice.user_id, notice.alert_id, "slack")
        return outcome

    def _post(self, user_id: str, payload: Callable[[], dict[str, Any]]) -> Outcome:
        """Post to the user's stored Slack webhook: `posted`, `no_webhook` or `refused` (for good).

        Raises `SlackDeliveryError` when a retry may succeed. Marking the delivery is the caller's.
        """
        url = self._secrets.get_slack_webhook(user_id)
        if url is None:
            return "no_webhook"
        try:
            check_slack_webhook_url(url.get_secret_value(), allowed_prefix=self._settings.slack_webhook_allowed_prefix)
        except ValueError:
            # Stored under another allowed prefix (or by hand): never post it; the user stores it again.
            logger.warning("stored Slack webhook is not an allowed URL; not posted", extra={"user_id": user_id})
            return "refused"
        try:
            post_to_slack(url, payload())
        except SlackDeliveryError as exc:
            if exc.retryable:
                raise
            logger.warning(
                "Slack refused the alert; the webhook needs attention", extra={"user_id": user_id, "status": exc.status}
            )
            return "refused"
        return "posted"
