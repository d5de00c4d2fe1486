"""Keys: missing, unknown, revoked, expired; header case; scopes; workspace isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_support import Api, data, error

from kaiwa.store.db import new_id, now
from kaiwa.store.keys import create_key, revoke_key
from kaiwa.store.models import Workspace

PATHS = ("/api/v1/chats", "/api/v1/chats/published-agents", "/api/v1/agents")


@pytest.mark.parametrize("path", PATHS)
async def test_missing_key_is_401_naming_the_header(api: Api, path: str) -> None:
    message = error(await api.client.get(path), 401, 10001)
    assert "Missing API key" in message
    assert "x-api-key" in message


async def test_unknown_key_is_401(api: Api) -> None:
    message = error(await api.get("/api/v1/chats", key="kw_not-a-real-key"), 401, 10001)
    assert "Invalid API key" in message


async def test_revoked_key_is_401(api: Api) -> None:
    assert data(await api.get("/api/v1/chats")) == []
    async with api.store() as session:
        key, plaintext = await create_key(session, api.workspace_id, name="to revoke")
    assert data(await api.get("/api/v1/chats", key=plaintext)) == []
    async with api.store() as session:
        assert await revoke_key(session, key.id) is not None
    message = error(await api.get("/api/v1/chats", key=plaintext), 401, 10001)
    assert "revoked" in message
    # Other keys of the workspace still work.
    assert data(await api.get("/api/v1/chats")) == []


async def test_expired_key_is_401(api: Api) -> None:
    async with api.store() as session:
        _, expired = await create_key(
            session, api.workspace_id, name="old", expires_at=now() - timedelta(seconds=1)
        )
        _, live = await create_key(
            session, api.workspace_id, name="new", expires_at=now() + timedelta(hours=1)
        )
    message = error(await api.get("/api/v1/chats", key=expired), 401, 10001)
    assert "expired" in message
    assert data(await api.get("/api/v1/chats", key=live)) == []


@pytest.mark.parametrize("header", ["x-api-key", "X-API-KEY", "X-Api-Key"])
async def test_key_header_name_is_case_insensitive(api: Api, header: str) -> None:
    response = await api.client.get("/api/v1/chats", headers={header: api.key})
    assert data(response) == []


async def test_chat_key_is_403_on_agent_management_but_can_chat(api: Api) -> None:
    for response in (
        await api.get("/api/v1/agents", key=api.chat_key),
        await api.post("/api/v1/agents", key=api.chat_key, json={"name": "x"}),
        await api.get(f"/api/v1/agents/{api.demo_agent_id}", key=api.chat_key),
        await api.post(f"/api/v1/agents/{api.demo_agent_id}/publish", key=api.chat_key),
    ):
        message = error(response, 403, 10001)
        assert "management key" in message

    agents = data(await api.get("/api/v1/chats/published-agents", key=api.chat_key))
    assert [agent["id"] for agent in agents] == [api.demo_agent_id]
    chat = data(
        await api.post(
            "/api/v1/chats",
            key=api.chat_key,
            json={"name": "mine", "agent_id": api.demo_agent_id},
        )
    )
    reply = await api.post(
        f"/api/v1/chats/{chat['id']}/messages",
        key=api.chat_key,
        json={"message": "hello", "agent_id": api.demo_agent_id, "stream": False},
    )
    assert isinstance(data(reply), str)
    assert data(reply)
    assert len(await api.messages(chat["id"])) == 2


async def test_resources_of_another_workspace_are_404(api: Api) -> None:
    chat = await api.create_chat()
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, other_key = await create_key(session, other.id, name="other")

    assert data(await api.get("/api/v1/chats", key=other_key)) == []
    assert data(await api.get("/api/v1/chats/published-agents", key=other_key)) == []
    assert data(await api.get("/api/v1/agents", key=other_key)) == []
    chat_id, agent_id = chat["id"], api.demo_agent_id
    not_found = [
        await api.get(f"/api/v1/chats/{chat_id}/messages", key=other_key),
        await api.put(f"/api/v1/chats/{chat_id}", key=other_key, json={"name": "stolen"}),
        await api.post(
            f"/api/v1/chats/{chat_id}/messages",
            key=other_key,
            json={"message": "hi", "agent_id": agent_id, "stream": False},
        ),
        await api.post("/api/v1/chats", key=other_key, json={"name": "x", "agent_id": agent_id}),
        await api.get(f"/api/v1/agents/{agent_id}", key=other_key),
        await api.patch(f"/api/v1/agents/{agent_id}", key=other_key, json={"name": "mine"}),
        await api.delete(f"/api/v1/agents/{agent_id}", key=other_key),
        await api.post(f"/api/v1/agents/{agent_id}/publish", key=other_key),
    ]
    for response in not_found:
        error(response, 404, 10003)
    # Nothing of the first workspace changed.
    chats = data(await api.get("/api/v1/chats"))
    assert [(c["id"], c["name"]) for c in chats] == [(chat_id, "chat")]
    assert await api.messages(chat_id) == []
    agent = data(await api.get(f"/api/v1/agents/{agent_id}"))
    assert agent["name"] == "kaiwa demo"
    assert agent["published_version"] == 1
