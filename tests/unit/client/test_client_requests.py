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
    Document,
    Feedback,
    KnowledgeBase,
    Message,
    NotFoundError,
    Page,
    ResponseStatus,
    SearchHit,
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
FILE_UUID = "0e858958-bea2-474b-a971-d87fdf01b8b8"
USER_MESSAGE = {
    **MESSAGE,
    "id": 40,
    "role": "user",
    "content": "離島への配送は?",
    "attached_files": [
        {
            "uuid": FILE_UUID,
            "original_name": "配送メモ.txt",
            "content_type": "text/plain",
            "size": 113,
            "file_url": f"{BASE_URL}/api/v1/chats/files/{FILE_UUID}",
            "scope": "persistent",
            "id": FILE_UUID,
            "name": "配送メモ.txt",
        }
    ],
}
FORM_ID = "a11e15de-403f-4245-a564-fe5a5773e93e"
KB_ID = "3f806d1c-b1ca-4ed2-99f3-ca01a2f7e5a1"
DOC_ID = "e0648277-52c1-443b-8880-c9c28d528377"
KB = {
    "id": KB_ID,
    "name": "FAQ",
    "description": "よくある質問",
    "document_count": 1,
    "created_at": NOW,
    "updated_at": NOW,
}
DOCUMENT = {
    "id": DOC_ID,
    "knowledge_base_id": KB_ID,
    "title": "営業時間",
    "source": "",
    "content_type": "text/plain",
    "size": 122,
    "status": "processing",
    "error": None,
    "chunk_count": 0,
    "created_at": NOW,
    "updated_at": NOW,
}
HIT = {
    "document_id": DOC_ID,
    "title": "営業時間",
    "chunk_id": 1,
    "snippet": "土曜日は11時から17時まで営業しています。",
    "score": 0.98,
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
KB_PATH = f"/knowledge-bases/{KB_ID}"
DOC_PATH = f"{KB_PATH}/documents/{DOC_ID}"

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
    "messages.list reads the attached files": Case(
        lambda c: c.messages.list(CHAT_ID),
        "GET",
        f"{CHATS}/messages",
        [USER_MESSAGE, MESSAGE],
        lambda r: (
            r.items[0].attached_files[0].uuid == FILE_UUID
            and r.items[0].attached_files[0].original_name == "配送メモ.txt"
            and r.items[1].attached_files == []
        ),
        params={"limit": "50", "offset": "0"},
        pagination=paged(2),
    ),
    "forms.submit": Case(
        lambda c: c.forms.submit(CHAT_ID, FORM_ID, {"name": "山田", "count": 2}),
        "POST",
        f"{CHATS}/form-requests/{FORM_ID}/submit",
        "ご記入ありがとうございます。",
        lambda r: r == "ご記入ありがとうございます。",
        json={"values": {"name": "山田", "count": 2}, "stream": False},
    ),
    "forms.submit with every option": Case(
        lambda c: c.forms.submit(
            CHAT_ID,
            UUID(FORM_ID),
            {"plans": ["松", "竹"], "day": "2025-04-01"},
            agent_id=UUID(AGENT_ID),
            external_user_id="u-1",
            include_tool_tags=True,
            on_disconnect="cancel",
        ),
        "POST",
        f"{CHATS}/form-requests/{FORM_ID}/submit",
        "ok",
        lambda r: r == "ok",
        json={
            "values": {"plans": ["松", "竹"], "day": "2025-04-01"},
            "stream": False,
            "agent_id": AGENT_ID,
            "external_user_id": "u-1",
            "include_tool_tags": True,
            "on_disconnect": "cancel",
        },
    ),
    "knowledge_bases.create": Case(
        lambda c: c.knowledge_bases.create(name="FAQ", description="よくある質問"),
        "POST",
        "/knowledge-bases",
        KB,
        lambda r: isinstance(r, KnowledgeBase) and r.document_count == 1,
        json={"name": "FAQ", "description": "よくある質問"},
    ),
    "knowledge_bases.list": Case(
        lambda c: c.knowledge_bases.list(limit=10, offset=20),
        "GET",
        "/knowledge-bases",
        [KB],
        lambda r: isinstance(r.items[0], KnowledgeBase) and r.items[0].id == KB_ID,
        params={"limit": "10", "offset": "20"},
        pagination=paged(1),
    ),
    "knowledge_bases.get": Case(
        lambda c: c.knowledge_bases.get(KB_ID),
        "GET",
        KB_PATH,
        KB,
        lambda r: r.name == "FAQ",
    ),
    "knowledge_bases.update sends only what is given": Case(
        lambda c: c.knowledge_bases.update(UUID(KB_ID), name="FAQ 2"),
        "PATCH",
        KB_PATH,
        KB,
        lambda r: isinstance(r, KnowledgeBase),
        json={"name": "FAQ 2"},
    ),
    "knowledge_bases.delete": Case(
        lambda c: c.knowledge_bases.delete(KB_ID),
        "DELETE",
        KB_PATH,
        {"id": KB_ID, "deleted": True},
        lambda r: r is None,
    ),
    "knowledge_bases.search": Case(
        lambda c: c.knowledge_bases.search(KB_ID, "土曜日は何時まで?", top_k=3),
        "POST",
        f"{KB_PATH}/search",
        [HIT],
        lambda r: isinstance(r[0], SearchHit) and r[0].chunk_id == 1 and r[0].score == 0.98,
        json={"query": "土曜日は何時まで?", "top_k": 3},
    ),
    "knowledge_bases.documents.add_text": Case(
        lambda c: c.knowledge_bases.documents.add_text(KB_ID, "平日は10時から", title="営業時間"),
        "POST",
        f"{KB_PATH}/documents",
        DOCUMENT,
        lambda r: isinstance(r, Document) and r.status == "processing",
        json={"title": "営業時間", "text": "平日は10時から"},
    ),
    "knowledge_bases.documents.add_text without a title": Case(
        lambda c: c.knowledge_bases.documents.add_text(KB_ID, "平日は10時から"),
        "POST",
        f"{KB_PATH}/documents",
        DOCUMENT,
        lambda r: isinstance(r, Document),
        json={"text": "平日は10時から"},
    ),
    "knowledge_bases.documents.list": Case(
        lambda c: c.knowledge_bases.documents.list(KB_ID),
        "GET",
        f"{KB_PATH}/documents",
        [DOCUMENT],
        lambda r: isinstance(r.items[0], Document) and not r.has_next,
        params={"limit": "50", "offset": "0"},
        pagination=paged(1),
    ),
    "knowledge_bases.documents.get": Case(
        lambda c: c.knowledge_bases.documents.get(KB_ID, DOC_ID),
        "GET",
        DOC_PATH,
        {**DOCUMENT, "status": "failed", "error": "no text could be read"},
        lambda r: r.status == "failed" and r.error == "no text could be read",
    ),
    "knowledge_bases.documents.delete": Case(
        lambda c: c.knowledge_bases.documents.delete(KB_ID, DOC_ID),
        "DELETE",
        DOC_PATH,
        {"id": DOC_ID, "deleted": True},
        lambda r: r is None,
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
        "forms.stream",
        "files.upload",
        "files.download",
        "knowledge_bases.documents.upload",
        "knowledge_bases.documents.wait_ready",
        "chats.iter_all",
        "messages.iter_all",
        "agents.iter_all",
        "knowledge_bases.iter_all",
        "knowledge_bases.documents.iter_all",
    }
    namespaces = {
        "chats": client.chats,
        "messages": client.messages,
        "forms": client.forms,
        "files": client.files,
        "feedback": client.feedback,
        "responses": client.responses,
        "agents": client.agents,
        "knowledge_bases": client.knowledge_bases,
        "knowledge_bases.documents": client.knowledge_bases.documents,
    }
    methods = {
        f"{path}.{name}"
        for path, namespace in namespaces.items()
        for name in dir(namespace)
        if not name.startswith("_") and callable(getattr(namespace, name))
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
