from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_api() -> Iterator[None]:
    from api import deps

    deps.reset()
    yield
    deps.reset()
