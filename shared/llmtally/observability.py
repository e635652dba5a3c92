"""The one observability module: Powertools Logger, Metrics and Tracer, created once per process.

Handlers decorate with these and nothing else creates its own. Logs are structured JSON with
correlation ids (message id, event id, tenant); they never carry a key, a prompt or an event body.
Requires the `lambda` extra (aws-lambda-powertools); the library's other modules never import it.
"""

from __future__ import annotations

from typing import Final

from aws_lambda_powertools import Logger, Metrics, Tracer

from llmtally.settings import get_settings

METRICS_NAMESPACE: Final = "llmtally"

#: The service every function reports as: the deployment prefix (e.g. `mantissa-log`), so two
#: deployments in one account are told apart; the function name is added by the Lambda context.
SERVICE_NAME: Final = get_settings().prefix

logger: Final = Logger(service=SERVICE_NAME)
metrics: Final = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
tracer: Final = Tracer(service=SERVICE_NAME)

__all__ = ["METRICS_NAMESPACE", "SERVICE_NAME", "logger", "metrics", "tracer"]
