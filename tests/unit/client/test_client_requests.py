"""Every namespace method: the request it sends (method, path, query, body, headers) and the model
it reads from the envelope — with `Client` and with `AsyncClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    BASE_URL,
    CHAT_ID,
    KEY,
    RESPONSE_ID,
    FakeApi,
    body_of,
    close,
    make_client,
    ok,
    resolve,
)

from kaiwa.client import (
    Agent,
    Chat,
    Client,
    Feedback,
    Message,
    NotFoundError,
    Page,
    ResponseStatus,
)

NOW = "2025-04-01T09:00:00Z"
CHAT = {
    "id": CHAT_ID,
    "name": "support",
    "created_at": NOW,
    "updated_at": NOW,
    "external_user_id": "u-1",
    "meta": {"external_user_id": "u-1", "conversation_agent_id": AGENT_ID},
}
MESSAGE = {
    "id": 41,
    "group_id": "cvg-1",
    "role": "assistant",
    "content": "営業時間は平日の9時から18時までです。",
    "created_at": NOW,
    "meta": {
        "agent_profile": None,
        "reasoning_steps": [],
        "token_usage": {"total_tokens": 9, "total_calls": 1},
        "response_time_ms": 120,
        "status": "completed",
        "response_id": RESPONSE_ID,
        "superseded": False,
    },
    "attached_files": [],
}
AGENT = {
    "id": AGENT_ID,
    "workspace_id": "ws-1",
    "name": "受付",
    "description": "",
    "system_prompt": "丁寧に答える",
    "llm_model": "scripted/x",
    "unified_tools": [{"type": "lookup"}],
    "suggested_questions": ["営業時間は?"],
    "meta": {"model_settings": {"temperature": 0.2}},
    "publish_state": "public",
    "agent_type": "basic",
    "use_search": False,
    "version": 2,
    "published_version": 2,
    "created_at": NOW,
    "updated_at": NOW,
}
FEEDBACK = {
    "id": 3,
    "chat_id": CHAT_ID,
    "message_id": 41,
    "type": "sys_helpful",
    "content": "助かりました",
    "external_user_id": None,
    "created_at": NOW,
    "updated_at": NOW,
}
STATUS = {
    "id": RESPONSE_ID,
    "chat_id": CHAT_ID,
    "status": "cancelled",
    "model": "scripted/x",
    "final_text": "営業時間は",
    "usage": {"total_tokens": 3, "total_calls": 1},
    "steps": [],
    "error": None,
    "user_message_id": 40,
    "assistant_message_id": 41,
    "created_at": NOW,
    "finished_at": NOW,
}


def paged(total: int) -> dict[str, Any]:
    return {
        "limit": 50,
        "offset": 0,
        "total_records": total,
        "total_pages": 1,
        "current_page": 1,
        "next_page": None,
        "prev_page": None,
    }


@dataclass
class Case:
    invoke: Callable[[Any], Any]
    method: str
    path: str
    data: Any
    check: Callable[[Any], bool]
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    pagination: dict[str, Any] | None = None


CHATS = f"/chats/{CHAT_ID}"
RESPONSE = f"{CHATS}/responses/{RESPONSE_ID}"
AGENT_PATH = f"/agents/{AGENT_ID}"

CASES: dict[str, Case] = {
    "chats.published_agents": Case(
        lambda c: c.chats.published_agents(),
        "GET",
        "/chats/published-agents",
        [AGENT],
        lambda r: isinstance(r[0], Agent) and r[0].version == 2 and r[0].name == "受付",
    ),
    "chats.create": Case(
        lambda c: c.chats.create(name="support", agent_id=AGENT_ID),
        "POST",
        "/chats",
        CHAT,
        lambda r: isinstance(r, Chat) and r.id == CHAT_ID and r.meta.external_user_id == "u-1",
        json={"name": "support", "agent_id": AGENT_ID},
    ),
    "chats.create with a UUID and a user": Case(
        lambda c: c.chats.create(name="s", agent_id=UUID(AGENT_ID), external_user_id="u-1"),
        "POST",
        "/chats",
        CHAT,
        lambda r: r.external_user_id == "u-1",
        json={"name": "s", "agent_id": AGENT_ID, "external_user_id": "u-1"},
    ),
    "chats.list": Case(
        lambda c: c.chats.list(),
        "GET",
        "/chats",
        [CHAT],
        lambda r: isinstance(r, Page) and r.items[0].name == "support" and not r.has_next,
        params={"limit": "50", "offset": "0"},
        pagination=paged(1),
    ),
    "chats.list with filters": Case(
        lambda c: c.chats.list(
            agent_id=AGENT_ID, external_user_id="u-1", order_by="asc", limit=5, offset=10
        ),
        "GET",
        "/chats",
        [],
        lambda r: r.items == [],
        params={
            "limit": "5",
            "offset": "10",
            "agent_id": AGENT_ID,
            "external_user_id": "u-1",
            "order_by": "asc",
        },
        pagination=paged(0),
    ),
    "chats.rename": Case(
        lambda c: c.chats.rename(CHAT_ID, name="営業時間"),
        "PUT",
        CHATS,
        CHAT,
        lambda r: isinstance(r, Chat),
        json={"name": "営業時間"},
    ),
    "messages.list": Case(
        lambda c: c.messages.list(CHAT_ID, limit=20, offset=40),
        "GET",
        f"{CHATS}/messages",
        [MESSAGE],
        lambda r: (
            isinstance(r.items[0], Message)
            and r.items[0].meta.status == "completed"
            and r.items[0].meta.token_usage.total_tokens == 9
        ),
        params={"limit": "20", "offset": "40"},
        pagination=paged(1),
    ),
    "messages.send": Case(
        lambda c: c.messages.send(CHAT_ID, message="営業時間は?", agent_id=AGENT_ID),
        "POST",
        f"{CHATS}/messages",
        "平日の9時から18時までです。",
        lambda r: r == "平日の9時から18時までです。",
        json={"message": "営業時間は?", "agent_id": AGENT_ID, "stream": False},
    ),
    "messages.send with every option": Case(
        lambda c: c.messages.send(
            CHAT_ID,
            "hi",
            agent_id=AGENT_ID,
            external_user_id="u-1",
            attached_file_uuids=[UUID(AGENT_ID)],
            include_tool_tags=True,
            on_disconnect="cancel",
            if_busy="interrupt",
        ),
        "POST",
        f"{CHATS}/messages",
        "ok",
        lambda r: r == "ok",
        json={
            "message": "hi",
            "agent_id": AGENT_ID,
            "stream": False,
            "external_user_id": "u-1",
            "attached_file_uuids": [AGENT_ID],
            "include_tool_tags": True,
            "on_disconnect": "cancel",
            "if_busy": "interrupt",
        },
    ),
    "messages.regenerate": Case(
        lambda c: c.messages.regenerate(CHAT_ID, agent_id=AGENT_ID, if_busy="interrupt"),
        "POST",
        f"{CHATS}/regenerate",
        "別の答え",
        lambda r: r == "別の答え",
        json={"agent_id": AGENT_ID, "stream": False, "if_busy": "interrupt"},
    ),
    "feedback.give": Case(
        lambda c: c.feedback.give(CHAT_ID, 41, type="sys_helpful", content="助かりました"),
        "POST",
        f"{CHATS}/messages/41/feedbacks",
        FEEDBACK,
        lambda r: isinstance(r, Feedback) and r.type == "sys_helpful",
        json={"type": "sys_helpful", "content": "助かりました"},
    ),
    "responses.status": Case(
        lambda c: c.responses.status(CHAT_ID, RESPONSE_ID),
        "GET",
        RESPONSE,
        STATUS,
        lambda r: isinstance(r, ResponseStatus) and r.status == "cancelled",
    ),
    "responses.cancel": Case(
        lambda c: c.responses.cancel(CHAT_ID, RESPONSE_ID),
        "POST",
        f"{RESPONSE}/cancel",
        STATUS,
        lambda r: r.final_text == "営業時間は" and r.usage.total_tokens == 3,
    ),
    "agents.create": Case(
        lambda c: c.agents.create(
            name="受付",
            system_prompt="丁寧に答える",
            llm_model="scripted/x",
            unified_tools=[{"type": "lookup"}],
            suggested_questions=["営業時間は?"],
            meta={"model_settings": {"temperature": 0.2}},
        ),
        "POST",
        "/agents",
        AGENT,
        lambda r: isinstance(r, Agent) and r.unified_tools == [{"type": "lookup"}],
        json={
            "name": "受付",
            "system_prompt": "丁寧に答える",
            "llm_model": "scripted/x",
            "unified_tools": [{"type": "lookup"}],
            "suggested_questions": ["営業時間は?"],
            "meta": {"model_settings": {"temperature": 0.2}},
        },
    ),
    "agents.list": Case(
        lambda c: c.agents.list(limit=10),
        "GET",
        "/agents",
        [AGENT],
        lambda r: r.items[0].id == AGENT_ID and r.pagination.total_records == 1,
        params={"limit": "10", "offset": "0"},
        pagination=paged(1),
    ),
    "agents.get": Case(
        lambda c: c.agents.get(AGENT_ID),
        "GET",
        AGENT_PATH,
        AGENT,
        lambda r: r.publish_state == "public",
    ),
    "agents.update sends only what is given": Case(
        lambda c: c.agents.update(AGENT_ID, description="新しい説明"),
        "PATCH",
        AGENT_PATH,
        AGENT,
        lambda r: isinstance(r, Agent),
        json={"description": "新しい説明"},
    ),
    "agents.delete": Case(
        lambda c: c.agents.delete(AGENT_ID),
        "DELETE",
        AGENT_PATH,
        {"id": AGENT_ID, "deleted": True},
        lambda r: r is None,
    ),
    "agents.publish": Case(
        lambda c: c.agents.publish(AGENT_ID),
        "POST",
        f"{AGENT_PATH}/publish",
        AGENT,
        lambda r: r.version == 2,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_method_sends_its_request_and_reads_its_answer(kind: str, case: Case) -> None:
    api = FakeApi().on(case.method, case.path, ok(case.data, pagination=case.pagination))
    client = make_client(kind, api)

    result = await resolve(case.invoke(client))
    await close(client)

    (request,) = api.requests
    assert request.method == case.method
    assert request.url.path == "/api/v1" + case.path
    assert dict(request.url.params) == case.params
    assert body_of(request) == case.json
    assert request.headers["x-api-key"] == KEY
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("kaiwa-python/")
    assert case.check(result), result


def test_every_namespace_method_has_a_case() -> None:
    client = Client(base_url=BASE_URL, api_key=KEY)
    covered = {name.split(" ")[0] for name in CASES}
    # Streams and page walks have their own modules.
    elsewhere = {
        "messages.stream",
        "messages.stream_regenerate",
        "responses.stream",
        "chats.iter_all",
        "messages.iter_all",
        "agents.iter_all",
    }
    methods = {
        f"{namespace}.{name}"
        for namespace in ("chats", "messages", "feedback", "responses", "agents")
        for name in dir(getattr(client, namespace))
        if not name.startswith("_")
    }
    client.close()
    assert methods == covered | elsewhere


async def test_the_read_timeout_is_90_seconds_by_default(kind: str) -> None:
    api = FakeApi().on("GET", "/agents", ok([], pagination=paged(0)))
    client = make_client(kind, api)
    await resolve(client.agents.list())
    await close(client)
    assert api.last.extensions["timeout"]["read"] == 90.0


async def test_a_per_call_timeout_reaches_the_request(kind: str) -> None:
    api = FakeApi().on("POST", f"{CHATS}/messages", ok("done"))
    client = make_client(kind, api)
    await resolve(client.messages.send(CHAT_ID, "hi", agent_id=AGENT_ID, timeout=300))
    await close(client)
    assert api.last.extensions["timeout"]["read"] == 300.0


@pytest.mark.parametrize(
    "base_url",
    [
        "http://kaiwa.test",
        "http://kaiwa.test/",
        "http://kaiwa.test/api/v1",
        "http://kaiwa.test/api/v1/",
    ],
)
async def test_the_base_url_may_carry_the_api_prefix_or_not(kind: str, base_url: str) -> None:
    api = FakeApi().on("GET", "/chats/published-agents", ok([]))
    client = make_client(kind, api, base_url=base_url)
    await resolve(client.chats.published_agents())
    await close(client)
    assert str(api.last.url) == "http://kaiwa.test/api/v1/chats/published-agents"


def test_a_path_behind_a_reverse_proxy_is_kept() -> None:
    api = FakeApi().on("GET", "/chats/published-agents", ok([]))
    client = Client(
        base_url="https://example.test/kaiwa", api_key=KEY, transport=httpx.MockTransport(api)
    )
    # The fake only knows paths without the proxy's prefix: a 404 here.
    with client, pytest.raises(NotFoundError):
        client.chats.published_agents()
    assert str(api.last.url) == "https://example.test/kaiwa/api/v1/chats/published-agents"


def test_ids_are_quoted_into_a_single_path_segment() -> None:
    api = FakeApi()
    client = Client(base_url=BASE_URL, api_key=KEY, transport=httpx.MockTransport(api))
    with client, pytest.raises(NotFoundError):
        client.agents.get("../chats")
    assert api.last.url.raw_path == b"/api/v1/agents/..%2Fchats"


def test_the_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIWA_API_KEY", "kw-from-env")
    monkeypatch.setenv("KAIWA_BASE_URL", "http://env.test:9000")
    api = FakeApi().on("GET", "/chats/published-agents", ok([]))
    with Client(transport=httpx.MockTransport(api)) as client:
        client.chats.published_agents()
    assert api.last.headers["x-api-key"] == "kw-from-env"
    assert api.last.url.host == "env.test"
    assert api.last.url.port == 9000
