"""Repositories: the only code that touches DynamoDB tables. Clients are built lazily from settings."""

from __future__ import annotations

from llmtally.repositories.cardinality import CardinalityRegistry, ModelRegistry, OperationTypeRegistry
from llmtally.repositories.rejects import RejectRecord, RejectsRepository
from llmtally.repositories.usage import EntriesPage, UsageQuery, UsageRepository

__all__ = [
    "CardinalityRegistry",
    "EntriesPage",
    "ModelRegistry",
    "OperationTypeRegistry",
    "RejectRecord",
    "RejectsRepository",
    "UsageQuery",
    "UsageRepository",
]
