from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers.harness import Pipeline, running_pipeline


@pytest.fixture
def pipeline(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path, redis_server_url, redis_namespace) as running:
        yield running
