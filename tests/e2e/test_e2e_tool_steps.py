"""Every step type end to end: a real `kaiwa serve`, the offline built-in model using its tools
by fixed rules, fake web and search servers on loopback, and the SSE stream as a client reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import KaiwaServer, Launcher, Streamed
from tests.fakes.search_servers import FakeSearch
from tests.fakes.web_server import ARTICLE_TITLE, FakeWeb

HOURS = (
    "当店の営業時間は平日の10時から18時までです。土曜日は11時から17時まで営業しています。"
    "日曜日と祝日は定休日です。"
)
PRICES = "Proプランの価格は月額2,000円です。年払いにすると2か月分が無料になります。"


@pytest.fixture(scope="module")
def server(
    kaiwa_launcher: Launcher, _fake_web_server: FakeWeb, _fake_search_server: FakeSearch
) -> Iterator[KaiwaServer]:
    env = {
        "KAIWA_FETCH_ALLOW_PRIVATE": "127.0.0.1",
        "KAIWA_WEB_SEARCH__PROVIDER": "searxng",
        "KAIWA_WEB_SEARCH__BASE_URL": _fake_search_server.base_url_for("searxng"),
        "KAIWA_EMBEDDINGS__PROVIDER": "none",
    }
    server = kaiwa_launcher.start("tools", env=env)
    yield server
    server.stop()


def created(server: KaiwaServer, path: str, **kwargs: Any) -> Any:
    """POST that creates something (201, or 202 while it is processed); the envelope's data."""
    response = server.api("POST", path, **kwargs)
    assert response.status_code in (201, 202), (response.status_code, response.text)
    return response.json()["data"]


def knowledge_base(server: KaiwaServer, *documents: tuple[str, str]) -> str:
    kb = created(server, "/api/v1/knowledge-bases", json={"name": "FAQ"})
    path = f"/api/v1/knowledge-bases/{kb['id']}/documents"
    ids = [created(server, path, json={"title": t, "text": x})["id"] for t, x in documents]
    deadline = time.monotonic() + 30
    for document_id in ids:
        while True:
            document = server.ok(
                "GET", f"/api/v1/knowledge-bases/{kb['id']}/documents/{document_id}"
            )
            if document["status"] == "ready":
                break
            assert document["status"] == "processing", document
            assert time.monotonic() < deadline, document
            time.sleep(0.05)
    kb_id: str = kb["id"]
    return kb_id


def builtin_agent(server: KaiwaServer, name: str, *tools: dict[str, Any]) -> str:
    agent = server.create_agent(name=name, llm_model="builtin/extractive", unified_tools=tools)
    agent_id: str = agent["id"]
    return agent_id


def ask(server: KaiwaServer, agent_id: str, message: str, **extra: Any) -> Streamed:
    chat = server.create_chat(agent_id=agent_id)
    streamed = server.stream(chat["id"], message, agent_id=agent_id, **extra)
    assert streamed.status == 200, streamed.raw[-300:]
    assert streamed.done, streamed.raw[-300:]
    return streamed


def steps(streamed: Streamed) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each step's start and end, in the order they started; every start has its end."""
    starts = [e["step"] for e in streamed.of("response.reasoning_step.start")]
    ends = {e["step"]["id"]: e["step"] for e in streamed.of("response.reasoning_step.end")}
    assert set(ends) == {start["id"] for start in starts}
    order = [
        (e["type"].rsplit(".", 1)[1], e["step"]["id"])
        for e in streamed.events
        if e["type"].startswith("response.reasoning_step.")
    ]
    for start in starts:
        assert order.index(("start", start["id"])) < order.index(("end", start["id"]))
    return [(start, ends[start["id"]]) for start in starts]


def final(streamed: Streamed) -> dict[str, Any]:
    completed = streamed.of("response.output_text.completed")
    assert len(completed) == 1, streamed.types
    deltas = "".join(e["delta"] for e in streamed.of("response.output_text.delta"))
    assert completed[0]["final_text"] == deltas
    return completed[0]


