"""AWS Bedrock on the Converse API (`bedrock-runtime` converse / converse_stream), AWS credentials, no key.

Usage mapping (Converse `TokenUsage`; `inputTokens` EXCLUDES cache tokens):
    input_tokens        = inputTokens
    cache_read_tokens   = cacheReadInputTokens
    cache_write_tokens  = cacheWriteInputTokens   (5m / 1h split from cacheDetails[{ttl, inputTokens}])
    output_tokens       = outputTokens
Streams report the same `usage` in their final `metadata` event; a stream that ends without it
is a call whose usage is missing (`usage_source=missing`), never a $0 success.

Async (`agenerate`, `astream`): boto3 is synchronous, so each blocking botocore call — the request,
and each read of a stream's next event — runs on a bounded thread pool shared by all Bedrock
providers of the process (`ASYNC_WORKERS` threads; `executor=` to bring your own). aiobotocore
was considered and not taken: it pins botocore to its own release train (boto3 follows), adds
aiohttp, and would have to be kept out of every Lambda asset; a pool of threads around the
client already in use keeps one botocore, one credential chain and one set of stubs
(docs/providers.md, "Async").

The clients are built here rather than by `llmtally.aws.client`: generation needs a long read
timeout and no botocore retries (llmtally retries), which the shared client config does not have.
Pass `client=` (bedrock-runtime) and `control_client=` (bedrock) to inject your own.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final, TypeVar

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.providers.base import ChatCall, LLMProvider, RawResult, StreamPiece, StreamReader
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
#: Threads of the process-wide pool that runs boto3's blocking calls for the async API. A call
#: holds a thread only while botocore waits on the network (a whole request, or one stream read),
#: so this bounds concurrent Bedrock requests in flight, not the number of awaiting tasks.
ASYNC_WORKERS: Final = 64

T = TypeVar("T")
_pool_lock = threading.Lock()
_pool: list[ThreadPoolExecutor] = []


def async_executor() -> Executor:
    """The shared pool (created on first async use, so a sync-only process starts no thread)."""
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(max_workers=ASYNC_WORKERS, thread_name_prefix="llmtally-bedrock"))
        return _pool[0]


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
        executor: Executor | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._runtime = client
        self._control = control_client
        self._region = region
        self._executor = executor

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

    async def _offload(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking botocore call on the pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor or async_executor(), functools.partial(fn, *args, **kwargs))

    def _complete(self, call: ChatCall) -> RawResult:
        return _result(self.client.converse(**self._params(call)), call)

    async def _acomplete(self, call: ChatCall) -> RawResult:
        return _result(await self._offload(self.client.converse, **self._params(call)), call)

    def _open_stream(self, call: ChatCall) -> tuple[Iterable[Any], StreamReader]:
        response = self.client.converse_stream(**self._params(call))
        return response["stream"], _StreamReader(call.model, response.get("ResponseMetadata", {}).get("RequestId"))

    async def _aopen_stream(self, call: ChatCall) -> tuple[AsyncIterator[Any], StreamReader]:
        response = await self._offload(self.client.converse_stream, **self._params(call))
        reader = _StreamReader(call.model, response.get("ResponseMetadata", {}).get("RequestId"))
        return _OffloadedEvents(self, response["stream"]), reader

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


_END: Final = object()


class _OffloadedEvents:
    """A botocore event stream read on the pool: each blocking read of the next event off the loop."""

    def __init__(self, provider: BedrockProvider, stream: Any) -> None:
        self._provider = provider
        self._stream = stream
        self._events = iter(stream)

    def __aiter__(self) -> _OffloadedEvents:
        return self

    async def __anext__(self) -> Any:
        event = await self._provider._offload(next, self._events, _END)
        if event is _END:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        await self._provider._offload(self._stream.close)


def _result(response: dict[str, Any], call: ChatCall) -> RawResult:
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


class _StreamReader:
    """ConverseStream's events: text deltas, the stop reason, the final `metadata` usage."""

    def __init__(self, model: str, request_id: str | None) -> None:
        self.model = model
        self.request_id = request_id
        self.usage: dict[str, Any] | None = None
        self.stop: str | None = None

    def feed(self, event: dict[str, Any]) -> Iterable[StreamPiece]:
        if "contentBlockDelta" in event:
            text = event["contentBlockDelta"].get("delta", {}).get("text")
            if text:
                return (text,)
        elif "messageStop" in event:
            self.stop = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = event["metadata"].get("usage")
        return ()

    def result(self) -> RawResult:
        return RawResult(
            text="",
            model=self.model,
            tokens=ledger(self.usage),
            request_id=self.request_id,
            stop_reason=self.stop,
            filtered=self.stop in FILTERED_STOP_REASONS,
            raw={"usage": self.usage, "stopReason": self.stop},
            usage_source=UsageSource.REPORTED if self.usage is not None else UsageSource.MISSING,
        )


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
