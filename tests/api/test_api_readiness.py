"""`/readyz` during a shutdown: 503 as soon as draining begins, while `/healthz` stays 200.

The dependencies' side (PostgreSQL unreachable, Redis stopped) needs real processes:
`tests/e2e/test_e2e_readiness.py`.
"""

from __future__ import annotations

import asyncio

from api_support import Api, data, error


async def test_readyz_fails_once_the_server_begins_to_shut_down(api: Api) -> None:
    assert data(await api.client.get("/readyz")) == {"status": "ready"}
    api.app.state.begin_shutdown()  # what SIGTERM does (after `shutdown_delay`)
    async with asyncio.timeout(5):
        while True:
            response = await api.client.get("/readyz")
            if response.status_code != 200:
                break
            await asyncio.sleep(0.01)
    assert error(response, 503, 10005) == "The server is shutting down"
    assert data(await api.client.get("/healthz")) == {"status": "ok"}
