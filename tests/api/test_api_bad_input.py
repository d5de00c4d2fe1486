"""Bad input to send-message, and JSON nested too deep anywhere: the right 4xx, a message naming
the problem, and nothing stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_support import Api, data, error
from sqlalchemy import func, select

from kaiwa.protocol.json_limits import MAX_JSON_DEPTH
from kaiwa.store.models import Agent, Base, Batch, UploadedFile

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
UUIDS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(11)]


async def _assert_nothing_stored(api: Api, chat_id: int, before: tuple[int, int]) -> None:
    assert await api.counts() == before
    assert await api.messages(chat_id) == []
    chats = data(await api.get("/api/v1/chats"))
    assert [(c["id"], c["name"]) for c in chats] == [(chat_id, "kept")]


@pytest.fixture
async def chat_id(api: Api) -> int:
    chat = await api.create_chat(name="kept")
    chat_id: int = chat["id"]
    return chat_id


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        ({"message": 123}, 400, 10006, "message"),
        ({"message": None}, 400, 10006, "message"),
        ({"message": ["hi"]}, 400, 10006, "message"),
        ({"stream": "yes"}, 400, 10006, "stream"),
        ({"stream": 1}, 400, 10006, "stream"),
        ({"include_tool_tags": "no"}, 400, 10006, "include_tool_tags"),
        ({"external_user_id": 5}, 400, 10006, "external_user_id"),
        ({"message": ""}, 400, 10006, "message"),
        ({"message": " \n\t "}, 400, 10006, "message"),
        ({"message": "a\x00b"}, 400, 10006, "message"),
        ({"message": "x" * 32_001}, 413, 10011, "32000"),
        ({"agent_id": "not-a-uuid"}, 400, 10006, "agent_id"),
        ({"agent_id": None}, 400, 10006, "agent_id"),
        ({"attached_file_uuids": UUIDS}, 413, 10011, "attached_file_uuids"),
        ({"attached_file_uuids": ["nope"]}, 400, 10006, "attached_file_uuids"),
        ({"attached_file_uuids": "abc"}, 400, 10006, "attached_file_uuids"),
    ],
)
async def test_invalid_field_is_rejected_and_stores_nothing(
    api: Api, chat_id: int, body: dict[str, Any], status: int, code: int, names: str
) -> None:
    before = await api.counts()
    payload = {"message": "hello", "agent_id": api.demo_agent_id, **body}
    response = await api.post(f"/api/v1/chats/{chat_id}/messages", json=payload)
    assert names in error(response, status, code)
    await _assert_nothing_stored(api, chat_id, before)


@pytest.mark.parametrize("missing", ["message", "agent_id"])
async def test_missing_field_is_400_naming_it(api: Api, chat_id: int, missing: str) -> None:
    before = await api.counts()
    payload = {"message": "hello", "agent_id": api.demo_agent_id}
    del payload[missing]
    response = await api.post(f"/api/v1/chats/{chat_id}/messages", json=payload)
    assert missing in error(response, 400, 10006)
    await _assert_nothing_stored(api, chat_id, before)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"message": "hello", ', "Malformed JSON"),
        (b"", "body"),
        (b"null", "object"),
        (b'["hello"]', "object"),
        (b'"hello"', "object"),
        (b'{"message": "\xff\xfe hello", "agent_id": "AGENT"}', "UTF-8"),
        (b'{"message": "caf\xe9", "agent_id": "AGENT"}', "UTF-8"),
        (b'{"message": "bad \\ud800", "agent_id": "AGENT"}', "message"),
        (b'{"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body"),
    ],
)
async def test_malformed_body_is_400_and_stores_nothing(
    api: Api, chat_id: int, content: bytes, expected: str
) -> None:
    before = await api.counts()
    response = await api.post(
        f"/api/v1/chats/{chat_id}/messages",
        content=content.replace(b"AGENT", api.demo_agent_id.encode()),
        headers={"content-type": "application/json"},
    )
    assert expected in error(response, 400, 10006)
    await _assert_nothing_stored(api, chat_id, before)


async def test_message_of_exactly_the_limit_is_accepted(api: Api, chat_id: int) -> None:
    response = await api.send(chat_id, "あ" * 32_000, stream=False)
    assert isinstance(data(response), str)
    user = (await api.messages(chat_id))[0]
    assert user["content"] == "あ" * 32_000


async def test_body_over_one_mebibyte_is_413(api: Api, chat_id: int) -> None:
    before = await api.counts()
    payload = {"message": "hello", "agent_id": api.demo_agent_id, "padding": "x" * (1 << 20)}
    response = await api.post(f"/api/v1/chats/{chat_id}/messages", json=payload)
    assert "1048576 bytes" in error(response, 413, 10011)
    await _assert_nothing_stored(api, chat_id, before)


async def test_chunked_body_over_one_mebibyte_is_413(api: Api, chat_id: int) -> None:
    """Without a Content-Length, the limit is enforced on what arrives."""
    before = await api.counts()
    payload = json.dumps(
        {"message": "hello", "agent_id": api.demo_agent_id, "padding": "x" * (1 << 20)}
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 64 * 1024):
            yield payload[start : start + 64 * 1024]

    response = await api.post(
        f"/api/v1/chats/{chat_id}/messages",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert "1048576 bytes" in error(response, 413, 10011)
    await _assert_nothing_stored(api, chat_id, before)


async def test_agent_mismatch_is_400(api: Api, chat_id: int) -> None:
    before = await api.counts()
    other = (await api.create_agent(name="other"))["id"]
    response = await api.send(chat_id, "hello", agent_id=other)
    assert "History agent mismatch" in error(response, 400, 10006)
    await _assert_nothing_stored(api, chat_id, before)


async def test_unknown_agent_on_the_chat_is_400_mismatch(api: Api, chat_id: int) -> None:
    before = await api.counts()
    response = await api.send(chat_id, "hello", agent_id=UNKNOWN_UUID)
    assert "History agent mismatch" in error(response, 400, 10006)
    await _assert_nothing_stored(api, chat_id, before)


async def test_agent_without_a_published_version_is_404(api: Api) -> None:
    draft = (await api.create_agent(name="draft", publish=False))["id"]
    chat = await api.create_chat(draft, name="kept")
    before = await api.counts()
    response = await api.send(chat["id"], "hello", agent_id=draft)
    assert "Agent version not found" in error(response, 404, 10003)
    await _assert_nothing_stored(api, chat["id"], before)


async def test_unknown_chat_is_404(api: Api, chat_id: int) -> None:
    before = await api.counts()
    for stream in (True, False):
        response = await api.send(chat_id + 1000, "hello", stream=stream)
        assert str(chat_id + 1000) in error(response, 404, 10003)
    await _assert_nothing_stored(api, chat_id, before)


async def test_wrong_content_type_is_400(api: Api, chat_id: int) -> None:
    before = await api.counts()
    body = json.dumps({"message": "hello", "agent_id": api.demo_agent_id})
    response = await api.post(
        f"/api/v1/chats/{chat_id}/messages",
        content=body.encode(),
        headers={"content-type": "text/plain"},
    )
    error(response, 400, 10006)
    await _assert_nothing_stored(api, chat_id, before)


# --- JSON nested too deep ---------------------------------------------------------------------


def nested(depth: int) -> Any:
    """Objects `depth` levels deep: `nested(2) == {"k": {"k": 1}}`."""
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


async def _rows(api: Api, model: type[Base]) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300])
async def test_agent_meta_or_tool_nested_too_deep_is_400_naming_the_field(
    api: Api, depth: int
) -> None:
    agent = f"/api/v1/agents/{api.demo_agent_id}"
    kept = data(await api.get(agent))
    before = await _rows(api, Agent)
    lookup = {"type": "lookup", "extra": nested(depth)}
    form = {"type": "request_form", "custom_form_schema": nested(depth)}
    for method, path, body, field in [
        ("POST", "/api/v1/agents", {"name": "deep", "meta": nested(depth)}, "meta"),
        ("POST", "/api/v1/agents", {"name": "deep", "unified_tools": [lookup]}, "unified_tools"),
        ("PATCH", agent, {"meta": {"model_settings": nested(depth)}}, "meta"),
        ("PATCH", agent, {"unified_tools": [form]}, "unified_tools"),
    ]:
        message = error(await api.request(method, path, json=body), 400, 10006)
        assert message == f"{field}: must nest objects and arrays at most 64 levels deep"
    assert await _rows(api, Agent) == before
    assert data(await api.get(agent)) == kept


async def test_agent_meta_and_tools_nested_to_the_limit_are_kept(api: Api) -> None:
    # The list of tools and a tool are two levels of `unified_tools`.
    tools = [{"type": "lookup", "extra": nested(MAX_JSON_DEPTH - 2)}]
    created = await api.create_agent(
        publish=False, name="deep", meta=nested(MAX_JSON_DEPTH), unified_tools=tools
    )
    agent = data(await api.get(f"/api/v1/agents/{created['id']}"))
    assert agent["meta"] == nested(MAX_JSON_DEPTH)
    assert agent["unified_tools"] == tools


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300])
async def test_batch_requests_nested_too_deep_are_400_naming_them(api: Api, depth: int) -> None:
    before = await _rows(api, Batch)
    item = {"custom_id": "a", "message": "こんにちは", "extra": nested(depth)}
    response = await api.post(
        "/api/v1/batches", json={"agent_id": api.demo_agent_id, "requests": [item]}
    )
    message = error(response, 400, 10006)
    assert message == "requests: must nest objects and arrays at most 64 levels deep"
    assert await _rows(api, Batch) == before


async def test_form_values_nested_too_deep_are_400_naming_them(api: Api, chat_id: int) -> None:
    before = await api.counts()
    response = await api.post(
        f"/api/v1/chats/{chat_id}/form-requests/{UNKNOWN_UUID}/submit",
        json={"values": nested(MAX_JSON_DEPTH + 1)},
    )
    assert error(response, 400, 10006).startswith("values: must nest")
    await _assert_nothing_stored(api, chat_id, before)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000])
async def test_upload_data_nested_too_deep_is_400_and_stores_no_file(api: Api, depth: int) -> None:
    before = await _rows(api, UploadedFile)
    options = '{"scope":' * depth + '"ephemeral"' + "}" * depth
    response = await api.post(
        "/api/v1/chats/upload-file",
        files={"file": ("notes.txt", "メモ".encode(), "text/plain")},
        data={"data": options},
    )
    assert error(response, 400, 10006).startswith("data: must be a JSON string")
    assert await _rows(api, UploadedFile) == before
