"""`kind`: every client test runs once with `Client` and once with `AsyncClient`."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
