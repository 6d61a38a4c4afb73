"""Fixtures every vendor's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from callhook.http import make_client


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The process's httpx client, as a worker gives it to a vendor client."""
    client = make_client(timeout=httpx.Timeout(5.0))
    yield client
    await client.aclose()
