"""Chatting in the web chat: a streamed answer with its steps, the chat's title, usage, feedback,
regenerate and attachments."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import expect
from tests.browser.chat_page import ChatPage
from tests.e2e.conftest import KaiwaServer

KB_READY_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def shop_agent(web_server: KaiwaServer, make_agent: Callable[..., str]) -> str:
    """The built-in model with a knowledge base: it searches it, then answers from it."""
    response = web_server.api("POST", "/api/v1/knowledge-bases", json={"name": "店舗情報"})
    assert response.status_code in (200, 201), response.text
    kb = response.json()["data"]
    response = web_server.api(
        "POST",
        f"/api/v1/knowledge-bases/{kb['id']}/documents",
        json={
            "title": "営業時間",
            "text": "当店の営業時間は平日9時から18時までです。土日祝日は休業です。",
        },
    )
    assert response.status_code in (200, 201, 202), response.text
    document = response.json()["data"]
    path = f"/api/v1/knowledge-bases/{kb['id']}/documents/{document['id']}"
    deadline = time.monotonic() + KB_READY_TIMEOUT
    while web_server.ok("GET", path)["status"] != "ready":
        assert time.monotonic() < deadline, f"the document was not indexed in {KB_READY_TIMEOUT} s"
        time.sleep(0.1)
    return make_agent(
        "店舗案内",
        llm_model="builtin/extractive",
        tools=[{"type": "knowledge_base", "knowledge_base_ids": [kb["id"]]}],
    )


@pytest.fixture(scope="module")
def echo_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("echo", script={"title": "エコー"})  # no answer script: it echoes


def test_a_japanese_question_streams_an_answer_with_its_step_and_titles_the_chat(
    chat: ChatPage, shop_agent: str
) -> None:
    chat.start(shop_agent)
    chat.send("営業時間を教えてください")

    expect(chat.user_messages).to_have_text(["営業時間を教えてください"])
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_contain_text("平日9時から18時までです")
    expect(chat.answer_text()).to_have_attribute("lang", "ja")
    expect(chat.answer_text()).to_have_attribute("aria-live", "polite")
    expect(chat.answer_text()).to_have_attribute("aria-busy", "false")

    step = answer.locator(".step")
    expect(step).to_have_count(1)
    expect(step).to_have_attribute("data-state", "done")
    expect(step.locator(".step-text")).to_contain_text("ナレッジベースを検索しています")
    expect(step.locator(".source-head")).to_contain_text("営業時間")
    expect(step.locator(".snippet")).to_contain_text("土日祝日は休業です")

    expect(answer.locator(".usage")).to_contain_text("tokens")
    expect(chat.chat_links.first).to_have_text("営業時間を教えてください")
    expect(chat.chat_links.first).to_have_attribute("aria-current", "page")
    assert chat.session_value("running") is None


def test_feedback_and_regenerate_act_on_the_last_answer(
    chat: ChatPage, echo_agent: str, web_server: KaiwaServer
) -> None:
    chat.start(echo_agent)
    chat.send("こんにちは")
    first = chat.answers.first
    expect(first).to_have_attribute("data-status", "completed")
    expect(chat.answer_text(first)).to_have_text("Echo: こんにちは")

    helpful = first.get_by_role("button", name="Helpful")
    expect(helpful).to_be_enabled()  # once the stored answer's id is known
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(first.get_by_role("button", name="Needs improvement")).to_have_attribute(
        "aria-pressed", "false"
    )

    first.get_by_role("button", name="Regenerate").click()
    expect(chat.answers).to_have_count(2)
    expect(first).to_have_attribute("data-status", "superseded")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("Echo: こんにちは")
    expect(chat.last_answer.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(first.get_by_role("button", name="Regenerate")).to_be_hidden()

    chat_id = int(chat.session_value("chatId"))
    stored = [m for m in web_server.messages(chat_id) if m["role"] == "assistant"]
    assert [m["meta"]["superseded"] for m in stored] == [True, False]


def test_an_attached_file_is_uploaded_sent_and_shown_on_the_message(
    chat: ChatPage, echo_agent: str, web_server: KaiwaServer
) -> None:
    chat.start(echo_agent)
    chat.page.locator("#file-input").set_input_files(
        files=[{"name": "メモ.txt", "mimeType": "text/plain", "buffer": "会議は3時から".encode()}]
    )
    attachment = chat.page.locator("#attachments .attachment")
    expect(attachment).to_have_attribute("data-state", "ready")
    chat.send("添付を見てください")

    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.user_messages.last.locator(".file-chip .file-name")).to_have_text("メモ.txt")
    expect(attachment).to_have_count(0)

    chat_id = int(chat.session_value("chatId"))
    sent = next(m for m in web_server.messages(chat_id) if m["role"] == "user")
    assert [f["original_name"] for f in sent["attached_files"]] == ["メモ.txt"]

    chat.page.reload()  # the stored message shows its file too
    expect(chat.user_messages.last.locator(".file-chip .file-name")).to_have_text("メモ.txt")


def test_the_key_is_kept_in_session_storage_only_and_a_refused_key_says_so(
    chat: ChatPage, echo_agent: str
) -> None:
    chat.open()
    chat.page.get_by_label("API key").fill("kw_not-a-key")
    chat.page.get_by_role("button", name="Connect").click()
    expect(chat.page.locator("#key-error")).to_contain_text("refused")
    assert chat.session_value("apiKey") is None

    chat.connect()
    assert chat.session_value("apiKey") == chat.api_key
    assert chat.page.evaluate("() => localStorage.length") == 0
    chat.page.reload()  # the tab remembers the key
    expect(chat.page.locator("#welcome h2")).to_be_visible()
    expect(chat.page.locator("#key-panel")).to_be_hidden()


def test_the_chat_list_holds_the_chosen_agents_chats_and_opens_their_history(
    chat: ChatPage, echo_agent: str, shop_agent: str, web_server: KaiwaServer
) -> None:
    mine = web_server.create_chat("エコーの会話", agent_id=echo_agent)
    web_server.stream(mine["id"], "前の質問", agent_id=echo_agent)
    other = web_server.create_chat("店舗の会話", agent_id=shop_agent)

    chat.start(echo_agent)
    expect(chat.page.locator(f'#chat-list li[data-chat-id="{mine["id"]}"]')).to_be_visible()
    expect(chat.page.locator(f'#chat-list li[data-chat-id="{other["id"]}"]')).to_have_count(0)

    chat.page.locator(f'#chat-list li[data-chat-id="{mine["id"]}"] button').click()
    expect(chat.user_messages).to_have_text(["前の質問"])
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("Echo: 前の質問")
    expect(chat.last_answer.get_by_role("button", name="Helpful")).to_be_enabled()

    chat.choose_agent(shop_agent)
    expect(chat.page.locator(f'#chat-list li[data-chat-id="{other["id"]}"]')).to_be_visible()
    expect(chat.answers).to_have_count(0)


def test_a_failing_tool_shows_its_step_as_failed_with_the_reason(
    chat: ChatPage, make_agent: Callable[..., str]
) -> None:
    agent = make_agent(
        "fetcher",
        script={
            "rounds": [
                [{"tool_call": {"name": "fetch_web_content", "arguments": {"url": "ftp://x"}}}],
                [{"text": "読めませんでした。"}],
            ]
        },
        tools=[{"type": "fetch_web_content"}],
    )
    chat.start(agent)
    chat.send("このページを読んで")

    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    step = chat.last_answer.locator(".step")
    expect(step).to_have_attribute("data-state", "failed")
    expect(step.locator(".step-error")).to_contain_text("http or https URL")
    expect(chat.answer_text()).to_have_text("読めませんでした。")
