"""Keys: missing, unknown, revoked, expired; header case; scopes; workspace isolation; the key
checked before the body is read; forged resume tokens."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from api_support import Api, data, error

from kaiwa.store.db import new_id, now
from kaiwa.store.keys import create_key, revoke_key
from kaiwa.store.models import Workspace

MakeApi = Callable[..., Awaitable[Api]]
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


# --- The key comes first ----------------------------------------------------------------------

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
JSON = "application/json"
# Bodies that would each be a 400 (or a 413) once read: malformed JSON, the wrong type of body,
# a path parameter that is not an id, a multipart body that is not one.
BAD_BODIES = [
    ("POST", "/api/v1/chats", b'{"name": ', JSON),
    ("POST", "/api/v1/agents", b"[" * 5_000 + b"]" * 5_000, JSON),
    ("PATCH", f"/api/v1/agents/{UNKNOWN_UUID}", b"\xff\xfe", JSON),
    ("PUT", "/api/v1/chats/not-an-id", b"null", JSON),
    ("POST", "/api/v1/chats/1/messages", b'{"message": "hi"}', "text/plain"),
    ("POST", "/api/v1/chats/1/messages", b"message=hi", "application/x-www-form-urlencoded"),
    ("POST", "/api/v1/batches", b"", JSON),
    ("POST", "/api/v1/chats/upload-file", b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ("POST", "/api/v1/chats/upload-file", b'{"file": 1}', JSON),
    ("POST", f"/api/v1/knowledge-bases/{UNKNOWN_UUID}/documents", b"{", JSON),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type"), BAD_BODIES)
@pytest.mark.parametrize(("key", "expected"), [(None, "Missing API key"), ("kw_no", "Invalid")])
async def test_a_request_without_a_valid_key_is_401_whatever_its_body(
    api: Api,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    key: str | None,
    expected: str,
) -> None:
    headers = {"content-type": content_type}
    if key is not None:
        headers["x-api-key"] = key
    response = await api.client.request(method, path, content=body, headers=headers)
    assert expected in error(response, 401, 10001)


async def test_every_endpoint_with_a_body_checks_the_key_before_reading_it(api: Api) -> None:
    """Read from the OpenAPI document, so that a new endpoint is held to it too."""
    checked = 0
    for path, operations in api.app.openapi()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            url = re.sub(r"\{[^}]+\}", "not-an-id", path)
            for content_type in operation["requestBody"]["content"]:
                response = await api.client.request(
                    method, url, content=b'{"', headers={"content-type": content_type}
                )
                assert "Missing API key" in error(response, 401, 10001), (method, path)
                checked += 1
    assert checked >= 15


async def test_a_chat_key_is_403_on_management_before_the_body_is_read(api: Api) -> None:
    for method, path, body, content_type in BAD_BODIES:
        if path.startswith(("/api/v1/agents", "/api/v1/knowledge-bases")):
            response = await api.request(
                method, path, key=api.chat_key, content=body, headers={"content-type": content_type}
            )
            assert "management key" in error(response, 403, 10001)


async def test_an_upload_without_a_key_is_refused_before_its_body_is_read(api: Api) -> None:
    """20 MiB of multipart, sent without a key: refused after at most the first chunk."""
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(320):
            sent += 1
            yield b"\0" * 65_536
        yield b"\r\n--B--\r\n"

    for key in (None, "kw_not-a-real-key"):
        sent = 0
        headers = {"content-type": "multipart/form-data; boundary=B"}
        if key is not None:
            headers["x-api-key"] = key
        response = await api.client.post(
            "/api/v1/chats/upload-file", content=body(), headers=headers
        )
        error(response, 401, 10001)
        assert sent <= 1


async def test_a_rate_limited_key_is_429_before_the_body_is_read(make_api: MakeApi) -> None:
    api = await make_api(rate_limit_per_minute=1)
    assert data(await api.get("/api/v1/chats")) == []
    response = await api.post(
        "/api/v1/chats", content=b"{", headers={"content-type": "application/json"}
    )
    error(response, 429, 10007)
    assert response.headers["retry-after"]


# --- Resume tokens ----------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 5_000 + b"]" * 5_000,
        b'{"r":' * 2_000 + b"1" + b"}" * 2_000,
        b"\xff\xfe not JSON",
        b'{"r": "x", "c": 1, "e": NaN}',
    ],
)
async def test_a_forged_resume_token_is_401_whatever_its_payload(api: Api, payload: bytes) -> None:
    """The signature is checked before the payload is parsed, so no forged payload is."""
    chat = await api.create_chat()
    url = f"/api/v1/chats/{chat['id']}/responses/{UNKNOWN_UUID}/events"
    for signature in ("", "AAAA", _b64(b"\0" * 32), "not base64!"):
        response = await api.client.get(url, params={"token": f"{_b64(payload)}.{signature}"})
        assert "resume token" in error(response, 401, 10001)
