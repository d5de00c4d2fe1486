"""The admin API: workspaces and their keys, behind the admin key; deleting a workspace whole."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Api, data, envelope, error, parse_stream
from sqlalchemy import func, select

from kaiwa.store import workspaces
from kaiwa.store.models import Base

ADMIN_KEY = "admin-key-for-the-tests-0123456789"
ADMIN = "/api/v1/admin"
WORKSPACES = f"{ADMIN}/workspaces"
KB = "/api/v1/knowledge-bases"
FORM = {
    "title": "Contact",
    "fields": [{"name": "name", "label": "お名前", "type": "shortText", "required": True}],
}


@pytest.fixture
async def admin_api(make_api: Any) -> Api:
    api: Api = await make_api(admin_key=ADMIN_KEY)
    return api


def as_admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def admin(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**as_admin(), **kwargs.pop("headers", {})}
    return await api.client.request(method, path, headers=headers, **kwargs)


async def new_workspace(api: Api, name: str = "営業部") -> tuple[str, str]:
    """A workspace made through the admin API, and a management key of it."""
    workspace = data(await admin(api, "POST", WORKSPACES, json={"name": name}))
    key = data(await admin(api, "POST", f"{WORKSPACES}/{workspace['id']}/keys", json={}))
    return workspace["id"], key["api_key"]


# -- who may call it -----------------------------------------------------------------------------


async def test_without_an_admin_key_setting_the_admin_api_does_not_exist(api: Api) -> None:
    for headers in ({}, as_admin(), {"x-admin-key": ADMIN_KEY}, {"x-api-key": api.key}):
        response = await api.client.get(WORKSPACES, headers=headers)
        assert error(response, 404, 10003) == "Not found: no such endpoint"
    error(await api.client.post(WORKSPACES, json={"name": "x"}, headers=as_admin()), 404, 10003)
    assert "/api/v1/admin" not in str((await api.client.get("/openapi.json")).json()["paths"])


async def test_no_key_a_workspace_key_or_a_wrong_key_is_refused(admin_api: Api) -> None:
    refusals: list[dict[str, str]] = [
        {},
        {"x-api-key": admin_api.key},
        as_admin(admin_api.key),
        {"x-admin-key": admin_api.key},
        as_admin(ADMIN_KEY[:-1]),
        as_admin(ADMIN_KEY + "x"),
        {"x-admin-key": ADMIN_KEY.upper()},
        {"authorization": f"Basic {ADMIN_KEY}"},
        {"authorization": "Bearer "},
    ]
    for headers in refusals:
        response = await admin_api.client.get(WORKSPACES, headers=headers)
        assert error(response, 401, 10001), headers
    missing = await admin_api.client.get(WORKSPACES)
    assert "Missing admin key" in error(missing, 401, 10001)
    # The key is checked before the body is read: a malformed body is not even looked at.
    broken = await admin_api.client.post(
        WORKSPACES, content=b"{not json", headers={"content-type": "application/json"}
    )
    error(broken, 401, 10001)


async def test_the_admin_key_in_either_header_is_accepted(admin_api: Api) -> None:
    for headers in (
        as_admin(),
        {"authorization": f"bearer {ADMIN_KEY}"},
        {"x-admin-key": ADMIN_KEY},
    ):
        listed = data(await admin_api.client.get(WORKSPACES, headers=headers))
        assert [w["id"] for w in listed] == [admin_api.workspace_id]


async def test_the_admin_key_is_no_workspace_key(admin_api: Api) -> None:
    error(await admin_api.get("/api/v1/chats", key=ADMIN_KEY), 401, 10001)


# -- workspaces ----------------------------------------------------------------------------------


async def test_create_list_get_and_rename_a_workspace(admin_api: Api) -> None:
    created = data(await admin(admin_api, "POST", WORKSPACES, json={"name": "営業部"}))
    assert set(created) == {"id", "name", "whitelist_mode", "created_at"}
    assert created["name"] == "営業部"
    assert created["whitelist_mode"] is False
    body = envelope(await admin(admin_api, "GET", WORKSPACES, params={"limit": 1, "offset": 1}))
    assert [w["id"] for w in body["data"]] == [created["id"]]
    assert body["pagination"]["total_records"] == 2

    renamed = data(
        await admin(admin_api, "PATCH", f"{WORKSPACES}/{created['id']}", json={"name": "sales"})
    )
    assert renamed == {**created, "name": "sales"}
    got = data(await admin(admin_api, "GET", f"{WORKSPACES}/{created['id']}"))
    assert got["name"] == "sales"
    assert got["contents"]["workspaces"] == 1
    assert got["contents"]["chats"] == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"name": "   "}, "name: must not be empty"),
        ({"name": "x" * 257}, "name"),
        ({}, "name"),
        ({"name": "ok", "whitelist": True}, "whitelist"),
        ({"name": 12}, "name"),
    ],
)
async def test_a_bad_workspace_name_is_refused(
    admin_api: Api, body: dict[str, Any], says: str
) -> None:
    assert says in error(await admin(admin_api, "POST", WORKSPACES, json=body), 400, 10006)


async def test_an_unknown_workspace_is_404_everywhere(admin_api: Api) -> None:
    path = f"{WORKSPACES}/no-such-workspace"
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"name": "x"}),
        ("DELETE", path, None),
        ("GET", f"{path}/keys", None),
        ("POST", f"{path}/keys", {}),
        ("DELETE", f"{path}/keys/whatever", None),
    ]:
        response = await admin(admin_api, method, url, json=body)
        assert "no-such-workspace" in error(response, 404, 10003), (method, url)


# -- keys ----------------------------------------------------------------------------------------


async def test_a_new_workspace_key_sees_only_its_workspace(admin_api: Api) -> None:
    await admin_api.create_chat(name="demo's chat")
    _, key = await new_workspace(admin_api)
    assert data(await admin_api.get("/api/v1/chats", key=key)) == []
    agent = data(await admin_api.post("/api/v1/agents", key=key, json={"name": "窓口"}))
    assert data(await admin_api.get("/api/v1/agents", key=key)) == [agent]
    assert agent["id"] not in [a["id"] for a in data(await admin_api.get("/api/v1/agents"))]


async def test_keys_are_created_listed_and_revoked_per_workspace(admin_api: Api) -> None:
    workspace_id, _ = await new_workspace(admin_api)
    keys_url = f"{WORKSPACES}/{workspace_id}/keys"
    created = data(
        await admin(
            admin_api,
            "POST",
            keys_url,
            json={"name": "bot", "scope": "chat", "expires_at": "2999-01-01T00:00:00"},
        )
    )
    plaintext = created.pop("api_key")
    assert plaintext.startswith(created["prefix"])
    assert created["scope"] == "chat"
    assert created["workspace_id"] == workspace_id
    assert created["expires_at"] == "2999-01-01T00:00:00.000000Z"
    assert data(await admin_api.get("/api/v1/chats", key=plaintext)) == []
    error(await admin_api.get("/api/v1/agents", key=plaintext), 403, 10001)

    listed = data(await admin(admin_api, "GET", keys_url))
    assert created in listed
    assert plaintext not in str(listed)
    # Another workspace's key is not this workspace's to revoke.
    demo_keys = data(await admin(admin_api, "GET", f"{WORKSPACES}/{admin_api.workspace_id}/keys"))
    error(await admin(admin_api, "DELETE", f"{keys_url}/{demo_keys[0]['id']}"), 404, 10003)

    revoked = data(await admin(admin_api, "DELETE", f"{keys_url}/{created['id']}"))
    assert revoked["revoked_at"] is not None
    error(await admin_api.get("/api/v1/chats", key=plaintext), 401, 10001)
    assert data(await admin_api.get("/api/v1/chats")) == []  # the demo's key still works


async def test_a_key_past_its_expiry_is_refused(admin_api: Api) -> None:
    workspace_id, _ = await new_workspace(admin_api)
    expired = data(
        await admin(
            admin_api,
            "POST",
            f"{WORKSPACES}/{workspace_id}/keys",
            json={"expires_at": "2000-01-01T00:00:00Z"},
        )
    )
    assert "expired" in error(
        await admin_api.get("/api/v1/chats", key=expired["api_key"]), 401, 10001
    )


@pytest.mark.parametrize(
    "body", [{"scope": "admin"}, {"expires_at": "next tuesday"}, {"name": ""}, {"key": "mine"}]
)
async def test_a_bad_key_request_is_refused(admin_api: Api, body: dict[str, Any]) -> None:
    url = f"{WORKSPACES}/{admin_api.workspace_id}/keys"
    error(await admin(admin_api, "POST", url, json=body), 400, 10006)


# -- deleting a workspace ------------------------------------------------------------------------


async def table_counts(api: Api) -> dict[str, int]:
    """Rows of every table kaiwa has."""
    async with api.store() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def blob_files(api: Api) -> set[Path]:
    root: Path = api.app.state.files.root
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


async def fill(api: Api, key: str) -> dict[str, Any]:
    """Put something in every table a workspace can have rows in, through the API."""
    kb = envelope(await api.post(KB, key=key, json={"name": "FAQ"}))["data"]
    document = envelope(
        await api.post(
            f"{KB}/{kb['id']}/documents",
            key=key,
            json={"title": "営業時間", "text": "営業時間は9時から18時までです。"},
        )
    )["data"]
    await api.app.state.jobs.settle(["index"])
    agent = data(
        await api.post(
            "/api/v1/agents",
            key=key,
            json={
                "name": "受付",
                "unified_tools": [
                    {"type": "knowledge_base", "knowledge_base_ids": [kb["id"]]},
                    {"type": "request_form", "custom_form_schema": FORM},
                ],
            },
        )
    )
    data(await api.post(f"/api/v1/agents/{agent['id']}/publish", key=key))
    attachment = data(
        await api.post(
            "/api/v1/chats/upload-file",
            key=key,
            files={"file": ("hours.txt", b"Opening hours: 9 to 18.\n", "text/plain")},
        )
    )
    data(
        await api.post(
            "/api/v1/chats/upload-file",
            key=key,
            files={"file": ("later.txt", b"Not attached yet.\n", "text/plain")},
            data={"data": '{"scope": "ephemeral"}'},
        )
    )
    chat = data(
        await api.post("/api/v1/chats", key=key, json={"name": "c", "agent_id": agent["id"]})
    )
    body = {
        "message": "営業時間は?",
        "agent_id": agent["id"],
        "stream": True,
        "attached_file_uuids": [attachment["uuid"]],
    }
    streamed = await api.post(
        f"/api/v1/chats/{chat['id']}/messages",
        key=key,
        json=body,
        headers={"Idempotency-Key": "once"},
    )
    assert parse_stream(streamed.content).completed.status == "awaiting_form"
    rows = data(await api.get(f"/api/v1/chats/{chat['id']}/messages", key=key))
    answer = rows[-1]
    data(
        await api.post(
            f"/api/v1/chats/{chat['id']}/messages/{answer['id']}/feedbacks",
            key=key,
            json={"type": "sys_helpful"},
        )
    )
    batch = data(
        await api.post(
            "/api/v1/batches",
            key=key,
            json={
                "agent_id": agent["id"],
                "requests": [{"custom_id": "a", "message": "営業時間は?"}],
            },
        )
    )
    async with asyncio.timeout(15):
        while True:
            state = data(await api.get(f"/api/v1/batches/{batch['id']}", key=key))["status"]
            if state in ("completed", "failed"):
                break
            await asyncio.sleep(0.02)
    return {"kb": kb, "document": document, "agent": agent, "chat": chat}


async def test_deleting_a_workspace_leaves_no_row_and_no_blob_behind(admin_api: Api) -> None:
    # The demo workspace has things of its own, which stay.
    demo_chat = await admin_api.create_chat(name="stays")
    await admin_api.stream(demo_chat["id"], "こんにちは")
    data(
        await admin_api.post(
            "/api/v1/chats/upload-file",
            files={"file": ("mine.txt", b"The demo's own file.\n", "text/plain")},
        )
    )
    before = await table_counts(admin_api)
    blobs_before = blob_files(admin_api)

    workspace_id, key = await new_workspace(admin_api)
    await fill(admin_api, key)
    async with admin_api.store() as session:
        await workspaces.allow(session, workspace_id, "end-user-1")
    filled = await table_counts(admin_api)
    grown = {table: filled[table] - before[table] for table in filled}
    empty = sorted(table for table, rows in grown.items() if rows <= 0)
    # Every table but the server's secrets and the job queue (whose jobs are gone once done, and
    # whose jobs about a deleted workspace's rows find nothing to do) now holds rows of the
    # workspace; a table missing here is one this test does not fill: if it holds a workspace's
    # rows, deletion must clear it.
    assert empty == ["jobs", "server_secrets"], empty
    assert len(blob_files(admin_api) - blobs_before) == 2

    deleted = data(await admin(admin_api, "DELETE", f"{WORKSPACES}/{workspace_id}"))
    assert deleted["id"] == workspace_id
    assert deleted["deleted"] == {table: rows for table, rows in grown.items() if rows}

    assert await table_counts(admin_api) == before
    assert blob_files(admin_api) == blobs_before
    listed = data(await admin(admin_api, "GET", WORKSPACES))
    assert [w["id"] for w in listed] == [admin_api.workspace_id]
    error(await admin_api.get("/api/v1/chats", key=key), 401, 10001)
    # What the demo workspace holds is untouched, and still served.
    assert [c["id"] for c in data(await admin_api.get("/api/v1/chats"))] == [demo_chat["id"]]
    assert len(await admin_api.messages(demo_chat["id"])) == 2


async def test_deleting_a_workspace_stops_its_answers_in_progress(admin_api: Api) -> None:
    before = await table_counts(admin_api)
    workspace_id, key = await new_workspace(admin_api)
    script = {"answer": [{"text": "途中"}, *[{"delay": 0.5}] * 20, {"text": "終わり"}]}
    agent = data(
        await admin_api.post(
            "/api/v1/agents",
            key=key,
            json={
                "name": "slow",
                "llm_model": "scripted/test",
                "meta": {"model_settings": {"script": script}},
            },
        )
    )
    data(await admin_api.post(f"/api/v1/agents/{agent['id']}/publish", key=key))
    chat = data(
        await admin_api.post("/api/v1/chats", key=key, json={"name": "c", "agent_id": agent["id"]})
    )
    body = {"message": "長い答えを", "agent_id": agent["id"], "stream": True}
    send = asyncio.create_task(
        admin_api.post(f"/api/v1/chats/{chat['id']}/messages", key=key, json=body)
    )
    messages = f"/api/v1/chats/{chat['id']}/messages"
    async with asyncio.timeout(5):
        while True:
            rows = data(await admin_api.get(messages, key=key))
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                break
            await asyncio.sleep(0.01)

    started = asyncio.get_running_loop().time()
    data(await admin(admin_api, "DELETE", f"{WORKSPACES}/{workspace_id}"))
    stream = parse_stream((await send).content)
    assert asyncio.get_running_loop().time() - started < 5
    assert stream.completed.status == "cancelled"
    assert await table_counts(admin_api) == before
