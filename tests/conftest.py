"""Shared fixtures: a moto *server* (one per test worker, reset per test) and fake AWS credentials."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import pytest
from hypothesis import HealthCheck, settings

#: moto parses an update expression recursively; a packed rollup item's ADD of ~200 attributes
#: needs more than the default 1,000 frames (llmtally.local.emulator raises it the same way for the
#: moto servers; this covers the in-process `mock_aws` of the invariant and the unit tiers).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

REGION = "us-east-1"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make `--dist loadgroup` keep each `xdist_group` (infra, iam, local-stack, browser) on one worker.

    pytest-xdist 3.8 groups by renaming `item._nodeid`, which pytest 9 no longer reads (an item's id
    is `item._id`, a `NodeId`): its `xdist_group` marks were ignored, so every worker paid for the
    CDK synthesis, the IAM emulator and the local stack. This names the group the way pytest 9 reads
    it (`<nodeid>@<group>`, what xdist's own scheduler splits on)."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        if "@" in item.nodeid:
            continue
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        if groups:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")
    items.sort(key=_longest_first)


#: The work units (one test, or an `xdist_group`) that take minutes, longest first, measured with
#: `--durations` in CI runs (see docs/BENCHMARKS.md, "Test suite time"). xdist hands units out in
#: collection order (`pytest_configure` turns off its reordering by unit size): these start first,
#: while both workers are free, and the many short tests fill in around them — instead of the
#: invariant (one test, ~6 min) starting halfway through and running alone at the end.
LONGEST_FIRST = (
    "tests/integration/test_pipeline_invariant.py::",  # one test: 500 examples
    "@browser",  # the local stack and Chromium, 11 flows
    "@infra",  # the CDK synthesis, then 116 template tests
    "@iam",  # the synthesis and the IAM emulator
    "@local-stack",  # the local stack's end-to-end flows
    "tests/integration/test_rollup_migration.py::",
    "@usage-routes",  # the seeded pipeline, then reads
    "@insights-routes",
)


def _longest_first(item: pytest.Item) -> int:
    """The unit's rank in LONGEST_FIRST (any other test after them, in collection order: the sort is stable)."""
    return next((rank for rank, part in enumerate(LONGEST_FIRST) if part in item.nodeid), len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    """Under `--dist loadgroup`, xdist hands out work units in collection order (LONGEST_FIRST first),
    not reordered by how many tests each holds (it would put the 116 quick CDK template tests before
    the six-minute invariant)."""
    if getattr(config.option, "dist", None) == "loadgroup":
        config.option.loadscopereorder = False


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach a real AWS account: credentials are fake and the region fixed."""
    set_fake_aws_credentials(monkeypatch)


def set_fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LLMTALLY_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str

    def client(self, service: str) -> object:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION)

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    from llmtally.local import emulator

    # The local stack's emulator fixes (llmtally.local.emulator): above all, one DynamoDB request at a
    # time, as DynamoDB makes each conditional write atomic — moto serves requests on threads and
    # evaluates a condition and applies the update as separate steps, so two concurrent strict
    # reservations could both pass a condition only one of them may pass.
    emulator.install()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextmanager
def seeding_moto(server: MotoServer) -> Iterator[MotoServer]:
    """For a module-scoped fixture that fills the moto server once (tests/support/snapshot.py): the
    environment a test gets from `_fake_aws_credentials` and `moto` — fake credentials, a reset server
    the library points at — and no client cached before or after."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_fake_aws_credentials(monkeypatch)
        server.reset()
        monkeypatch.setenv("LLMTALLY_ENDPOINT_URL", server.endpoint_url)
        _forget_clients()
        try:
            yield server
        finally:
            _forget_clients()


@pytest.fixture
def moto(_moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto server for this test; `LLMTALLY_ENDPOINT_URL` points the library at it."""
    _moto_server.reset()
    monkeypatch.setenv("LLMTALLY_ENDPOINT_URL", _moto_server.endpoint_url)
    return _moto_server


#: Process-wide singletons (one per Lambda container) that hold repositories, hence clients bound to
#: the endpoint and credentials of whichever test built them first (the IAM tier's emulator, say).
_PROCESS_SINGLETONS = {
    "aggregate.handler": ("budget_keeper",),
    "notify.handler": ("notifier",),
    "api.deps": ("api_settings", "settings_service", "usage_service", "budget_service", "insights_service"),
    "api.routes.ingest": ("ingest_service",),
    "api.routes.ingest_keys": ("ingest_key_service",),
    "api.routes.reconciliation": ("reconciliation_service",),
    "llmtally.ingest": ("default_ingestor",),
    "llmtally.providers.budget": ("default_budget_guard",),
    "llmtally.providers.user": ("default_key_store", "default_response_cache"),
}


def _forget_clients() -> None:
    from llmtally.aws import reset_clients

    reset_clients()
    for module_name, names in _PROCESS_SINGLETONS.items():
        module = sys.modules.get(module_name)
        for name in names if module is not None else ():
            clear = getattr(getattr(module, name), "cache_clear", None)  # a test may have patched it
            if clear is not None:
                clear()


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    """Settings, cached clients and the singletons holding them are rebuilt for each test, from its
    environment."""
    _forget_clients()
    yield
    _forget_clients()
