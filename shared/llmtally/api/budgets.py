"""Budgets over HTTP: the budget with its current status, the Slack webhook (write-only), the alerts.

The status is the period's ledger (`spent_nanos` kept by the aggregator, `outstanding_nanos` of
strict reservations): one consistent GetItem, no rollup scan. Saving a budget seeds the current
period's `spent_nanos` from the rollups (a budget set mid-month counts what was already spent, and
a changed timezone moves the period's boundaries); the aggregator keeps it from there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from llmtally.api.budget_models import (
    AlertEmailOut,
    BudgetAlertOut,
    BudgetAlertsResponse,
    BudgetDeletedResponse,
    BudgetOut,
    BudgetResponse,
    BudgetStatusOut,
    BudgetUpdate,
    TagBudgetOut,
    TagBudgetsResponse,
    TagBudgetUpdate,
)
from llmtally.api.errors import BadRequestError, NotFoundError
from llmtally.budget_alerts import period_total_nanos, tag_period_total_nanos
from llmtally.budgets import MAX_TAG_BUDGETS, Budget, BudgetStatus, TagScope
from llmtally.events import TAG_KEY_PATTERN, TAG_VALUE_PATTERN

MAX_ALERTS = 200


class BudgetService:
    def __init__(
        self,
        budgets: Any,
        secrets: Any,
        rollups: Callable[[], Any],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        emails: Any | None = None,
    ) -> None:
        self._budgets = budgets
        self._secrets = secrets
        self._rollups = rollups
        self._clock = clock
        #: `llmtally.repositories.alert_email.AlertEmailRepository`, or None (no user-alerts topic).
        self._emails = emails

    def status(self, user_id: str, budget: Budget, tag: TagScope | None = None) -> BudgetStatus:
        period = budget.period(self._clock())
        ledger = self._budgets.get_ledger(user_id, period.key, tag=tag)
        return BudgetStatus(budget, period, ledger.spent_nanos, ledger.outstanding_nanos)

    def get(self, user_id: str) -> BudgetResponse:
        budget = self._budgets.get_budget(user_id)
        status = None
        if budget is not None:
            status = BudgetStatusOut.model_validate(self.status(user_id, budget).as_api())
        email = None
        if self._emails is not None:
            stored = self._emails.get(user_id)
            if stored is not None:
                email = AlertEmailOut(
                    address=stored.address, status=self._emails.status(stored), subscribedAt=stored.subscribed_at
                )
        return BudgetResponse(
            budget=BudgetOut.of(budget) if budget is not None else None,
            hasSlackWebhook=self._secrets.has_slack_webhook(user_id),
            status=status,
            alertEmail=email,
            alertEmailAvailable=self._emails is not None,
        )

    def put(self, user_id: str, update: BudgetUpdate) -> BudgetResponse:
        now = self._clock()
        try:
            budget = update.budget(now)
        except ValidationError as exc:
            raise BadRequestError("; ".join(_message(e) for e in exc.errors())) from None
        if update.slackWebhookUrl is not None and update.removeSlackWebhook:
            raise BadRequestError("give slackWebhookUrl or removeSlackWebhook, not both")
        if update.alertEmail is not None and update.removeAlertEmail:
            raise BadRequestError("give alertEmail or removeAlertEmail, not both")
        address = None
        if update.alertEmail is not None:
            if self._emails is None:
                raise BadRequestError("alert e-mails are not set up on this deployment (no user-alerts topic)")
            from llmtally.repositories.alert_email import check_address

            try:
                address = check_address(update.alertEmail)
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
        webhook = None
        if update.slackWebhookUrl is not None:
            from llmtally.notify import check_slack_webhook_url

            try:
                webhook = check_slack_webhook_url(update.slackWebhookUrl.get_secret_value())
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
        period = budget.period(now)
        spent = period_total_nanos(self._rollups(), user_id, period.start_utc, period.end_utc)
        self._budgets.put_budget(user_id, budget)
        self._budgets.seed_spent(user_id, period, spent)
        if webhook is not None:
            self._secrets.put_slack_webhook(user_id, webhook)
        elif update.removeSlackWebhook:
            self._secrets.delete_slack_webhook(user_id)
        if address is not None and self._emails is not None:
            self._emails.subscribe(user_id, address, now=now)
        elif update.removeAlertEmail and self._emails is not None:
            self._emails.remove(user_id)
        return self.get(user_id)

    def delete(self, user_id: str) -> BudgetDeletedResponse:
        deleted = self._budgets.delete_budget(user_id)
        self._secrets.delete_slack_webhook(user_id)
        if self._emails is not None:
            self._emails.remove(user_id)
        return BudgetDeletedResponse(deleted=deleted)

    def alerts(self, user_id: str, limit: int | None, *, tags: bool = False) -> BudgetAlertsResponse:
        limit = 50 if limit is None else limit
        if not 1 <= limit <= MAX_ALERTS:
            raise BadRequestError(f"limit must be between 1 and {MAX_ALERTS}")
        alerts = self._budgets.list_alerts(user_id, limit, tags=tags)
        return BudgetAlertsResponse(alerts=[BudgetAlertOut.model_validate(a.as_api()) for a in alerts])

    # -- tag budgets ---------------------------------------------------------------------------

    def _tag_out(self, user_id: str, tag: TagScope, budget: Budget) -> TagBudgetOut:
        return TagBudgetOut(
            tagKey=tag.key,
            tagValue=tag.value,
            budget=BudgetOut.of(budget),
            status=BudgetStatusOut.model_validate(self.status(user_id, budget, tag).as_api()),
        )

    def tag_budgets(self, user_id: str) -> TagBudgetsResponse:
        return TagBudgetsResponse(
            budgets=[self._tag_out(user_id, tag, budget) for tag, budget in self._budgets.list_tag_budgets(user_id)]
        )

    def put_tag_budget(self, user_id: str, update: TagBudgetUpdate) -> TagBudgetOut:
        now = self._clock()
        try:
            tag = update.scope()
            budget = update.budget(now)
        except ValidationError as exc:
            raise BadRequestError("; ".join(_message(e) for e in exc.errors())) from None
        existing = {(t.key, t.value) for t, _ in self._budgets.list_tag_budgets(user_id)}
        if (tag.key, tag.value) not in existing and len(existing) >= MAX_TAG_BUDGETS:
            raise BadRequestError(f"at most {MAX_TAG_BUDGETS} tag budgets per tenant: remove one first")
        period = budget.period(now)
        spent = tag_period_total_nanos(self._rollups(), user_id, tag, period.start_utc, period.end_utc)
        self._budgets.put_budget(user_id, budget, tag=tag)
        self._budgets.seed_spent(user_id, period, spent, tag=tag)
        return self.get_tag_budget(user_id, tag.key, tag.value)

    def get_tag_budget(self, user_id: str, key: str, value: str) -> TagBudgetOut:
        tag = self._scope(key, value)
        budget = self._budgets.get_tag_budget(user_id, tag)
        if budget is None:
            raise NotFoundError(f"no budget for {tag.label}")
        return self._tag_out(user_id, tag, budget)

    def delete_tag_budget(self, user_id: str, key: str, value: str) -> BudgetDeletedResponse:
        return BudgetDeletedResponse(deleted=self._budgets.delete_budget(user_id, tag=self._scope(key, value)))

    @staticmethod
    def _scope(key: str, value: str) -> TagScope:
        try:
            return TagScope(key=key, value=value)
        except ValidationError as exc:
            fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")}))
            raise BadRequestError(
                f"not a tag budget's {fields or 'scope'}: keys match {TAG_KEY_PATTERN}, "
                f"values {TAG_VALUE_PATTERN} (and are not (other))"
            ) from None


def _message(error: Any) -> str:
    text = str(error.get("msg", "invalid budget"))
    return text.removeprefix("Value error, ")
