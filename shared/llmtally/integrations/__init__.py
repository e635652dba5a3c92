"""Ways into llmtally from other tools: OpenTelemetry GenAI spans (`otel_mapping`, `otlp`, `otel`) and LiteLLM.

Nothing here is imported by `import llmtally`; each module imports its third-party package
(OpenTelemetry SDK, LiteLLM) itself, so the Lambdas load only the pure mapping and the OTLP decoder.
"""
