"""[ext] Agents: create, validate, get, list, update, delete, publish; chats run what is live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from api_support import Api, data, envelope, error

from kaiwa.protocol import ResponseCreated

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


async def test_create_agent_returns_it_with_defaults(api: Api) -> None:
    agent = data(await api.post("/api/v1/agents", json={"name": "Helper"}))
    assert agent["name"] == "Helper"
    assert agent["workspace_id"] == api.workspace_id
    assert agent["llm_model"] == "builtin/extractive"
    assert agent["description"] == ""
    assert agent["system_prompt"] == ""
    assert agent["unified_tools"] == []
    assert agent["suggested_questions"] == []
    assert agent["meta"] == {}
    assert agent["published_version"] is None
    assert agent["publish_state"] == "private"
    assert data(await api.get(f"/api/v1/agents/{agent['id']}")) == agent


async def test_create_agent_with_every_field(make_api: Callable[..., Awaitable[Api]]) -> None:
    # Web search needs a provider; it is not reached while an agent is saved.
    api = await make_api(web_search={"provider": "searxng", "base_url": "http://127.0.0.1:9"})
    kb = envelope(await api.post("/api/v1/knowledge-bases", json={"name": "FAQ"}))["data"]
    fields = {
        "name": "Full",
        "description": "d",
        "system_prompt": "Be brief.",
        "llm_model": "scripted/test",
        "unified_tools": [
            {"type": "web_search", "domains": ["example.com"]},
            {"type": "lookup"},
            {"type": "call_agent", "agent_id": UNKNOWN_UUID, "invocation_instruction": "ask"},
            {"type": "knowledge_base", "knowledge_base_ids": [kb["id"]]},
            {"type": "fetch_web_content"},
            {
                "type": "request_form",
                "custom_form_schema": {"fields": [{"name": "n", "type": "shortText"}]},
            },
        ],
        "suggested_questions": ["Why?"],
        "meta": {"model_settings": {"temperature": 0.2}},
    }
    agent = data(await api.post("/api/v1/agents", json=fields))
    for name, value in fields.items():
        assert agent[name] == value, name
    assert agent["use_search"] is True


async def test_an_unknown_knowledge_base_is_refused(api: Api) -> None:
    tools = [{"type": "knowledge_base", "knowledge_base_ids": [UNKNOWN_UUID]}]
    body = {"name": "x", "unified_tools": tools}
    message = error(await api.post("/api/v1/agents", json=body), 400, 10006)
    assert f"knowledge base {UNKNOWN_UUID} not found" in message


async def test_web_search_without_a_provider_is_refused_saying_why(api: Api) -> None:
    body = {"name": "x", "unified_tools": [{"type": "web_search"}]}
    message = error(await api.post("/api/v1/agents", json=body), 400, 10006)
    assert "no web search provider is configured" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "llm_model": "gpt-4o"}, "llm_model"),
        ({"name": "x", "llm_model": "nowhere/model"}, "llm_model"),
        ({"name": "x", "llm_model": "builtin/"}, "llm_model"),
        ({"name": "x", "llm_model": "/model"}, "llm_model"),
        ({"name": "x", "llm_model": "scripted/" + "m" * 300}, "llm_model"),
        ({"name": "x", "llm_model": 5}, "llm_model"),
        ({"name": "x", "unified_tools": [{"type": "teleport"}]}, "unified_tools"),
        ({"name": "x", "unified_tools": [{"kind": "lookup"}]}, "unified_tools"),
        ({"name": "x", "unified_tools": [{"type": "call_agent", "agent_id": "no"}]}, "agent_id"),
        ({"name": "x", "unified_tools": "lookup"}, "unified_tools"),
        ({"name": "x", "meta": [1]}, "meta"),
        ({"name": "x", "meta": {"k": "nul\x00"}}, "meta"),
        ({"name": "x", "meta": {"model_settings": "fast"}}, "model_settings"),
        ({"name": "x", "meta": {"model_settings": [1]}}, "model_settings"),
        ({"name": "x", "suggested_questions": [1]}, "suggested_questions"),
        ({"name": ""}, "name"),
        ({"name": "n" * 257}, "name"),
        ({}, "name"),
    ],
)
async def test_create_agent_validation_is_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    message = error(await api.post("/api/v1/agents", json=body), 400, 10006)
    assert field in message
    listed = data(await api.get("/api/v1/agents"))
    assert [a["id"] for a in listed] == [api.demo_agent_id]


async def test_list_agents_is_paginated(api: Api) -> None:
    created = [(await api.create_agent(name=f"a{i}", publish=False))["id"] for i in range(3)]
    body = envelope(await api.get("/api/v1/agents", params={"limit": 2}))
    assert [a["id"] for a in body["data"]] == [api.demo_agent_id, created[0]]
    page = body["pagination"]
    assert (page["total_records"], page["total_pages"], page["current_page"]) == (4, 2, 1)
    following = envelope(await api.client.get(page["next_page"], headers=api.headers()))
    assert [a["id"] for a in following["data"]] == created[1:]
    assert following["pagination"]["next_page"] is None


async def test_patch_changes_only_the_given_fields(api: Api) -> None:
    agent = await api.create_agent(name="before", description="keep", publish=False)
    patched = data(
        await api.patch(
            f"/api/v1/agents/{agent['id']}",
            json={"name": "after", "system_prompt": "new prompt", "llm_model": "scripted/x"},
        )
    )
    assert patched["name"] == "after"
    assert patched["system_prompt"] == "new prompt"
    assert patched["llm_model"] == "scripted/x"
    assert patched["description"] == "keep"
    assert data(await api.get(f"/api/v1/agents/{agent['id']}")) == patched


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"llm_model": "nope"}, "llm_model"),
        ({"meta": {"model_settings": "fast"}}, "model_settings"),
        ({"name": ""}, "name"),
        ({"unified_tools": [{"type": "teleport"}]}, "unified_tools"),
    ],
)
async def test_invalid_patch_is_400_and_changes_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    agent = await api.create_agent(name="same", publish=False)
    response = await api.patch(f"/api/v1/agents/{agent['id']}", json=body)
    assert field in error(response, 400, 10006)
    assert data(await api.get(f"/api/v1/agents/{agent['id']}")) == agent


@pytest.mark.parametrize("agent_id", ["nope", "123", UNKNOWN_UUID])
async def test_unknown_or_malformed_agent_id(api: Api, agent_id: str) -> None:
    status, code = (404, 10003) if agent_id == UNKNOWN_UUID else (400, 10006)
    for response in (
        await api.get(f"/api/v1/agents/{agent_id}"),
        await api.patch(f"/api/v1/agents/{agent_id}", json={"name": "x"}),
        await api.delete(f"/api/v1/agents/{agent_id}"),
        await api.post(f"/api/v1/agents/{agent_id}/publish"),
    ):
        error(response, status, code)


async def test_deleted_agent_is_gone_everywhere(api: Api) -> None:
    agent = await api.create_agent(name="doomed")
    chat = await api.create_chat(agent["id"])
    listed = data(await api.get("/api/v1/chats/published-agents"))
    assert agent["id"] in [a["id"] for a in listed]

    deleted = data(await api.delete(f"/api/v1/agents/{agent['id']}"))
    assert deleted == {"id": agent["id"], "deleted": True}
    for response in (
        await api.get(f"/api/v1/agents/{agent['id']}"),
        await api.patch(f"/api/v1/agents/{agent['id']}", json={"name": "x"}),
        await api.delete(f"/api/v1/agents/{agent['id']}"),
        await api.post(f"/api/v1/agents/{agent['id']}/publish"),
        await api.post("/api/v1/chats", json={"name": "x", "agent_id": agent["id"]}),
    ):
        error(response, 404, 10003)
    listed = data(await api.get("/api/v1/chats/published-agents"))
    assert [a["id"] for a in listed] == [api.demo_agent_id]
    assert [a["id"] for a in data(await api.get("/api/v1/agents"))] == [api.demo_agent_id]

    # Its chat stays readable, but cannot run any more.
    before = await api.counts()
    error(await api.send(chat["id"], "hi", agent_id=agent["id"]), 404, 10003)
    assert await api.counts() == before
    assert data(await api.get(f"/api/v1/chats/{chat['id']}/messages")) == []


async def test_publishing_twice_makes_versions_1_and_2(api: Api) -> None:
    agent = await api.create_agent(name="versioned", publish=False)
    first = data(await api.post(f"/api/v1/agents/{agent['id']}/publish"))
    assert first["published_version"] == 1
    assert first["publish_state"] == "public"
    second = data(await api.post(f"/api/v1/agents/{agent['id']}/publish"))
    assert second["published_version"] == 2
    assert data(await api.get(f"/api/v1/agents/{agent['id']}"))["published_version"] == 2


async def test_chat_runs_the_published_version_until_republished(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "old answer"}])
    chat = await api.create_chat(agent_id)
    data(
        await api.patch(
            f"/api/v1/agents/{agent_id}",
            json={
                "system_prompt": "changed",
                "meta": {"model_settings": {"script": {"answer": [{"text": "new answer"}]}}},
            },
        )
    )
    stream = await api.stream(chat["id"], "one", agent_id=agent_id)
    assert stream.completed.final_text == "old answer"

    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))
    stream = await api.stream(chat["id"], "two", agent_id=agent_id)
    assert stream.completed.final_text == "new answer"


async def test_model_change_applies_on_publish(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "scripted"}])
    chat = await api.create_chat(agent_id)
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"llm_model": "builtin/extractive"}))
    created = (await api.stream(chat["id"], "one", agent_id=agent_id)).events[0]
    assert isinstance(created, ResponseCreated)
    assert created.model == "scripted/test"
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))
    created = (await api.stream(chat["id"], "two", agent_id=agent_id)).events[0]
    assert isinstance(created, ResponseCreated)
    assert created.model == "builtin/extractive"
