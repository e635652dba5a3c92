"""boto3 clients, created lazily and cached per (service, endpoint, region).

The only way llmtally code gets an AWS client: endpoint and region come from settings, so the
same code talks to AWS, the local emulator (moto server) and tests. No client exists at import.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from llmtally.settings import Settings, get_settings

_lock = threading.Lock()


def client(service: str, settings: Settings | None = None) -> Any:
    """A cached low-level client for `service` (thread-safe: boto3 clients are, once built)."""
    settings = settings or get_settings()
    return _client(service, settings.endpoint_url, settings.region)


@cache
def _client(service: str, endpoint_url: str | None, region: str) -> Any:
    # boto3's default session is not thread-safe while clients are being built.
    with _lock:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10)
        return boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=region, config=config)


def reset_clients() -> None:
    """Forget cached clients and settings (tests that change the environment call this)."""
    _client.cache_clear()
    get_settings.cache_clear()
    from llmtally.repositories.rollups import forget_cell_codes

    forget_cell_codes()
