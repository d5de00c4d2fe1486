"""Chatting in the web chat: a streamed answer with its steps, the chat's title, usage, feedback,
regenerate, copy, attachments, and the chats of the sidebar (open, rename, delete)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import expect
from tests.browser.chat_page import ChatPage
from tests.e2e.conftest import KaiwaServer

KB_READY_TIMEOUT = 20.0
TIME_OF_DAY = re.compile(r"^\d{2}:\d{2}$")  # a message of today shows its time only


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


@pytest.mark.parametrize("locale", ["ja-JP"])
def test_a_japanese_question_streams_an_answer_with_its_step_and_titles_the_chat(
    chat: ChatPage, shop_agent: str
) -> None:
    chat.start(shop_agent)
    chat.send("営業時間を教えてください")

    expect(chat.user_texts).to_have_text(["営業時間を教えてください"])
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_contain_text("平日9時から18時までです")
    expect(chat.answer_text()).to_have_attribute("lang", "ja")
    expect(chat.answer_text()).to_have_attribute("aria-live", "polite")
    expect(chat.answer_text()).to_have_attribute("aria-busy", "false")

    # The step reads as a sentence in the page's language; the tool's name waits in "details".
    step = answer.locator(".step")
    expect(step).to_have_count(1)
    expect(step).to_have_attribute("data-state", "done")
    expect(step.locator(".step-text")).to_have_text("ナレッジベースを検索しました: 1件")
    expect(step.locator(".source-head")).to_have_text("営業時間")
    expect(step.locator(".snippet")).to_contain_text("土日祝日は休業です")
    tool_name = step.locator(".step-details code")
    expect(tool_name).to_be_hidden()
    step.locator(".step-details summary").click()
    expect(tool_name).to_have_text("retrieve_context_objs")
    expect(step).not_to_contain_text("done")

    expect(answer.locator(".usage")).to_contain_text("トークン")
    expect(answer.locator("time.timestamp")).to_have_text(TIME_OF_DAY)
    expect(chat.user_messages.last.locator("time.timestamp")).to_have_text(TIME_OF_DAY)
    expect(answer.get_by_role("button", name="役に立った")).to_be_visible()
    expect(answer.get_by_role("button", name="再生成")).to_be_visible()
    expect(chat.chat_links.first).to_have_text("営業時間を教えてください")
    expect(chat.chat_links.first).to_have_attribute("aria-current", "page")
    assert chat.session_value("running") is None
    step.locator(".step-details summary").click()  # closed again, as a reader first sees it
    chat.screenshots("ja-answer-steps")


def test_feedback_and_regenerate_act_on_the_last_answer(
    chat: ChatPage, echo_agent: str, web_server: KaiwaServer
) -> None:
    chat.start(echo_agent)
    chat.send("こんにちは")
    first = chat.answers.first
    expect(first).to_have_attribute("data-status", "completed")
    expect(chat.answer_text(first)).to_have_text("Echo: こんにちは")

    helpful = first.get_by_role("button", name="Helpful")
    expect(helpful).to_be_enabled()  # shown once the stored answer's id is known
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(first.get_by_role("button", name="Needs improvement")).to_have_attribute(
        "aria-pressed", "false"
    )

    first.get_by_role("button", name="Regenerate").click()
    expect(chat.answers).to_have_count(2)
    expect(first).to_have_attribute("data-status", "superseded")
    expect(first.locator(".superseded-note")).to_have_text("Replaced by a newer answer")
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

    chat.chat_link(mine["id"]).click()
    expect(chat.user_texts).to_have_text(["前の質問"])
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
    expect(step.locator(".step-text")).to_have_text("Could not read the web page")
    expect(step.locator(".step-error")).to_contain_text("Reason: ")
    expect(step.locator(".step-error")).to_contain_text("http or https URL")
    expect(chat.answer_text()).to_have_text("読めませんでした。")


def test_a_look_through_the_chat_that_found_nothing_adds_no_step(
    chat: ChatPage, make_agent: Callable[..., str]
) -> None:
    agent = make_agent(
        "lookup",
        script={
            "rounds": [
                [{"tool_call": {"name": "lookup", "arguments": {"query": "xyzzy-plugh"}}}],
                [{"text": "この会話には見当たりません。"}],
            ]
        },
        tools=[{"type": "lookup"}],
    )
    chat.start(agent)
    chat.send("前に話したことを探して")

    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("この会話には見当たりません。")
    expect(answer.locator(".step")).to_have_attribute("data-state", "done")
    expect(answer.locator(".steps-box")).to_be_hidden()


def test_copy_puts_the_answers_markdown_on_the_clipboard(
    chat: ChatPage, make_agent: Callable[..., str]
) -> None:
    markdown = "## 手順\n\n1. **保存**する\n2. `kaiwa serve` を実行"
    agent = make_agent("copy", script={"answer": [{"text": markdown}], "title": "コピー"})
    chat.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    chat.start(agent)
    chat.send("手順は?")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")

    copy = chat.last_answer.get_by_role("button", name="Copy")
    copy.click()
    expect(chat.last_answer.get_by_role("button", name="Copied")).to_be_visible()
    assert chat.page.evaluate("() => navigator.clipboard.readText()") == markdown


def test_a_chat_is_renamed_in_place_and_deleted_after_a_confirmation(
    chat: ChatPage, echo_agent: str, web_server: KaiwaServer
) -> None:
    kept = web_server.create_chat("残す会話", agent_id=echo_agent)
    doomed = web_server.create_chat("消す会話", agent_id=echo_agent)
    chat.start(echo_agent)
    chat.chat_link(doomed["id"]).click()

    # Rename: the name is edited in the list; Enter saves it on the server.
    chat.page.get_by_role("button", name="Rename “消す会話”").click()
    box = chat.page.get_by_role("textbox", name="Chat name")
    expect(box).to_be_focused()
    box.fill("名前を変えた会話")
    box.press("Enter")
    expect(chat.chat_link(doomed["id"])).to_have_text("名前を変えた会話")
    expect(chat.chat_link(doomed["id"])).to_have_attribute("aria-current", "page")
    stored = web_server.ok("GET", "/api/v1/chats", params={"agent_id": echo_agent})
    assert {c["id"]: c["name"] for c in stored}[doomed["id"]] == "名前を変えた会話"

    # Delete: refused at the confirmation, nothing happens; accepted, the chat is gone.
    asked: list[str] = []
    chat.page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    delete = chat.page.get_by_role("button", name="Delete “名前を変えた会話”")
    delete.click()
    expect(chat.chat_link(doomed["id"])).to_be_visible()
    assert len(asked) == 1
    assert "名前を変えた会話" in asked[0]
    assert not [r for r in chat.requests if r.method == "DELETE"]

    chat.page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(chat.chat_link(doomed["id"])).to_have_count(0)
    expect(chat.chat_link(kept["id"])).to_be_visible()
    expect(chat.page.locator("#welcome h2")).to_be_visible()  # the open chat was the one deleted
    assert chat.session_value("chatId") is None
    response = web_server.api("GET", f"/api/v1/chats/{doomed['id']}/messages")
    assert response.status_code == 404, response.text