def test_retrieve_context_finds_the_passage_and_the_answer_cites_it(server: KaiwaServer) -> None:
    kb_id = knowledge_base(server, ("営業時間", HOURS), ("料金", PRICES))
    agent_id = builtin_agent(
        server, "受付", {"type": "knowledge_base", "knowledge_base_ids": [kb_id]}
    )
    streamed = ask(server, agent_id, "土曜日の営業時間を教えてください")
    ((start, end),) = steps(streamed)
    assert start["type"] == "consultant_retrieve_context_source"
    assert start["tool_name"] == "retrieve_context_objs"
    assert start["args"] == {"query": "土曜日の営業時間を教えてください"}
    assert "ナレッジベースを検索" in start["content"]
    assert end["result"]["success"] is True
    top = end["result"]["data"]["sources"][0]
    assert top["title"] == "営業時間"
    assert set(top) == {"document_id", "title", "chunk_id", "snippet", "score"}
    text = final(streamed)["final_text"]
    assert "土曜日は11時から17時まで営業しています" in text
    assert text.endswith("出典: 営業時間")
    assert streamed.of("response.chat.title.updated")


def test_fetch_web_content_reads_the_page_and_refuses_private_addresses(
    server: KaiwaServer, fake_web: FakeWeb
) -> None:
    agent_id = builtin_agent(server, "reader", {"type": "fetch_web_content"})
    url = fake_web.url("/article")
    streamed = ask(server, agent_id, f"What does {url} say about the Fresnel lens design?")
    ((start, end),) = steps(streamed)
    assert start["type"] == "consultant_fetch_web_content"
    assert start["args"] == {"url": url}
    assert end["result"]["success"] is True
    assert end["result"]["data"]["title"] == ARTICLE_TITLE
    assert "Fresnel" in final(streamed)["final_text"]
    assert fake_web.paths == ["/article"]

    blocked = ask(server, agent_id, "Read http://169.254.169.254/latest/meta-data please")
    ((_, refused),) = steps(blocked)
    assert refused["result"]["success"] is False
    assert "169.254.169.254" in refused["result"]["data"]["error"]
    assert final(blocked)["status"] == "completed"


def test_search_web_runs_when_the_knowledge_base_has_nothing(
    server: KaiwaServer, fake_search: FakeSearch
) -> None:
    kb_id = knowledge_base(server, ("料金", PRICES))
    agent_id = builtin_agent(
        server,
        "searcher",
        {"type": "knowledge_base", "knowledge_base_ids": [kb_id]},
        {"type": "web_search"},
    )
    streamed = ask(server, agent_id, "How does the FastAPI lifespan parameter work?")
    (retrieve, _), (search, end) = steps(streamed)
    assert retrieve["type"] == "consultant_retrieve_context_source"
    assert search["type"] == "consultant_search_web"
    assert search["tool_name"] == "search_web"
    assert end["result"]["success"] is True
    results = end["result"]["data"]["results"]
    assert results[0]["url"] == "https://fastapi.tiangolo.com/advanced/events/"
    assert "<strong>" not in results[0]["title"]
    assert [q.query for q in fake_search.queries] == [
        "How does the FastAPI lifespan parameter work?"
    ]
    assert "fastapi.tiangolo.com" in final(streamed)["final_text"]


