"""Repositories: the only code that touches DynamoDB tables. Clients are built lazily from settings."""

from __future__ import annotations

from llmtally.repositories.operation_types import OperationTypeRegistry
from llmtally.repositories.rejects import RejectRecord, RejectsRepository
from llmtally.repositories.usage import EntriesPage, UsageQuery, UsageRepository

__all__ = [
    "EntriesPage",
    "OperationTypeRegistry",
    "RejectRecord",
    "RejectsRepository",
    "UsageQuery",
    "UsageRepository",
]
