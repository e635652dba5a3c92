"""Resource names: the one place the CDK app, the local stack and the code take them from."""

from __future__ import annotations

from dataclasses import dataclass

from llmtally.events import USER_ID_PATTERN, Provider

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
    def secrets_prefix(self) -> str:
        return f"{self.prefix}/users/"

    def secret_name(self, user_id: str, provider: Provider) -> str:
        """`{prefix}/users/{user_id}/llm/{provider}`; the user id is checked so it cannot escape the prefix."""
        import re

        if not re.match(USER_ID_PATTERN, user_id) or ".." in user_id:
            raise ValueError(f"invalid user id for a secret name: {user_id[:64]!r}")
        return f"{self.secrets_prefix}{user_id}/llm/{Provider(provider).value}"
