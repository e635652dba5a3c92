"""Connection tests: `{success, provider, message, model, latency_ms}` (the seed's response shape).

A test costs the user nothing by default: it retrieves the chosen model through the provider's
models API (Bedrock: the control plane's GetFoundationModel / GetInferenceProfile), which proves
the key works *and* the model is available to it. `generate=True` adds a 1-token generation
(billed). Messages are llmtally's own, per error class — never the SDK's text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmtally.providers.errors import (
    PROVIDER_LABELS,
    ErrorType,
    ModelNotFoundError,
    ProviderError,
)

if TYPE_CHECKING:
    from llmtally.providers.base import LLMProvider


@dataclass(frozen=True, slots=True)
class ConnectionTestResult:
    success: bool
    provider: str
    message: str
    model: str
    latency_ms: int
    #: The taxonomy class of a failure (None on success).
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The seed's response body."""
        return {
            "success": self.success,
            "provider": self.provider,
            "message": self.message,
            "model": self.model,
            "latency_ms": self.latency_ms,
        }


def failure_message(error: ProviderError, model: str, timeout: float | None = None) -> str:
    """A clear, key-free sentence for each way a connection test fails."""
    label = PROVIDER_LABELS.get(error.provider, error.provider)
    if isinstance(error, ModelNotFoundError):
        return f"Model '{model}' was not found or is not available to this key on {label}."
    match error.error_type:
        case ErrorType.AUTHENTICATION:
            if error.provider == "bedrock":
                return f"{label} refused the AWS credentials, or they lack permission for '{model}'."
            return f"{label} rejected the API key. Check that it is correct, active and has billing enabled."
        case ErrorType.RATE_LIMIT:
            return f"{label} accepted the key but is rate limiting it (or its quota is used up); try again later."
        case ErrorType.TIMEOUT:
            within = f" within {timeout:g} s" if timeout else ""
            return f"{label} did not answer{within} (timeout). Try again, or check the network path to the provider."
        case ErrorType.UNAVAILABLE:
            if error.network:
                return f"Could not reach {label}: no network connection to the provider (DNS, proxy or firewall)."
            return f"{label} is temporarily unavailable (server error or overloaded); try again later."
        case ErrorType.CONTENT_FILTERED:
            return f"{label} answered, but filtered the test prompt."
        case _:
            return f"{label} rejected the test request ({error.code or 'invalid request'})."


def run_connection_test(provider: LLMProvider, model: str, *, generate: bool = False) -> ConnectionTestResult:
    label = PROVIDER_LABELS.get(provider.name, provider.name)
    started = time.perf_counter()
    try:
        provider.check_model(model)
        if generate:
            provider.generate("Reply with OK.", model=model, max_tokens=1)
    except ProviderError as error:
        return ConnectionTestResult(
            success=False,
            provider=provider.name,
            message=failure_message(error, model, provider.timeout),
            model=model,
            latency_ms=_ms_since(started),
            error_type=error.error_type.value,
        )
    what = "and generated a token" if generate else "and the model is available"
    return ConnectionTestResult(
        success=True,
        provider=provider.name,
        message=f"Connected to {label}: the credentials work {what}.",
        model=model,
        latency_ms=_ms_since(started),
    )


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
