"""A `Fetcher` that may reach the fake web server on 127.0.0.1, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kaiwa.net.fetch import Fetcher


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    fetcher = Fetcher(allow_private="127.0.0.1", max_bytes=64 * 1024, timeout=5.0)
    yield fetcher
    await fetcher.aclose()
