"""Deleting a chat: everything that is only its own goes, rows and bytes; nothing else does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, data, error, parse_stream
from sqlalchemy import func, select

from kaiwa.protocol import ReasoningStepStart
from kaiwa.store import keys, tenants, workspaces
from kaiwa.store.models import Base, Workspace

FORM = {"fields": [{"name": "name", "label": "お名前", "type": "shortText", "required": True}]}
SLOW: list[dict[str, Any]] = [{"text": "途中"}, *[{"delay": 0.5}] * 20, {"text": "終わり"}]


def chat_url(chat_id: int) -> str:
    return f"/api/v1/chats/{chat_id}"


async def table_counts(api: Api) -> dict[str, int]:
    async with api.store() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def blob_files(api: Api) -> set[Path]:
    root: Path = api.app.state.files.root
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


async def upload(api: Api, name: str, scope: str) -> str:
    body = data(
        await api.post(
            "/api/v1/chats/upload-file",
            files={"file": (name, f"{name}: 営業時間は9時から18時です。\n".encode(), "text/plain")},
            data={"data": f'{{"scope": "{scope}"}}'},
        )
    )
    uuid: str = body["uuid"]
    return uuid


async def form_agent(api: Api) -> str:
    """A builtin agent that asks for a form first, then looks things up."""
    agent = await api.create_agent(
        name="受付",
        unified_tools=[{"type": "request_form", "custom_form_schema": FORM}, {"type": "lookup"}],
    )
    agent_id: str = agent["id"]
    return agent_id


async def turn_with_everything(api: Api, chat_id: int, agent_id: str, attached: list[str]) -> None:
    """A turn that leaves a row in every table a chat has rows in."""
    body = {"message": "営業時間は?", "agent_id": agent_id, "attached_file_uuids": attached}
    streamed = await api.post(
        f"{chat_url(chat_id)}/messages", json=body, headers={"Idempotency-Key": f"turn-{chat_id}"}
    )
    paused = parse_stream(streamed.content)
    assert paused.completed.status == "awaiting_form"
    (start,) = paused.of("response.reasoning_step.start")
    assert isinstance(start, ReasoningStepStart)
    form_id = start.step.args["form_request_id"]
    submitted = await api.post(
        f"{chat_url(chat_id)}/form-requests/{form_id}/submit",
        json={"values": {"name": "山田"}, "stream": False, "agent_id": agent_id},
    )
    assert isinstance(data(submitted), str)
    answer = (await api.messages(chat_id))[-1]
    feedback = {"type": "sys_helpful", "content": "助かりました"}
    data(await api.post(f"{chat_url(chat_id)}/messages/{answer['id']}/feedbacks", json=feedback))


async def until_partial(api: Api, chat_id: int) -> None:
    """Until the chat's running answer has streamed some text."""
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat_id)
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                url = f"{chat_url(chat_id)}/responses/{rows[-1]['meta']['response_id']}"
                if data(await api.get(url))["final_text"]:
                    return
            await asyncio.sleep(0.01)


async def test_deleting_a_chat_deletes_what_is_only_its_own_and_nothing_else(api: Api) -> None:
    agent_id = await form_agent(api)
    shared = await upload(api, "shared.txt", "ephemeral")
    persistent = await upload(api, "persistent.txt", "persistent")
    kept = await api.create_chat(agent_id)
    await turn_with_everything(api, kept["id"], agent_id, [shared])
    before = await table_counts(api)
    blobs_before = blob_files(api)

    only_here = await upload(api, "only-here.txt", "ephemeral")
    chat = await api.create_chat(agent_id)
    await turn_with_everything(api, chat["id"], agent_id, [only_here, shared, persistent])
    filled = await table_counts(api)
    grown = sorted(table for table in filled if filled[table] > before[table])
    assert grown == [
        "chats",
        "feedbacks",
        "form_requests",
        "idempotency_keys",
        "message_files",
        "messages",
        "responses",
        "uploaded_files",
    ]

    assert data(await api.delete(chat_url(chat["id"]))) == {"id": chat["id"], "deleted": True}

    # The ephemeral file attached only here went with it; the shared and persistent ones stay.
    assert await table_counts(api) == before
    assert blob_files(api) == blobs_before
    assert (await api.get(f"/api/v1/chats/files/{only_here}")).status_code == 404
    for uuid in (shared, persistent):
        assert (await api.get(f"/api/v1/chats/files/{uuid}")).status_code == 200
    assert [c["id"] for c in data(await api.get("/api/v1/chats"))] == [kept["id"]]
    assert len(await api.messages(kept["id"])) == 3


