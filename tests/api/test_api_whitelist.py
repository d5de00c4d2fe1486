"""Whitelist mode: only listed external users may create chats and send messages."""

from __future__ import annotations

from api_support import Api, data, error

from kaiwa.store import workspaces
from kaiwa.store.models import Workspace


async def _whitelist(api: Api, *allowed: str) -> None:
    async with api.store() as session:
        workspace = await session.get(Workspace, api.workspace_id)
        assert workspace is not None
        workspace.whitelist_mode = True
        for user in allowed:
            await workspaces.allow(session, api.workspace_id, user)


async def test_creating_a_chat_needs_a_listed_external_user(api: Api) -> None:
    await _whitelist(api, "alice")
    agent_id = api.demo_agent_id
    without = await api.post("/api/v1/chats", json={"name": "x", "agent_id": agent_id})
    assert "external_user_id" in error(without, 403, 14103)
    unlisted = await api.post(
        "/api/v1/chats", json={"name": "x", "agent_id": agent_id, "external_user_id": "mallory"}
    )
    assert "mallory" in error(unlisted, 403, 14103)
    assert data(await api.get("/api/v1/chats")) == []

    chat = await api.create_chat(external_user_id="alice")
    assert chat["external_user_id"] == "alice"
    assert [c["id"] for c in data(await api.get("/api/v1/chats"))] == [chat["id"]]


async def test_listing_chats_of_an_unlisted_user_is_403(api: Api) -> None:
    await _whitelist(api, "alice")
    await api.create_chat(external_user_id="alice")
    response = await api.get("/api/v1/chats", params={"external_user_id": "mallory"})
    error(response, 403, 14103)
    listed = data(await api.get("/api/v1/chats", params={"external_user_id": "alice"}))
    assert len(listed) == 1


async def test_sending_after_the_user_is_removed_from_the_list_is_403(api: Api) -> None:
    await _whitelist(api, "alice", "bob")
    chat = await api.create_chat(external_user_id="alice")
    assert isinstance(data(await api.send(chat["id"], "hello", stream=False)), str)
    assert len(await api.messages(chat["id"])) == 2

    async with api.store() as session:
        await workspaces.disallow(session, api.workspace_id, "alice")
    before = await api.counts()
    for stream in (True, False):
        response = await api.send(chat["id"], "still there?", stream=stream)
        assert "alice" in error(response, 403, 14103)
    # Another listed user cannot speak on alice's chat in her stead either.
    response = await api.send(chat["id"], "hi", external_user_id="bob", stream=False)
    assert "alice" in error(response, 403, 14103)
    assert await api.counts() == before
    error(await api.get(f"/api/v1/chats/{chat['id']}/messages"), 403, 14103)


async def test_whitelist_mode_off_lets_anyone_chat(api: Api) -> None:
    chat = await api.create_chat(external_user_id="anyone")
    assert isinstance(data(await api.send(chat["id"], "hello", stream=False)), str)
