"""Provider adapters: Anthropic, OpenAI, Google Gemini and AWS Bedrock behind one interface.

    provider = LLMProviderFactory.create("anthropic", api_key="sk-ant-...")
    response = provider.generate(prompt="...", max_tokens=1000)
    response.usage.cost_usd, response.usage.total_tokens, response.usage.latency_ms

    provider = await aprovider_for_user("acme")           # async services: agenerate / astream
    client = client_for_user("acme", "openai")            # the native SDK client on the user's key

Importing this package imports no provider SDK: each SDK is imported the first time its
provider builds a client (see docs/providers.md).
"""

from __future__ import annotations

from llmtally.providers.anthropic import AnthropicProvider
from llmtally.providers.base import (
    CacheTTL,
    LLMAsyncStream,
    LLMProvider,
    LLMStream,
    Message,
    ProviderResponse,
    RetryPolicy,
)
from llmtally.providers.bedrock import BedrockProvider
from llmtally.providers.connection import ConnectionTestResult
from llmtally.providers.errors import (
    AuthenticationError,
    ContentFilteredError,
    ErrorType,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UnavailableError,
)
from llmtally.providers.factory import LLMProviderFactory
from llmtally.providers.fallback import FallbackProvider, RoutingPolicy
from llmtally.providers.google import GoogleProvider
from llmtally.providers.native import aclient_for_user, client_for_user
from llmtally.providers.openai import OpenAIProvider
from llmtally.providers.tracking import TrackedProvider, UsageSink, track
from llmtally.providers.user import (
    LLMPreferences,
    PreferencesStore,
    SecretKeyStore,
    aprovider_for_user,
    provider_for_user,
)

__all__ = [
    "AnthropicProvider",
    "AuthenticationError",
    "BedrockProvider",
    "CacheTTL",
    "ConnectionTestResult",
    "ContentFilteredError",
    "ErrorType",
    "FallbackProvider",
    "GoogleProvider",
    "InvalidRequestError",
    "LLMAsyncStream",
    "LLMPreferences",
    "LLMProvider",
    "LLMProviderFactory",
    "LLMStream",
    "Message",
    "ModelNotFoundError",
    "OpenAIProvider",
    "PreferencesStore",
    "ProviderError",
    "ProviderResponse",
    "ProviderTimeoutError",
    "RateLimitError",
    "RetryPolicy",
    "RoutingPolicy",
    "SecretKeyStore",
    "TrackedProvider",
    "UnavailableError",
    "UsageSink",
    "aclient_for_user",
    "aprovider_for_user",
    "client_for_user",
    "provider_for_user",
    "track",
]
