"""The JSON envelope on every response, health probes, unknown paths and the OpenAPI document."""

from __future__ import annotations

from api_support import ENVELOPE_KEYS, Api, data, envelope, error


async def test_every_json_response_has_exactly_the_four_envelope_keys(api: Api) -> None:
    chat = await api.create_chat()
    responses = [
        await api.get("/api/v1/chats/published-agents"),
        await api.get("/api/v1/chats"),
        await api.get(f"/api/v1/chats/{chat['id']}/messages"),
        await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "renamed"}),
        await api.get("/api/v1/agents"),
        await api.send(chat["id"], "hello", stream=False),
        # errors: auth, validation, not found, method, unknown path
        await api.client.get("/api/v1/chats"),
        await api.post("/api/v1/chats", json={"name": ""}),
        await api.get("/api/v1/chats/999999/messages"),
        await api.client.patch("/api/v1/chats/published-agents"),
        await api.get("/api/v1/nowhere"),
    ]
    statuses = []
    for response in responses:
        body = envelope(response)
        assert set(body) == ENVELOPE_KEYS
        assert (body["error_code"] == 0) == (response.status_code == 200), body
        statuses.append(response.status_code)
    assert statuses == [200] * 6 + [401, 400, 404, 405, 404]


async def test_health_and_readiness_answer_200(api: Api) -> None:
    assert data(await api.client.get("/healthz")) == {"status": "ok"}
    assert data(await api.client.get("/readyz")) == {"status": "ready"}


async def test_unknown_path_is_404_with_the_envelope(api: Api) -> None:
    for path in ("/nowhere", "/api/v1/nowhere", "/api/v2/chats"):
        message = error(await api.get(path), 404, 10003)
        assert "not found" in message.lower()


async def test_openapi_document_is_served(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "kaiwa"
    assert "/api/v1/chats/{chat_id}/messages" in document["paths"]
    assert "/api/v1/agents" in document["paths"]
