"""The per-tenant bound on operation types: now one `CardinalityRegistry` among others
(`llmtally.repositories.cardinality`); this module keeps the name existing code imports."""

from __future__ import annotations

from llmtally.repositories.cardinality import OperationTypeRegistry as OperationTypeRegistry
