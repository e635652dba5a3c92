"""`llmtally local`: moto server on loopback, provisioned from the same specs as the CDK app, the three
Lambda handlers behind their event-source runners, and the HTTP API + dashboard on loopback."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtally.local.http import LocalHttpServer
from llmtally.local.runners import SqsRunner, StreamRunner
from llmtally.resources import ResourceNames
from llmtally.topology import AGGREGATE_BATCH_SIZE, INGEST_BATCH_SIZE

logger = logging.getLogger("llmtally.local")

#: The Lambda handlers, as the CDK app deploys them (lambdas/<name>/handler.py).
HANDLERS = {
    "ingest": ("ingest.handler", "lambda_handler"),
    "aggregate": ("aggregate.handler", "lambda_handler"),
    "api": ("api.handler", "lambda_handler"),
    "notify": ("notify.handler", "lambda_handler"),
}
LOCAL_REGION = "us-east-1"
#: Locally a failed message comes back after seconds, not the deployed three minutes.
LOCAL_VISIBILITY_TIMEOUT_SECONDS = 5


class LocalStackError(Exception):
    """A clear, user-facing reason the local stack cannot start."""


def repo_root() -> Path:
    """The checkout this library runs from (the local stack runs the checkout's handlers)."""
    return Path(__file__).resolve().parents[3]


def _check_port_free(host: str, port: int, what: str) -> None:
    if port == 0:
        return
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LocalStackError(
                    f"port {port} on {host} is busy ({what}); stop what uses it or choose another port"
                ) from exc
            raise LocalStackError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from exc


def _one_process_per_function(
    handler: Callable[[dict[str, Any], Any], Any],
) -> Callable[[dict[str, Any], Any], Any]:
    """On Lambda each function has its own process; here the handlers share one Powertools `Metrics`.

    With metrics disabled locally Powertools never clears its metric set, and prints it to stdout
    once a metric holds 100 values; clearing it after every invocation keeps the terminal quiet.
    """

    def invoke(event: dict[str, Any], context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            from llmtally.observability import metrics

            metrics.clear_metrics()

    invoke.__wrapped__ = handler  # type: ignore[attr-defined]
    return invoke


def _alert_events_via_queue(
    handler: Callable[[dict[str, Any], Any], Any],
) -> Callable[[dict[str, Any], Any], Any]:
    """Unwrap the EventBridge event from each SQS record and invoke the notifier as Lambda would.

    Logs the alert's e-mail text (what the alert topic's subscribers get on AWS), so alerts are
    visible in the terminal. A failure raises: the message returns and is retried, then dead-lettered.
    """
    import json

    from llmtally.notify import email_text
    from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE as RECONCILIATION_DETAIL_TYPE

    def invoke(event: dict[str, Any], context: Any) -> Any:
        for record in event.get("Records", []):
            alert_event = json.loads(record["body"])
            detail = alert_event.get("detail")
            if alert_event.get("detail-type") == RECONCILIATION_DETAIL_TYPE and isinstance(detail, dict):
                logger.warning("reconciliation alert: %s", str(detail.get("message", ""))[:2000])
            elif isinstance(detail, dict):
                try:
                    # WARNING: `llmtally local` shows warnings and up; an alert is what the user waits for
                    logger.warning("budget alert e-mail: %s", email_text(detail))
                    to = _alert_email_recipient(str(detail.get("user_id", "")))
                    if to:
                        logger.warning("budget alert e-mail goes to %s (their own alerts only)", to)
                except (KeyError, IndexError, ValueError):
                    logger.warning("budget alert event without the e-mail fields")
            handler(alert_event, context)
        return None

    return invoke


def _alert_email_recipient(user_id: str) -> str | None:
    """Who the user's alert e-mail goes to (locally shown whole: on AWS SNS e-mails it, once confirmed)."""
    from llmtally.errors import LLMTallyError
    from llmtally.repositories.alert_email import AlertEmailRepository

    try:
        repository = AlertEmailRepository()
        stored = repository.get(user_id) if user_id else None
        return None if stored is None else f"{stored.address} ({repository.status(stored).replace('_', ' ')})"
    except (LLMTallyError, ValueError):
        return None


@dataclass
class LocalStackConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    aws_port: int = 4566
    prefix: str = "mantissa-log"
    user: str = "demo-user"
    web_root: Path | None = None
    require_web: bool = False
    visibility_timeout_seconds: int = LOCAL_VISIBILITY_TIMEOUT_SECONDS
    #: The deployed batch sizes (topology.py); shorter windows, so a demo shows up within a second.
    ingest_batch_size: int = INGEST_BATCH_SIZE
    ingest_batch_window_seconds: float = 0.5
    aggregate_batch_size: int = AGGREGATE_BATCH_SIZE
    aggregate_batch_window_seconds: float = 0.5
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalStack:
    """Start with `start()`, stop with `stop()` (or a signal, in the CLI)."""

    config: LocalStackConfig
    aws_endpoint: str = ""
    api_url: str = ""
    _moto: Any = None
    _http: LocalHttpServer | None = None
    _http_thread: threading.Thread | None = None
    _runners: list[SqsRunner | StreamRunner] = field(default_factory=list)
    queue_url: str = ""
    dlq_url: str = ""
    #: The built dashboard served at `/` (None: not built; a page says how to build it).
    web_root: Path | None = None

    def start(self) -> None:
        cfg = self.config
        if cfg.host not in {"127.0.0.1", "localhost", "::1"}:
            logger.warning(
                "listening on %s: the local identity is not authenticated; anyone who reaches it is %s",
                cfg.host,
                cfg.user,
            )
        web_root = self.web_root = self._web_root()
        _check_port_free(cfg.host, cfg.port, "dashboard and API")
        _check_port_free("127.0.0.1", cfg.aws_port, "AWS emulator")
        self._start_emulator()
        self._configure_environment()
        handlers = self._load_handlers()
        self._provision()
        self._start_runners(handlers)
        self._start_http(handlers["api"], web_root)

    # -- pieces ---------------------------------------------------------------------------------

    def _web_root(self) -> Path | None:
        root = self.config.web_root or repo_root() / "web" / "dist"
        if (root / "index.html").is_file():
            return root.resolve()
        if self.config.require_web:
            raise LocalStackError(
                f"the dashboard is not built: {root / 'index.html'} is missing "
                "(`make run` builds it, or `npm ci && npm run build` in web/)"
            )
        return None

    def _start_emulator(self) -> None:
        from moto.server import ThreadedMotoServer

        from llmtally.local import emulator

        emulator.install()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.config.aws_port, verbose=False)
        self._moto.start()
        # The emulator's request log (werkzeug, one INFO line per AWS call) is noise in a terminal.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        host, port = self._moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{port}"

    def _configure_environment(self) -> None:
        """The handlers read settings from the environment exactly as on Lambda."""
        from llmtally.aws import reset_clients

        env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
            "LLMTALLY_ENDPOINT_URL": self.aws_endpoint,
            "LLMTALLY_PREFIX": self.config.prefix,
            "POWERTOOLS_SERVICE_NAME": "llmtally-local",
            "POWERTOOLS_METRICS_NAMESPACE": "llmtally",
            "POWERTOOLS_TRACE_DISABLED": "true",
            # EMF metrics are CloudWatch's; locally they would print a JSON blob per invocation.
            "POWERTOOLS_METRICS_DISABLED": "true",
            **self.config.extra_env,
        }
        os.environ.update(env)
        os.environ.pop("AWS_PROFILE", None)
        reset_clients()

    def _load_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], Any]]:
        lambdas = repo_root() / "lambdas"
        if not lambdas.is_dir():
            raise LocalStackError(f"{lambdas} not found: `llmtally local` runs from a checkout of llmtally")
        if str(lambdas) not in sys.path:
            sys.path.insert(0, str(lambdas))
        loaded = {}
        for name, (module, attribute) in HANDLERS.items():
            loaded[name] = _one_process_per_function(getattr(importlib.import_module(module), attribute))
        # The API caches its settings and services per process, as on Lambda; a stack started again
        # in the same process (tests) must not meet those built for the previous stack's emulator.
        importlib.import_module("api.deps").reset()
        importlib.import_module("notify.handler").reset()
        importlib.import_module("aggregate.handler").budget_keeper.cache_clear()
        return loaded

    def _provision(self) -> None:
        from llmtally.aws import client, reset_clients
        from llmtally.tables import create_tables
        from llmtally.topology import (
            alerts_topology,
            provision_alerts,
            provision_messaging,
            provision_reconciliation_alerts,
            topology,
        )

        names = ResourceNames(self.config.prefix)
        create_tables(client("dynamodb"), names)
        provisioned = provision_messaging(
            client("events"),
            client("sqs"),
            topology(names, visibility_timeout_seconds=self.config.visibility_timeout_seconds),
        )
        self.queue_url, self.dlq_url = provisioned.queue_url, provisioned.dlq_url
        self._queue_arn = provisioned.queue_arn
        self._stream_arn = client("dynamodb").describe_table(TableName=names.usage_table)["Table"]["LatestStreamArn"]
        alerts = provision_alerts(client("events"), client("sns"), client("sqs"), alerts_topology(names))
        # Users' own alert e-mails (docs/budgets.md, "E-mail"): the topic the notifier publishes them to.
        user_topic = client("sns").create_topic(Name=names.user_alerts_topic)["TopicArn"]
        os.environ["LLMTALLY_USER_ALERTS_TOPIC_ARN"] = user_topic
        reset_clients()
        provision_reconciliation_alerts(client("events"), names, alerts.queue_arn)
        self._alerts_queue = (alerts.queue_url, alerts.queue_arn)

    def _start_runners(self, handlers: dict[str, Callable[[dict[str, Any], Any], Any]]) -> None:
        from llmtally.aws import client

        cfg = self.config
        self._runners = [
            SqsRunner(
                client("sqs"),
                self.queue_url,
                self._queue_arn,
                handlers["ingest"],
                function_name="llmtally-ingest",
                batch_size=cfg.ingest_batch_size,
                batch_window_seconds=cfg.ingest_batch_window_seconds,
            ),
            StreamRunner(
                client("dynamodbstreams"),
                self._stream_arn,
                handlers["aggregate"],
                function_name="llmtally-aggregate",
                batch_size=cfg.aggregate_batch_size,
                batch_window_seconds=cfg.aggregate_batch_window_seconds,
            ),
            # The alerts rule's targets on AWS (SNS e-mail, the notifier invoked asynchronously) are
            # not delivered by the emulator: locally the rule feeds a queue drained into the notifier.
            SqsRunner(
                client("sqs"),
                *self._alerts_queue,
                _alert_events_via_queue(handlers["notify"]),
                function_name="llmtally-notify",
                batch_size=1,
                batch_window_seconds=0,
            ),
        ]
        for runner in self._runners:
            runner.start()

    def _start_http(self, api_handler: Callable[[dict[str, Any], Any], Any], web_root: Path | None) -> None:
        cfg = self.config
        claims = {"sub": cfg.user}
        self._http = LocalHttpServer(
            (cfg.host, cfg.port),
            api_handler,
            claims=claims,
            web_root=web_root,
            runtime_config={"apiBaseUrl": "", "userId": cfg.user, "mode": "local"},
        )
        port = self._http.server_address[1]
        self.api_url = f"http://{cfg.host}:{port}"
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="llmtally-http", daemon=True)
        self._http_thread.start()

    # -- lifecycle ------------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until both queues of work are empty and both runners idle (tests and the demo use it)."""
        from llmtally.aws import client

        deadline = time.monotonic() + timeout
        sqs = client("sqs")
        while time.monotonic() < deadline:
            attributes = sqs.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            backlog = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
            if backlog == 0 and all(r.idle.is_set() for r in self._runners):
                time.sleep(0.3)
                if all(r.idle.is_set() for r in self._runners):
                    return True
            time.sleep(0.1)
        return False

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking requests, drain what is queued (bounded), stop the runners and the emulator."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._runners and not self.wait_idle(timeout=drain_timeout):
            logger.warning("shutdown: work still queued after %.0f s; it stays in the emulator", drain_timeout)
        for runner in self._runners:
            runner.stop(timeout=drain_timeout)
        self._runners = []
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
