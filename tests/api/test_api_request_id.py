"""`X-Request-ID` on every response of the app: errors, streams and preflights included."""

from __future__ import annotations

import re

from api_support import Api, data, error

HEX32 = re.compile(r"[0-9a-f]{32}")


async def test_a_given_id_is_returned_and_a_missing_one_is_made(api: Api) -> None:
    given = await api.get("/api/v1/chats", headers={"X-Request-ID": "client-42"})
    data(given)
    assert given.headers["x-request-id"] == "client-42"
    ids = [(await api.get("/api/v1/chats")).headers["x-request-id"] for _ in range(2)]
    assert all(HEX32.fullmatch(made) for made in ids), ids
    assert ids[0] != ids[1]


async def test_an_unacceptable_id_is_replaced(api: Api) -> None:
    for bad in ("has space", "x" * 129, "日本語"):
        response = await api.get("/api/v1/chats", headers={"X-Request-ID": bad.encode()})
        assert HEX32.fullmatch(response.headers["x-request-id"]), bad


async def test_errors_carry_the_id(api: Api) -> None:
    headers = {"X-Request-ID": "err-1"}
    unauthorised = await api.client.get("/api/v1/chats", headers=headers)
    error(unauthorised, 401, 10001)
    unknown = await api.get("/api/v1/nothing-here", headers=headers)
    error(unknown, 404, 10003)
    too_big = await api.post(
        "/api/v1/chats",
        content=b"{" + b" " * (1024 * 1024 + 1),
        headers={**headers, "content-type": "application/json"},
    )
    assert too_big.status_code == 413
    for response in (unauthorised, unknown, too_big):
        assert response.headers["x-request-id"] == "err-1"


async def test_a_stream_carries_the_id(api: Api) -> None:
    chat = await api.create_chat()
    body = {"message": "こんにちは", "agent_id": api.demo_agent_id, "stream": True}
    response = await api.post(
        f"/api/v1/chats/{chat['id']}/messages", json=body, headers={"X-Request-ID": "sse-1"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "sse-1"


async def test_a_browser_may_read_the_id(api: Api) -> None:
    origin = {"Origin": "https://app.example"}
    preflight = await api.client.options(
        "/api/v1/chats",
        headers={**origin, "Access-Control-Request-Method": "GET", "X-Request-ID": "pre-1"},
    )
    assert preflight.headers["x-request-id"] == "pre-1"
    response = await api.get("/api/v1/chats", headers=origin)
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed
