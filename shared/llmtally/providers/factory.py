"""`LLMProviderFactory.create(name, api_key=…, **options)`: the seed's entry point."""

from __future__ import annotations

from typing import Any, ClassVar

from llmtally.errors import ConfigurationError
from llmtally.events import Provider
from llmtally.providers.anthropic import AnthropicProvider
from llmtally.providers.base import LLMProvider
from llmtally.providers.bedrock import BedrockProvider
from llmtally.providers.google import GoogleProvider
from llmtally.providers.openai import OpenAIProvider


class LLMProviderFactory:
    """Builds a provider by name. Options common to all: `model`, `max_tokens`, `temperature`,
    `timeout` (seconds), `retry` (`RetryPolicy`), `price_book`, `sleep`. Per provider:
    `http_client` (an `httpx2.Client`, e.g. with a `MockTransport`) and `base_url` for Anthropic,
    OpenAI and Google, `organization` for OpenAI; `client` / `control_client` (boto3) and
    `region` for Bedrock, which takes AWS credentials and no API key.
    """

    providers: ClassVar[dict[Provider, type[LLMProvider]]] = {
        Provider.ANTHROPIC: AnthropicProvider,
        Provider.OPENAI: OpenAIProvider,
        Provider.GOOGLE: GoogleProvider,
        Provider.BEDROCK: BedrockProvider,
    }

    @classmethod
    def create(cls, name: str | Provider, api_key: str | None = None, **options: Any) -> LLMProvider:
        try:
            provider = Provider(str(name).lower())
        except ValueError:
            known = ", ".join(p.value for p in Provider)
            raise ConfigurationError(f"unknown provider {str(name)[:40]!r}; expected one of {known}") from None
        if provider is Provider.BEDROCK:
            if api_key:
                raise ConfigurationError("Bedrock uses AWS credentials, not an API key")
            return BedrockProvider(**options)
        if not api_key or not api_key.strip():
            raise ConfigurationError(f"{provider.value} needs an API key")
        provider_cls: Any = cls.providers[provider]
        result: LLMProvider = provider_cls(api_key.strip(), **options)
        return result

    @classmethod
    def supported(cls) -> tuple[str, ...]:
        return tuple(p.value for p in cls.providers)
