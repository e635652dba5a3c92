"""A LiteLLM callback that publishes one usage event per call (success or failure, sync or async).

    import litellm
    from llmtally.integrations.litellm import LLMTallyCallback

    litellm.callbacks = [LLMTallyCallback()]          # or LLMTallyCallback(user_id="acme")
    litellm.completion(model="gpt-4o", messages=[...], user="acme",
                       metadata={"llmtally_tags": {"feature": "search"}})

For the LiteLLM proxy, point `litellm_settings.callbacks` at an instance (docs/ingest.md).

What is read, from LiteLLM's standard logging payload (`kwargs["standard_logging_object"]`):

* usage — `metadata.usage_object` (else the response's `usage`): `prompt_tokens` INCLUDES the cache
  reads and writes (LiteLLM adds Anthropic's `cache_read_input_tokens` / `cache_creation_input_tokens`
  into it, like OpenAI's), `completion_tokens` includes reasoning; the ledger subtracts them
  (`otel_mapping.ledger_from_totals`, shared with the OTel paths);
* provider — `custom_llm_provider` (openai, anthropic, gemini / vertex_ai, bedrock; others are
  not metered and are counted `unsupported`); model — the provider's response model, else the
  requested one;
* tenant — `metadata["llmtally_user_id"]`, else the call's `user`, else the payload's `end_user`,
  else the callback's `user_id`, else the caller's `llmtally.attribution(...)` (when LiteLLM runs
  the callback in the caller's context); no tenant: not published, counted `no_tenant`;
* tags — `metadata["llmtally_tags"]` (a mapping) and LiteLLM's own `tags` of the form `key:value`;
  operation — `metadata["llmtally_operation_type"]`, else the call type (`completion`, `embedding`…);
* id — `litellm:<litellm_call_id>`, so the sync and async hooks of one call (should both fire)
  and any retry of the callback publish the same event, which the ingest dedupes.

The callback never raises into LiteLLM and never blocks: it only enqueues on the publisher.
Requires the `litellm` extra (a pinned, vetted release).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from litellm.integrations.custom_logger import CustomLogger
from pydantic import ValidationError

from llmtally.events import (
    MAX_LATENCY_MS,
    OPERATION_TYPE_PATTERN,
    SECRET_KEY_NAME,
    SECRET_VALUE,
    TAG_KEY_PATTERN,
    TAG_VALUE_PATTERN,
    USER_ID_PATTERN,
    UsageEvent,
)
from llmtally.integrations.otel_mapping import classify_error, ledger_from_totals

if TYPE_CHECKING:
    from llmtally.publisher import UsagePublisher

logger = logging.getLogger("llmtally.integrations.litellm")

PROVIDERS: Final[Mapping[str, str]] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "google": "google",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_USER_ID: Final = re.compile(USER_ID_PATTERN)
_OPERATION: Final = re.compile(OPERATION_TYPE_PATTERN)
_TAG_KEY: Final = re.compile(TAG_KEY_PATTERN)
_TAG_VALUE: Final = re.compile(TAG_VALUE_PATTERN)
#: LiteLLM's call types whose async form is the same name with an `a` in front.
_CALL_TYPES: Final = frozenset(
    {"completion", "embedding", "text_completion", "responses", "image_generation", "transcription", "speech", "rerank"}
)
#: Event ids remembered to publish each call once even if both hooks fire.
_REMEMBERED_IDS: Final = 4096


@dataclass(slots=True)
class CallbackStats:
    published: int = 0
    dropped: int = 0
    unsupported: int = 0
    no_tenant: int = 0
    invalid: int = 0
    failures: int = 0


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _get(container: Any, name: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


def _usage(payload: Mapping[str, Any], response: Any) -> Any:
    metadata = payload.get("metadata")
    usage = _get(metadata, "usage_object") if metadata is not None else None
    return usage if usage is not None else _get(response, "usage")


def _when(epoch_seconds: Any, fallback: Any) -> datetime:
    if isinstance(epoch_seconds, int | float) and not isinstance(epoch_seconds, bool) and epoch_seconds > 0:
        return _EPOCH + timedelta(milliseconds=round(epoch_seconds * 1000))
    if isinstance(fallback, datetime):
        return fallback if fallback.tzinfo else fallback.astimezone(UTC)
    return datetime.now(UTC)


class LLMTallyCallback(CustomLogger):
    """`litellm.callbacks = [LLMTallyCallback()]`: one usage event per LiteLLM call."""

    def __init__(
        self,
        publisher: UsagePublisher | None = None,
        *,
        user_id: str | None = None,
        operation_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._publisher = publisher
        self.user_id = user_id
        self.operation_type = operation_type
        self.tags = dict(tags or {})
        self.stats = CallbackStats()
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()

    # -- LiteLLM's hooks (each never raises) -------------------------------------------------

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, end_time, failed=False)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, end_time, failed=True)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, end_time, failed=False)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, end_time, failed=True)

    # -- mapping ------------------------------------------------------------------------------

    def _handle(self, kwargs: Any, response: Any, end_time: Any, *, failed: bool) -> None:
        try:
            event = self.event_for(kwargs, response, end_time, failed=failed)
            if event is None:
                return
            with self._lock:
                if event.event_id in self._seen:
                    return
                self._seen[event.event_id] = None
                if len(self._seen) > _REMEMBERED_IDS:
                    self._seen.popitem(last=False)
            published = self._target().publish(event)
            with self._lock:
                if published:
                    self.stats.published += 1
                else:
                    self.stats.dropped += 1
        except Exception:
            with self._lock:
                self.stats.failures += 1
            logger.exception("llmtally LiteLLM callback: a call could not be metered; the call is unaffected")

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def event_for(self, kwargs: Any, response: Any, end_time: Any, *, failed: bool) -> UsageEvent | None:
        """The usage event for one call (None when it cannot be metered; counted and logged)."""
        if not isinstance(kwargs, Mapping):
            return None
        payload: Mapping[str, Any] = kwargs.get("standard_logging_object") or {}
        params = kwargs.get("litellm_params") or {}
        metadata = params.get("metadata") if isinstance(params, Mapping) else None
        metadata = metadata if isinstance(metadata, Mapping) else {}
        provider_name = str(payload.get("custom_llm_provider") or kwargs.get("custom_llm_provider") or "").lower()
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            self._count("unsupported")
            logger.info("llmtally LiteLLM callback: provider %.40r is not metered", provider_name)
            return None
        user_id = self._tenant(kwargs, payload, metadata)
        if user_id is None:
            self._count("no_tenant")
            logger.warning("llmtally LiteLLM callback: no tenant (set user=, metadata.llmtally_user_id or user_id=)")
            return None
        call_id = str(kwargs.get("litellm_call_id") or payload.get("litellm_call_id") or payload.get("id") or "")
        model = _get(response, "model") if not failed else None
        if not isinstance(model, str) or not model:
            model = str(payload.get("model") or kwargs.get("model") or "")
        ledger: dict[str, int] = {}
        exclusive = False
        reported = True
        if not failed:
            usage = _usage(payload, response)
            prompt = _int(_get(usage, "prompt_tokens"))
            completion = _int(_get(usage, "completion_tokens"))
            prompt_details = _get(usage, "prompt_tokens_details")
            completion_details = _get(usage, "completion_tokens_details")
            cache_read = (
                _int(_get(usage, "cache_read_input_tokens")) or _int(_get(prompt_details, "cached_tokens")) or 0
            )
            cache_write = (
                _int(_get(usage, "cache_creation_input_tokens"))
                or _int(_get(prompt_details, "cache_creation_tokens"))
                or 0
            )
            reasoning = _int(_get(completion_details, "reasoning_tokens")) or 0
            reported = prompt is not None or completion is not None
            ledger, exclusive = ledger_from_totals(prompt, completion, cache_read, cache_write, reasoning)
        start = payload.get("startTime")
        finished = _when(payload.get("endTime"), end_time)
        latency = 0
        if isinstance(start, int | float) and isinstance(payload.get("endTime"), int | float):
            latency = max(0, round((float(payload["endTime"]) - float(start)) * 1000))
        event_metadata: dict[str, str | int | bool | None] = {"source": "litellm"}
        if exclusive:
            event_metadata["litellm.usage_convention"] = "exclusive"
        error_type = None
        if failed:
            info = payload.get("error_information")
            code = " ".join(str(_get(info, k) or "") for k in ("error_class", "error_code")) if info else ""
            error_type = classify_error(code) if code.strip() else "other"
        fields = {
            "event_id": f"litellm:{call_id}" if call_id else None,
            "user_id": user_id,
            "timestamp": finished,
            "provider": provider,
            "model": model,
            "operation_type": self._operation(kwargs, payload, metadata),
            "status": "error" if failed else "ok",
            "error_type": error_type,
            "latency_ms": min(latency, MAX_LATENCY_MS),
            "metadata": event_metadata,
            "tags": self._tags(payload, metadata),
            "usage_source": "reported" if reported else "missing",
            **ledger,
        }
        try:
            return UsageEvent.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            self._count("invalid")
            fields_wrong = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors(include_input=False)]
            logger.warning("llmtally LiteLLM callback: the call's event is invalid (%s); not published", fields_wrong)
            return None

    def _tenant(self, kwargs: Mapping[str, Any], payload: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
        candidates = [metadata.get("llmtally_user_id"), kwargs.get("user"), payload.get("end_user"), self.user_id]
        for value in candidates:
            if isinstance(value, str) and value and _USER_ID.match(value) and len(value) <= 128:
                return value
        from llmtally.instrumentation.context import current_attribution

        return current_attribution().user_id

    def _operation(self, kwargs: Mapping[str, Any], payload: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
        for value in (metadata.get("llmtally_operation_type"), self.operation_type):
            if isinstance(value, str) and _OPERATION.match(value):
                return value
        call_type = str(payload.get("call_type") or kwargs.get("call_type") or "").lower()
        if call_type.startswith("a") and call_type[1:] in _CALL_TYPES:  # acompletion → completion
            call_type = call_type[1:]
        normalised = re.sub(r"[^a-z0-9_]+", "_", call_type).strip("_")[:64]
        return normalised if _OPERATION.match(normalised) else "completion"

    def _tags(self, payload: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, str]:
        candidates: dict[str, Any] = dict(self.tags)
        for tag in payload.get("request_tags") or []:
            if isinstance(tag, str) and ":" in tag:
                key, _, value = tag.partition(":")
                candidates[key.strip()] = value.strip()
        explicit = metadata.get("llmtally_tags")
        if isinstance(explicit, Mapping):
            candidates.update(explicit)
        kept: dict[str, str] = {}
        for key, value in candidates.items():
            text = str(value) if isinstance(value, int) else value
            if (
                isinstance(key, str)
                and _TAG_KEY.match(key)
                and not SECRET_KEY_NAME.search(key)
                and isinstance(text, str)
                and _TAG_VALUE.match(text)
                and not SECRET_VALUE.search(text)
            ):
                kept[key] = text
            if len(kept) >= 8:
                break
        return kept

    def _target(self) -> UsagePublisher:
        if self._publisher is None:
            from llmtally.publisher import default_publisher

            self._publisher = default_publisher()
        return self._publisher
