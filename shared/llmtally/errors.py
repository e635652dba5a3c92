"""The library's error hierarchy: raised by domain code, mapped to HTTP or a reject reason in one place."""

from __future__ import annotations


class LLMTallyError(Exception):
    """Base of every error llmtally raises on purpose."""


class ConfigurationError(LLMTallyError):
    """Settings or a data file (price overrides, …) are invalid."""


class InvalidEventError(LLMTallyError):
    """A usage event broke the contract; `reason` is safe to record and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownModelError(LLMTallyError, LookupError):
    """Neither the catalog nor an override has a price for this provider and model."""
