"""The connection test's bridge to the provider layer. Imported by the test route only, on its first call.

The provider package (and, through it, a provider SDK) is imported inside the function, so a cold
start of the API never pays for it and the other routes never load it (tests/unit/api prove it in
a fresh interpreter). The request cannot choose a host: the provider's endpoint is the SDK's own;
`provider_options` is the deployment's (and the tests') seam for client options, never the caller's.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import SecretStr

from llmtally.events import Provider

#: A connection test waits at most this long for the provider (API Gateway stops waiting at 30 s).
TEST_TIMEOUT_S: Final = 10.0


def provider_options(provider: Provider) -> dict[str, Any]:
    """Extra options for `LLMProviderFactory.create` (tests replace this with mocked transports)."""
    return {}


def provider_connection_test(provider: Provider, key: SecretStr | None, model: str | None) -> dict[str, Any]:
    """Run the provider's own connection test once (no retries) and return the seed's result shape."""
    from llmtally.providers import LLMProviderFactory, RetryPolicy

    adapter = LLMProviderFactory.create(
        provider,
        api_key=key.get_secret_value() if key is not None else None,
        timeout=TEST_TIMEOUT_S,
        retry=RetryPolicy(max_attempts=1),
        **provider_options(provider),
    )
    return adapter.test_connection(model).to_dict()
