"""AWS Cost Explorer (`GetCostAndUsage`): the deployment account's Bedrock bill, for reconciliation.

Daily granularity, `UnblendedCost` and `UsageQuantity`, filtered to the Bedrock services, grouped by
usage type (model and token kind: `USE1-Claude3.5Sonnet-input-tokens`) and, when a cost-allocation
tag is configured, by that tag (application inference profiles tagged per tenant). Pages are
followed with `NextPageToken` (bounded). Throttling (`LimitExceededException`) is retried by
botocore's standard retry mode (`llmtally.aws`). Each request costs $0.01 (AWS's Cost Explorer API
price): the daily job makes one per page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from llmtally.errors import StorageError
from llmtally.repositories._dynamodb import storage_errors
from llmtally.settings import Settings, get_settings

MAX_PAGES: Final = 100
METRICS: Final = ("UnblendedCost", "UsageQuantity")


class CostExplorerRepository:
    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        self._settings = settings or get_settings()
        self._client = client if client is not None else aws.client("ce", self._settings)

    def daily_cost_and_usage(
        self, start: date, end: date, *, services: Sequence[str], tag_key: str | None
    ) -> list[dict[str, Any]]:
        """Every `ResultsByTime` entry of [start, end), across pages."""
        group_by: list[dict[str, str]] = [{"Type": "DIMENSION", "Key": "USAGE_TYPE"}]
        if tag_key:
            group_by.append({"Type": "TAG", "Key": tag_key})
        request: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": list(METRICS),
            "Filter": {"Dimensions": {"Key": "SERVICE", "Values": list(services)}},
            "GroupBy": group_by,
        }
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            with storage_errors("Cost Explorer GetCostAndUsage"):
                response = self._client.get_cost_and_usage(**request)
            results.extend(response.get("ResultsByTime", []))
            token = response.get("NextPageToken")
            if not token:
                return results
            if token in seen:
                raise StorageError("Cost Explorer GetCostAndUsage repeated a page token")
            seen.add(token)
            request["NextPageToken"] = token
        raise StorageError(f"Cost Explorer GetCostAndUsage: more than {MAX_PAGES} pages")