async def test_a_deleted_chat_is_gone_for_every_endpoint(api: Api) -> None:
    chat = await api.create_chat()
    await api.stream(chat["id"], "こんにちは")
    response_id = (await api.messages(chat["id"]))[-1]["meta"]["response_id"]
    data(await api.delete(chat_url(chat["id"])))

    error(await api.delete(chat_url(chat["id"])), 404, 10003)
    error(await api.get(f"{chat_url(chat['id'])}/messages"), 404, 10003)
    error(await api.put(chat_url(chat["id"]), json={"name": "again"}), 404, 10003)
    error(await api.send(chat["id"], "まだいますか"), 404, 10003)
    error(await api.get(f"{chat_url(chat['id'])}/responses/{response_id}"), 404, 10003)
    assert data(await api.get("/api/v1/chats")) == []
    assert await api.counts() == (0, 0)


async def test_a_chat_of_another_workspace_or_unknown_is_404_and_nothing_is_deleted(
    api: Api,
) -> None:
    chat = await api.create_chat()
    await api.stream(chat["id"], "こんにちは")
    async with api.store() as session:
        other = await tenants.create_workspace(session, "other")
        _, other_key = await keys.create_key(session, other.id, name="other")
    before = await table_counts(api)

    message = error(await api.delete(chat_url(chat["id"]), key=other_key), 404, 10003)
    assert message == f"Chat {chat['id']} not found"
    error(await api.delete(chat_url(999_999)), 404, 10003)
    error(await api.delete(chat_url(2**63 - 1)), 404, 10003)
    assert await table_counts(api) == before
    assert len(await api.messages(chat["id"])) == 2


@pytest.mark.parametrize("chat_id", ["abc", "0", "-1", str(2**63)])
async def test_a_malformed_chat_id_is_400(api: Api, chat_id: str) -> None:
    error(await api.delete(f"/api/v1/chats/{chat_id}"), 400, 10006)


async def test_without_a_key_it_is_401_and_a_chat_key_may_delete(api: Api) -> None:
    chat = await api.create_chat()
    error(await api.client.delete(chat_url(chat["id"])), 401, 10001)
    assert data(await api.delete(chat_url(chat["id"]), key=api.chat_key))["deleted"] is True
    assert data(await api.get("/api/v1/chats")) == []


async def test_whitelist_mode_refuses_a_chat_whose_user_is_not_listed(api: Api) -> None:
    listed = await api.create_chat(external_user_id="alice")
    removed = await api.create_chat(external_user_id="bob")
    async with api.store() as session:
        workspace = await session.get(Workspace, api.workspace_id)
        assert workspace is not None
        workspace.whitelist_mode = True
        await workspaces.allow(session, api.workspace_id, "alice")

    error(await api.delete(chat_url(removed["id"])), 403, 14103)
    data(await api.delete(chat_url(listed["id"]), key=api.chat_key))
    assert [c["id"] for c in data(await api.get("/api/v1/chats"))] == [removed["id"]]


async def test_deleting_a_chat_stops_its_answer_in_progress(api: Api) -> None:
    agent_id = await api.scripted_agent(SLOW)
    chat = await api.create_chat(agent_id)
    kept = await api.create_chat(agent_id)
    before = await table_counts(api)
    send = asyncio.create_task(api.send(chat["id"], "長い答えを", agent_id=agent_id))
    await until_partial(api, chat["id"])

    loop = asyncio.get_running_loop()
    started = loop.time()
    data(await api.delete(chat_url(chat["id"])))
    stream = parse_stream((await send).content)
    assert loop.time() - started < 5
    assert stream.completed.status == "cancelled"
    assert stream.completed.final_text == "途中"
    after = await table_counts(api)
    assert after == {**before, "chats": before["chats"] - 1}
    assert [c["id"] for c in data(await api.get("/api/v1/chats"))] == [kept["id"]]
