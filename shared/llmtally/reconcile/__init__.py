"""Reconciliation: what llmtally metered against what the providers billed (docs/reconciliation.md).

- `core`: pure — billed lines against metered rollups per (provider, model, UTC day): drift,
  unmetered spend, cause, price feedback;
- `http`: the stdlib JSON client of the admin APIs (pagination, 429/Retry-After, retries);
- `openai`, `anthropic`: per-tenant sources read with the tenant's admin key;
- `bedrock`: the deployment's Cost Explorer bill, split by a cost-allocation tag;
- `alerts`: drift / unmetered alerts, exactly once per tenant, provider, day and kind;
- `job`: the daily run (Lambda `lambdas/reconcile`, `llmtally reconcile`).
"""
