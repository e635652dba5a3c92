"""The HTTP API's domain logic: validation models, identity, settings and keys, usage views.

Nothing here knows about API Gateway events or HTTP: `lambdas/api` parses the event, calls these
functions and maps `llmtally.api.errors` to status codes in one place. No provider SDK is imported
at module level anywhere in this package (the connection test imports the provider layer lazily).
"""
