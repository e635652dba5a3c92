"""Resource names: the one place the CDK app, the local stack and the code take them from."""

from __future__ import annotations

from dataclasses import dataclass

from llmtally.events import Provider, is_valid_user_id

DEFAULT_PREFIX = "mantissa-log"


@dataclass(frozen=True, slots=True)
class ResourceNames:
    prefix: str = DEFAULT_PREFIX

    @property
    def usage_table(self) -> str:
        return f"{self.prefix}-llm-usage"

    @property
    def rollups_table(self) -> str:
        return f"{self.prefix}-llm-usage-rollups"

    @property
    def rejects_table(self) -> str:
        return f"{self.prefix}-llm-usage-rejects"

    @property
    def settings_table(self) -> str:
        return f"{self.prefix}-user-settings"

    @property
    def event_bus(self) -> str:
        return f"{self.prefix}-llm-usage"

    @property
    def ingest_rule(self) -> str:
        return f"{self.prefix}-llm-usage-to-ingest"

    @property
    def ingest_queue(self) -> str:
        return f"{self.prefix}-llm-usage-ingest"

    @property
    def ingest_dlq(self) -> str:
        return f"{self.prefix}-llm-usage-ingest-dlq"

    @property
    def aggregate_failures(self) -> str:
        """Where the aggregator's stream source sends what it could not apply after its retries (deployed)."""
        return f"{self.prefix}-llm-usage-aggregate-failures"

    @property
    def response_cache_table(self) -> str:
        """Cached deterministic responses, per user, with a TTL (the opt-in response cache)."""
        return f"{self.prefix}-llm-response-cache"

    @property
    def alerts_topic(self) -> str:
        """The SNS topic budget alerts are delivered to (e-mail subscriptions)."""
        return f"{self.prefix}-budget-alerts"

    @property
    def user_alerts_topic(self) -> str:
        """The SNS topic users' own alert e-mails go through (a filtered subscription per user)."""
        return f"{self.prefix}-user-alerts"

    @property
    def alerts_rule(self) -> str:
        """The EventBridge rule routing `BudgetThresholdCrossed` events to the alert deliveries."""
        return f"{self.prefix}-budget-alerts"

    @property
    def alerts_failures(self) -> str:
        """Alert deliveries that failed after their retries: the rule's targets and the notifier (deployed)."""
        return f"{self.prefix}-budget-alerts-failures"

    @property
    def reconciliation_table(self) -> str:
        """Metered against billed, per tenant, provider, model and UTC day (docs/reconciliation.md)."""
        return f"{self.prefix}-llm-reconciliation"

    @property
    def reconcile_schedule(self) -> str:
        """The EventBridge Scheduler schedule that runs the daily reconciliation."""
        return f"{self.prefix}-reconcile-daily"

    @property
    def reconcile_failures(self) -> str:
        """Reconciliation runs that failed after the scheduler's retries (deployed)."""
        return f"{self.prefix}-reconcile-failures"

    @property
    def reconciliation_alerts_rule(self) -> str:
        """The EventBridge rule routing `ReconciliationAlert` events to the alert topic and the notifier."""
        return f"{self.prefix}-reconciliation-alerts"

    @property
    def secrets_prefix(self) -> str:
        return f"{self.prefix}/users/"

    def secret_name(self, user_id: str, provider: Provider) -> str:
        """`{prefix}/users/{user_id}/llm/{provider}`; the user id is checked so it cannot escape the prefix."""
        return f"{self.secrets_prefix}{_user_segment(user_id)}/llm/{Provider(provider).value}"

    def slack_webhook_secret_name(self, user_id: str) -> str:
        """`{prefix}/users/{user_id}/alerts/slack-webhook`: a user's Slack incoming-webhook URL (a secret)."""
        return f"{self.secrets_prefix}{_user_segment(user_id)}/alerts/slack-webhook"

    def billing_secret_name(self, user_id: str, provider: Provider) -> str:
        """`{prefix}/users/{user_id}/billing/{provider}`: a tenant's provider admin key (reconciliation)."""
        return f"{self.secrets_prefix}{_user_segment(user_id)}/billing/{Provider(provider).value}"


def _user_segment(user_id: str) -> str:
    """A user id checked to be safe as one segment of a secret name (it cannot escape the prefix)."""
    if not is_valid_user_id(user_id) or ".." in user_id:
        raise ValueError(f"invalid user id for a secret name: {user_id[:64]!r}")
    return user_id
