"""An OpenTelemetry `SpanExporter` that publishes usage events from GenAI spans — no endpoint needed.

A service already instrumented with OpenTelemetry (opentelemetry-instrumentation-openai,
OpenLLMetry, OpenInference …) adds one processor::

    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from llmtally.integrations.otel import LLMTallySpanExporter

    provider.add_span_processor(BatchSpanProcessor(LLMTallySpanExporter(user_id="acme")))

Each GenAI span becomes one usage event through the same mapping as the OTLP receiver
(`llmtally.integrations.otel_mapping`), published fire-and-forget through a `UsagePublisher`
(the default one unless given). The exporter never raises into the SDK and never blocks on the
network: `export` only enqueues. Requires the `otel` extra (`opentelemetry-sdk`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from llmtally.integrations.otel_mapping import AttributeValue, SpanMapping, SpanView, span_to_event

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from llmtally.publisher import UsagePublisher

logger = logging.getLogger("llmtally.integrations.otel")


@dataclass(slots=True)
class ExporterStats:
    published: int = 0
    dropped: int = 0
    ignored: int = 0
    rejected: int = 0
    failures: int = 0


def _plain(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Scalars and lists of scalars (what OTel span attributes hold; anything else is not read)."""
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, Sequence) and not isinstance(value, bytes):
            out[key] = [v for v in value if isinstance(v, str | bool | int | float)]
    return out


def span_view(span: ReadableSpan) -> SpanView:
    """An SDK span as the mapping reads it."""
    context = span.context
    attributes = _plain(span.attributes or {})
    resource = _plain(span.resource.attributes) if span.resource is not None else {}
    return SpanView(
        trace_id=(context.trace_id if context else 0).to_bytes(16, "big"),
        span_id=(context.span_id if context else 0).to_bytes(8, "big"),
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        error=span.status.status_code is StatusCode.ERROR,
        attributes=attributes,
        resource=resource,
    )


class LLMTallySpanExporter(SpanExporter):
    """Publishes one usage event per GenAI model-call span; ignores every other span."""

    def __init__(
        self,
        publisher: UsagePublisher | None = None,
        *,
        user_id: str | None = None,
        tenant_attributes: Sequence[str] = ("llmtally.user_id", "enduser.id"),
        tag_prefix: str = "llmtally.tags.",
        tag_attributes: Mapping[str, str] | None = None,
    ) -> None:
        self._publisher = publisher
        self.mapping = SpanMapping(
            tenant_attributes=tuple(tenant_attributes),
            tag_prefix=tag_prefix,
            tag_attributes=dict(tag_attributes or {}),
            default_user_id=user_id,
            source="otel-exporter",
        )
        self.stats = ExporterStats()
        self._lock = threading.Lock()
        self._shut_down = False

    def _target(self) -> UsagePublisher:
        if self._publisher is None:
            from llmtally.publisher import default_publisher

            self._publisher = default_publisher()
        return self._publisher

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        for span in spans:
            try:
                self._export_one(span)
            except Exception:
                # An exporter bug must not break the SDK's processor (or the caller's code).
                with self._lock:
                    self.stats.failures += 1
                logger.exception("llmtally span exporter: a span could not be mapped; skipped")
        return SpanExportResult.SUCCESS

    def _export_one(self, span: ReadableSpan) -> None:
        result = span_to_event(span_view(span), self.mapping)
        with self._lock:
            if result.kind == "ignored":
                self.stats.ignored += 1
                return
            if result.event is None:
                self.stats.rejected += 1
                logger.warning("llmtally span exporter: span %s not metered: %s", result.event_id, result.reason)
                return
        published = self._target().publish(result.event)
        with self._lock:
            if published:
                self.stats.published += 1
            else:
                self.stats.dropped += 1

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self._target().flush(timeout_millis / 1000)
        except Exception:
            logger.exception("llmtally span exporter: flush failed")
            return False

    def shutdown(self) -> None:
        """Stops taking spans and flushes what was published (the publisher itself stays open: it may be shared)."""
        self._shut_down = True
        self.force_flush()