def test_lookup_reads_the_attached_file_and_earlier_turns(server: KaiwaServer) -> None:
    agent_id = builtin_agent(server, "clerk", {"type": "lookup"})
    note = "配送について。ご注文から3営業日以内に発送します。離島は追加で2日かかります。"
    response = server.api(
        "POST",
        "/api/v1/chats/upload-file",
        files={"file": ("配送メモ.txt", note.encode(), "text/plain")},
    )
    assert response.status_code == 200, response.text
    upload = response.json()["data"]
    chat = server.create_chat(agent_id=agent_id)
    streamed = server.stream(
        chat["id"],
        "離島への配送は何日かかりますか",
        agent_id=agent_id,
        attached_file_uuids=[upload["uuid"]],
    )
    ((start, end),) = steps(streamed)
    assert start["type"] == "consultant_lookup"
    assert end["result"]["success"] is True
    hit = end["result"]["data"]["results"][0]
    assert (hit["source"], hit["id"]) == ("file", upload["uuid"])
    assert "離島は追加で2日かかります" in final(streamed)["final_text"]
    user = server.messages(chat["id"])[0]
    assert [f["uuid"] for f in user["attached_files"]] == [upload["uuid"]]

    # The next turn finds the earlier answer in the chat's history.
    later = server.stream(chat["id"], "離島の配送日数をもう一度", agent_id=agent_id)
    sources = {r["source"] for r in steps(later)[0][1]["result"]["data"]["results"]}
    assert "message" in sources


def test_call_agent_asks_the_named_agent_and_counts_its_usage(server: KaiwaServer) -> None:
    kb_id = knowledge_base(server, ("料金", PRICES))
    billing = builtin_agent(
        server, "料金係", {"type": "knowledge_base", "knowledge_base_ids": [kb_id]}
    )
    front = builtin_agent(
        server,
        "窓口",
        {"type": "call_agent", "agent_id": billing, "invocation_instruction": "料金の質問"},
    )
    streamed = ask(server, front, "料金係に聞いてください: Proプランの価格は?")
    ((start, end),) = steps(streamed)
    assert start["type"] == "consultant_call_agent"
    assert start["args"]["agent_id"] == billing
    assert end["result"]["success"] is True
    assert "月額2,000円" in end["result"]["data"]["answer"]
    assert end["token_usage"]["total_calls"] == 2  # the helper's two rounds
    assert final(streamed)["usage"]["total_calls"] >= 2 + end["token_usage"]["total_calls"]
    assert "月額2,000円" in final(streamed)["final_text"]


def test_request_form_pauses_and_a_submit_goes_on(server: KaiwaServer) -> None:
    schema = {
        "fields": [
            {"name": "name", "label": "お名前", "type": "shortText", "required": True},
            {"name": "count", "label": "人数", "type": "number", "required": True},
        ]
    }
    agent_id = builtin_agent(server, "予約", {"type": "request_form", "custom_form_schema": schema})
    chat = server.create_chat(agent_id=agent_id)
    paused = server.stream(chat["id"], "予約をお願いします", agent_id=agent_id)
    (start,) = [e["step"] for e in paused.of("response.reasoning_step.start")]
    assert start["type"] == "consultant_request_form"
    assert [f["name"] for f in start["args"]["fields"]] == ["name", "count"]
    assert final(paused)["status"] == "awaiting_form"
    path = f"/api/v1/chats/{chat['id']}/form-requests/{start['args']['form_request_id']}/submit"
    bad = server.api("POST", path, json={"values": {"name": "山田", "count": "two"}})
    assert bad.status_code == 400
    assert "values.count" in bad.json()["message"]
    with server.client.stream(
        "POST", path, json={"values": {"name": "山田", "count": 2}}, headers=server_headers(server)
    ) as response:
        resumed = Streamed.parse(response.status_code, response.headers, response.read())
    assert resumed.types[:2] == ["response.created", "response.reasoning_step.end"]
    assert resumed.of("response.reasoning_step.end")[0]["step"]["result"]["data"] == {
        "name": "山田",
        "count": 2,
    }
    assert "ご記入ありがとうございます" in final(resumed)["final_text"]
    again = server.api("POST", path, json={"values": {"name": "山田", "count": 2}})
    assert again.status_code == 409


def server_headers(server: KaiwaServer) -> dict[str, str]:
    return {"x-api-key": server.api_key, "accept": "text/event-stream"}
