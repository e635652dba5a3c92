"""The one observability module: Powertools Logger, Metrics and Tracer, created once per process.

Handlers decorate with these and nothing else creates its own. Logs are structured JSON with
correlation ids (API Gateway's request id, the SQS message id, event id, tenant); they never carry
a key, a prompt or an event body. Requires the `lambda` extra (aws-lambda-powertools); the
library's other modules never import it.

The library logs through standard `logging` (`llmtally.api`, `llmtally.publisher`, …, so a client
service that installs only the library needs no Powertools). Importing this module routes the
whole `llmtally` logger tree through the Powertools handler, so those lines are the same JSON,
with the same correlation id and Lambda context keys, as the handlers' own lines. Inside Lambda
they stop there (the runtime's root handler would print each line a second time, as plain
text); elsewhere — tests, the local stack — they also reach the root logger.

Tracing is switchable: Powertools' Tracer imports the X-Ray SDK when it is created (the SDK then
builds a botocore client for its sampler), which was the largest single part of a cold start
(docs/BENCHMARKS.md). So the Tracer exists only when tracing is on — inside Lambda, unless
`POWERTOOLS_TRACE_DISABLED` is true (the CDK app's `tracing` context sets it). Otherwise `tracer`
is `Untraced`, whose decorators return the function unchanged, and the X-Ray SDK is never imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar, overload

from aws_lambda_powertools import Logger, Metrics, Tracer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmtally.settings import get_settings

METRICS_NAMESPACE: Final = "llmtally"
#: The parent of every library logger (`llmtally.api`, `llmtally.providers`, …).
LIBRARY_LOGGER: Final = "llmtally"

#: The service every function reports as: the deployment prefix (e.g. `mantissa-log`), so two
#: deployments in one account are told apart; the function name is added by the Lambda context.
SERVICE_NAME: Final = get_settings().prefix


class _Runtime(BaseSettings):
    """What the Lambda runtime tells a function about itself (read once, like every setting)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    function_name: str | None = Field(default=None, validation_alias="AWS_LAMBDA_FUNCTION_NAME")
    #: Powertools' own switch; the CDK app sets it from the `tracing` context.
    trace_disabled: bool = Field(default=False, validation_alias="POWERTOOLS_TRACE_DISABLED")

    @property
    def in_lambda(self) -> bool:
        return self.function_name is not None

    @property
    def tracing(self) -> bool:
        """Trace only inside Lambda (elsewhere there is no X-Ray daemon) and only if not switched off."""
        return self.in_lambda and not self.trace_disabled


_F = TypeVar("_F", bound=Callable[..., Any])


class Untraced:
    """The Tracer's decorators when tracing is off: each returns the function unchanged."""

    def capture_lambda_handler(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]:
        if lambda_handler is None:
            return lambda function: function
        return lambda_handler

    @overload
    def capture_method(self, method: _F) -> _F: ...

    @overload
    def capture_method(
        self, method: None = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[_F], _F]: ...

    def capture_method(
        self, method: Any = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Any:
        if method is None:
            return lambda function: function
        return method


#: What the functions call through, and so what the Tracer patches: AWS (botocore) and plain HTTP
#: (`http.client`, under urllib: the notifier's Slack post). Not the X-Ray SDK's `patch_all`, which
#: imports every library it supports that it can find (sqlite3, requests, httpx, …) at cold start.
TRACED_MODULES: Final = ("botocore", "httplib")


def make_tracer(runtime: _Runtime) -> Tracer | Untraced:
    """Powertools' Tracer when tracing is on (imports the X-Ray SDK), else `Untraced` (imports nothing)."""
    return Tracer(service=SERVICE_NAME, patch_modules=TRACED_MODULES) if runtime.tracing else Untraced()


_RUNTIME: Final = _Runtime()


#: `name`: each line names the logger it came from (`llmtally.api`, …; the handlers' own lines: the
#: service). A constructor key, so `clear_state=True` keeps it.
logger: Final = Logger(service=SERVICE_NAME, name="%(name)s")
metrics: Final = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
tracer: Final = make_tracer(_RUNTIME)


def route_library_logs(*, in_lambda: bool) -> logging.Logger:
    """Send the `llmtally` logger tree through the Powertools handler (idempotent)."""
    library = logging.getLogger(LIBRARY_LOGGER)
    if in_lambda:
        # Powertools' level (POWERTOOLS_LOG_LEVEL / LOG_LEVEL, default INFO); elsewhere the host's.
        library.setLevel(logger.log_level)
    for handler in logger.handlers:
        if handler not in library.handlers:
            library.addHandler(handler)
    library.propagate = not in_lambda
    return library


#: Loggers held at INFO or above whatever the root level: Powertools' HTTP resolver logs every
#: route's arguments at DEBUG (a query string or path could carry a key a client put there).
QUIETED_LOGGERS: Final = ("aws_lambda_powertools.event_handler",)


def quiet_argument_logging() -> None:
    for name in QUIETED_LOGGERS:
        quieted = logging.getLogger(name)
        if quieted.level == logging.NOTSET or quieted.level < logging.INFO:
            quieted.setLevel(logging.INFO)


route_library_logs(in_lambda=_RUNTIME.in_lambda)
quiet_argument_logging()

__all__ = [
    "LIBRARY_LOGGER",
    "METRICS_NAMESPACE",
    "QUIETED_LOGGERS",
    "SERVICE_NAME",
    "TRACED_MODULES",
    "Untraced",
    "logger",
    "metrics",
    "quiet_argument_logging",
    "route_library_logs",
    "tracer",
]
