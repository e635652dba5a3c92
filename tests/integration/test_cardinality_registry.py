"""The per-tenant cardinality registries on the emulator: one conditional ADD per new value, the
same answer in every process, and the ingest Lambda folding models beyond the bound end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from llmtally.entries import RawEntry
from llmtally.events import OTHER_TAG_VALUE
from llmtally.repositories.cardinality import OTHER_MODEL, CardinalityRegistry, ModelRegistry
from llmtally.resources import ResourceNames
from llmtally.settings import get_settings
from tests.conftest import MotoServer
from tests.integration.test_ingest_pipeline import deliver, scan
from tests.support.bad_inputs import valid_detail
from tests.support.pipeline import IngestRoute, create_pipeline, reset_ingest_state

pytestmark = pytest.mark.integration

NAMES = ResourceNames()


@pytest.fixture
def route(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[IngestRoute]:
    # A deployment that bounds each tenant to 2 models
    monkeypatch.setenv("LLMTALLY_MAX_MODELS_PER_TENANT", "2")
    get_settings.cache_clear()
    reset_ingest_state()
    yield create_pipeline(NAMES)
    reset_ingest_state()
    get_settings.cache_clear()


def test_the_model_registry_admits_up_to_its_limit_in_every_process(route: IngestRoute) -> None:
    registry = ModelRegistry(limit=2)
    assert [registry.fold_model("t-1", "openai", m) for m in ("gpt-4o", "gpt-4o-mini", "o3", "gpt-4o")] == [
        ("gpt-4o", None), ("gpt-4o-mini", None), (OTHER_MODEL, "o3"), ("gpt-4o", None),
    ]  # fmt: skip
    # A process without the cache decides the same: the set only grows
    fresh = ModelRegistry(limit=2)
    assert fresh.fold_model("t-1", "openai", "o3") == (OTHER_MODEL, "o3")
    assert fresh.registered("t-1") == {"openai#gpt-4o", "openai#gpt-4o-mini"}
    # Another tenant, and another scope of a scoped registry, are bounded separately
    assert fresh.fold_model("t-2", "openai", "o3") == ("o3", None)
    tags = CardinalityRegistry("tags", limit=1, fold_value=OTHER_TAG_VALUE)
    assert [tags.fold("t-1", v, scope="customer") for v in ("acme", "globex")] == [
        ("acme", None), (OTHER_TAG_VALUE, "globex"),
    ]  # fmt: skip
    assert tags.registered("t-1", scope="customer") == {"acme"}
    assert tags.registered("t-1", scope="feature") == set()


def test_the_ingest_lambda_folds_models_beyond_the_bound_and_keeps_every_event(
    route: IngestRoute, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmtally import aws

    # Given 4 events of one tenant on 3 models, sent to the queue (one of them sent twice)
    now = datetime.now(UTC)
    models = ["claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "claude-sonnet-4-5", "claude-sonnet-4-5"]
    sqs = aws.client("sqs")
    for i, model in enumerate(models):
        detail = valid_detail(now, event_id=f"evt-fold-{i:04d}", model=model, timestamp=None)
        detail["timestamp"] = (now - timedelta(minutes=5 - i)).isoformat().replace("+00:00", "Z")
        sqs.send_message(QueueUrl=route.queue_url, MessageBody=json.dumps(detail))
    sqs.send_message(QueueUrl=route.queue_url, MessageBody=json.dumps({**detail}))  # a redelivery
    # When the ingest Lambda consumes them
    responses = deliver(route)
    # Then nothing failed, every distinct event is stored, and the third model is folded
    assert all(r == {"batchItemFailures": []} for r in responses)
    entries = sorted((RawEntry.from_dynamodb(i) for i in scan(NAMES.usage_table)), key=lambda e: e.event_id)
    assert [e.model for e in entries] == [models[0], models[1], OTHER_MODEL, OTHER_MODEL]
    assert [e.original_model for e in entries] == [None, None, models[2], models[3]]
    assert all(e.cost_source.value == "catalog" and e.cost_nanos > 0 for e in entries)
    # And each folded event is counted in the function's EMF metrics (the redelivery is not a fold)
    folded = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get("ModelsFolded", 0)
            folded.extend(value if isinstance(value, list) else [value])
    assert sum(folded) == 2
