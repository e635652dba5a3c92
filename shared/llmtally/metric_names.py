"""The EMF metrics the CDK app alarms on, named once: the handlers emit them and `cdk_app` watches them.

Plain strings with no import of Powertools, so the CDK app can read them at synthesis. Each is a
failure the function handles itself, which Lambda never counts as an error:

- `EVENTS_TRANSIENT_FAILURE` — ingest: a message that failed for a reason a retry may fix, reported
  in `batchItemFailures` (SQS redelivers it).
- `STREAM_BATCH_FAILURES` — aggregate: a stream batch that stopped before its end (a partial batch
  response; Lambda retries from the first uncommitted record).
- `ALERT_DELIVERIES_FAILED` — notify: a budget alert the notifier did not deliver (Slack refused it
  for good, a failure it retries, a storage error, an event that breaks the contract).
- `API_SERVER_ERRORS` — api: a request answered 5xx by the function (a storage failure is a 503).
- `EVENTS_REJECTED` — ingest: an invalid event, recorded with its reason and consumed.
- `HTTP_INGEST_BUS_REFUSED` — api: an event posted to the HTTP ingest routes (`/api/usage-events`,
  the OTLP receiver) that the usage bus refused after retries (answered retryable, or a 503).
"""

from __future__ import annotations

from typing import Final

EVENTS_TRANSIENT_FAILURE: Final = "EventsTransientFailure"
EVENTS_REJECTED: Final = "EventsRejected"
STREAM_BATCH_FAILURES: Final = "StreamBatchFailures"
ALERT_DELIVERIES_FAILED: Final = "AlertDeliveriesFailed"
API_SERVER_ERRORS: Final = "ApiServerErrors"
HTTP_INGEST_BUS_REFUSED: Final = "HttpIngestBusRefused"
