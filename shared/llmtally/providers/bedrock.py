"""AWS Bedrock on the Converse API (`bedrock-runtime` converse / converse_stream), AWS credentials, no key.

Usage mapping (Converse `TokenUsage`; `inputTokens` EXCLUDES cache tokens):
    input_tokens        = inputTokens
    cache_read_tokens   = cacheReadInputTokens
    cache_write_tokens  = cacheWriteInputTokens   (5m / 1h split from cacheDetails[{ttl, inputTokens}])
    output_tokens       = outputTokens
Streams report the same `usage` in their final `metadata` event; a stream that ends without it
is a call whose usage is missing (`usage_source=missing`), never a $0 success.

The clients are built here rather than by `llmtally.aws.client`: generation needs a long read
timeout and no botocore retries (llmtally retries), which the shared client config does not have.
Pass `client=` (bedrock-runtime) and `control_client=` (bedrock) to inject your own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.providers.base import ChatCall, LLMProvider, RawResult, StreamPiece
from llmtally.providers.errors import (
    ErrorType,
    ProviderError,
    error_type_for_status,
    make_error,
)

FILTERED_STOP_REASONS: Final = frozenset({"content_filtered", "guardrail_intervened"})
_CODES: Final[dict[str, ErrorType]] = {
    "AccessDeniedException": ErrorType.AUTHENTICATION,
    "UnrecognizedClientException": ErrorType.AUTHENTICATION,
    "InvalidSignatureException": ErrorType.AUTHENTICATION,
    "ExpiredTokenException": ErrorType.AUTHENTICATION,
    "IncompleteSignature": ErrorType.AUTHENTICATION,
    "ThrottlingException": ErrorType.RATE_LIMIT,
    "ServiceQuotaExceededException": ErrorType.RATE_LIMIT,
    "ModelNotReadyException": ErrorType.UNAVAILABLE,
    "ServiceUnavailableException": ErrorType.UNAVAILABLE,
    "InternalServerException": ErrorType.UNAVAILABLE,
    "ModelErrorException": ErrorType.UNAVAILABLE,
    "ModelStreamErrorException": ErrorType.UNAVAILABLE,
    "ModelTimeoutException": ErrorType.TIMEOUT,
    "ValidationException": ErrorType.INVALID_REQUEST,
    "ResourceNotFoundException": ErrorType.INVALID_REQUEST,
}
#: Inference-profile ids start with a geography (`us.anthropic…`); base model ids do not.
_PROFILE_PREFIXES: Final = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


class BedrockProvider(LLMProvider):
    provider = Provider.BEDROCK
    default_model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    sdk_module = "botocore"

    def __init__(
        self,
        *,
        client: Any = None,
        control_client: Any = None,
        region: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._runtime = client
        self._control = control_client
        self._region = region

    def __repr__(self) -> str:
        return f"BedrockProvider(model={self.model!r})"

    def _build(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        from llmtally.settings import get_settings

        config = Config(
            retries={"total_max_attempts": 1},  # llmtally retries
            connect_timeout=min(self.timeout, 10.0),
            read_timeout=self.timeout,
        )
        return boto3.session.Session().client(service, region_name=self._region or get_settings().region, config=config)

    @property
    def client(self) -> Any:
        """The bedrock-runtime client (Converse)."""
        if self._runtime is None:
            self._runtime = self._build("bedrock-runtime")
        return self._runtime

    @property
    def control_client(self) -> Any:
        """The bedrock control-plane client (model lookups for connection tests)."""
        if self._control is None:
            self._control = self._build("bedrock")
        return self._control

    def _params(self, call: ChatCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "modelId": call.model,
            "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in call.messages],
            "inferenceConfig": {"maxTokens": call.max_tokens},
        }
        if call.temperature is not None:
            params["inferenceConfig"]["temperature"] = call.temperature
        if call.system:
            system: list[dict[str, Any]] = [{"text": call.system}]
            if call.cache:
                point: dict[str, Any] = {"type": "default"}
                if call.cache == "1h":
                    point["ttl"] = "1h"
                system.append({"cachePoint": point})
            params["system"] = system
        params.update(call.extra)
        return params

    def _complete(self, call: ChatCall) -> RawResult:
        response = self.client.converse(**self._params(call))
        content = response.get("output", {}).get("message", {}).get("content", [])
        stop = response.get("stopReason")
        return RawResult(
            text="".join(block["text"] for block in content if "text" in block),
            model=call.model,
            tokens=ledger(response.get("usage")),
            request_id=response.get("ResponseMetadata", {}).get("RequestId"),
            stop_reason=stop,
            filtered=stop in FILTERED_STOP_REASONS,
            raw={k: v for k, v in response.items() if k != "ResponseMetadata"},
        )

    def _stream(self, call: ChatCall) -> Iterator[StreamPiece]:
        response = self.client.converse_stream(**self._params(call))
        request_id = response.get("ResponseMetadata", {}).get("RequestId")
        stream = response["stream"]
        usage: dict[str, Any] | None = None
        stop = None
        try:
            for event in stream:
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"].get("delta", {}).get("text")
                    if text:
                        yield text
                elif "messageStop" in event:
                    stop = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = event["metadata"].get("usage")
        finally:
            stream.close()
        yield RawResult(
            text="",
            model=call.model,
            tokens=ledger(usage),
            request_id=request_id,
            stop_reason=stop,
            filtered=stop in FILTERED_STOP_REASONS,
            raw={"usage": usage, "stopReason": stop},
            usage_source=UsageSource.REPORTED if usage is not None else UsageSource.MISSING,
        )

    def _check_model(self, model: str) -> None:
        if model.startswith(_PROFILE_PREFIXES) or model.startswith("arn:"):
            self.control_client.get_inference_profile(inferenceProfileIdentifier=model)
        else:
            self.control_client.get_foundation_model(modelIdentifier=model)

    def _map_error(self, exc: Exception, model: str) -> ProviderError | None:
        from botocore import exceptions as bx

        common: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError)):
            return make_error(ErrorType.TIMEOUT, **common)
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError)):
            return make_error(ErrorType.UNAVAILABLE, network=True, **common)
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return make_error(ErrorType.AUTHENTICATION, code="NoCredentials", **common)
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code") or ""
            code = code[:1].upper() + code[1:]  # exceptions inside an event stream arrive as "throttlingException"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            error_type = _CODES.get(code) or (error_type_for_status(status) if status else ErrorType.UNAVAILABLE)
            message = error.get("Message") or ""
            missing = code == "ResourceNotFoundException" or (
                code == "ValidationException" and "model identifier" in message.lower()
            )
            return make_error(
                error_type,
                status_code=status,
                code=code,
                detail=message,
                request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
                model_missing=missing,
                **common,
            )
        return None


def ledger(usage: dict[str, Any] | None) -> TokenCounts:
    """Map Converse's TokenUsage onto the canonical ledger."""
    if not usage:
        return TokenCounts()
    write = usage.get("cacheWriteInputTokens") or 0
    split = {d.get("ttl"): d.get("inputTokens") or 0 for d in usage.get("cacheDetails") or []}
    five = hour = None
    if split and write and sum(split.values()) == write:
        five, hour = split.get("5m", 0), split.get("1h", 0)
    return TokenCounts(
        input_tokens=usage.get("inputTokens") or 0,
        cache_read_tokens=usage.get("cacheReadInputTokens") or 0,
        cache_write_tokens=write,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=hour,
        output_tokens=usage.get("outputTokens") or 0,
    )
