"""The HTTP API Lambda: API Gateway HTTP API (payload v2) → Powertools resolver → `llmtally.api`."""
