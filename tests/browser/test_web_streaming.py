"""Controlling a running answer from the web chat: stopping it, and reloading the page under it;
how a stopped answer and its usage read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.browser.chat_page import ChatPage
from tests.e2e.conftest import KaiwaServer

# Stopped after its first sentence: the rest would take 10 s.
SLOW_SCRIPT = {"answer": [{"text": "最初の部分。"}, *[{"delay": 0.5}] * 20, {"text": "届かない"}]}
# A pause long enough for a reload to land inside it, then the rest of the answer.
PIECES = [f"{n}番目の文です。" for n in range(1, 11)]
RELOAD_SCRIPT = {
    "answer": [
        {"text": "前半です。"},
        {"delay": 3.0},
        *[item for piece in PIECES for item in ({"text": piece}, {"delay": 0.05})],
    ],
    "title": "再読み込み",
}


@pytest.fixture(scope="module")
def slow_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("slow", script=SLOW_SCRIPT)


@pytest.fixture(scope="module")
def reload_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("reload", script=RELOAD_SCRIPT)


@pytest.mark.parametrize(("locale", "stopped"), [("en-US", "Stopped"), ("ja-JP", "停止しました")])
def test_stop_ends_the_answer_as_stopped_with_its_partial_text(
    chat: ChatPage, slow_agent: str, web_server: KaiwaServer, stopped: str
) -> None:
    chat.start(slow_agent)
    chat.send("ゆっくり答えて")

    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(chat.answer_text()).to_have_text("最初の部分。")
    expect(chat.button("send")).to_be_hidden()
    expect(answer.locator("button.feedback")).to_have_count(2)
    expect(answer.locator("button.feedback:visible")).to_have_count(0)  # not while it streams
    chat.stop_button.click()

    expect(answer).to_have_attribute("data-status", "cancelled")
    expect(answer.locator(".badge.stopped")).to_have_text(stopped)
    expect(chat.answer_text()).to_have_text("最初の部分。")
    expect(chat.stop_button).to_be_hidden()
    expect(chat.button("send")).to_be_visible()
    expect(chat.message_box).to_be_editable()
    expect(answer.locator("button.feedback:visible")).to_have_count(2)
    # The model reported no usage before the stop: the server estimated the output tokens.
    expect(answer.locator(".usage")).to_contain_text("≈")
    chat.screenshots(f"{chat.language}-stopped-answer")

    chat_id = int(chat.session_value("chatId"))
    stored = [m for m in web_server.messages(chat_id) if m["role"] == "assistant"]
    assert [(m["meta"]["status"], m["content"]) for m in stored] == [("cancelled", "最初の部分。")]


def test_a_reload_during_an_answer_reattaches_and_shows_it_finishing(
    chat: ChatPage, reload_agent: str
) -> None:
    chat.start(reload_agent)
    chat.send("長めに答えて")
    expect(chat.answer_text()).to_have_text("前半です。")
    running = chat.session_value("running")
    assert running is not None
    assert '"token":' in running

    chat.page.reload()

    # Back from the stored messages, then the response's events replayed with the resume token.
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(chat.answer_text()).to_contain_text("前半です。")
    expect(answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("前半です。" + "".join(PIECES))
    expect(chat.answers).to_have_count(1)
    expect(chat.user_texts).to_have_text(["長めに答えて"])
    expect(chat.chat_links.first).to_have_text("再読み込み")

    resumed = [r.url for r in chat.requests if "/events?" in r.url]
    assert resumed, "the page did not reattach to the response's events"
    assert "token=" in resumed[0], resumed
    assert chat.session_value("running") is None


def test_an_answer_that_fails_keeps_its_text_and_says_why(
    chat: ChatPage, make_agent: Callable[..., str]
) -> None:
    agent = make_agent("failing", script={"answer": [{"text": "途中まで"}, {"fail": "boom"}]})
    chat.start(agent)
    chat.send("答えて")

    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "failed")
    expect(answer.get_by_role("alert")).to_contain_text("boom")
    expect(chat.answer_text()).to_have_text("途中まで")
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()


def test_leaving_a_chat_mid_answer_does_not_stop_it_and_returning_reattaches(
    chat: ChatPage, reload_agent: str
) -> None:
    chat.start(reload_agent)
    chat.send("別の会話へ")
    expect(chat.answer_text()).to_have_text("前半です。")
    chat_id = int(chat.session_value("chatId"))

    chat.button("new chat").click()
    expect(chat.answers).to_have_count(0)
    expect(chat.button("send")).to_be_visible()

    chat.chat_link(chat_id).click()
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("前半です。" + "".join(PIECES))
    expect(chat.answers).to_have_count(1)
    followed = [r for r in chat.requests if "/events" in r.url]
    assert followed, "the page did not reattach to the running answer"
    assert "token=" not in followed[0].url  # the page has the key: no token is needed


USAGE = """async ([usage, ms]) => (await import("/static/messages.js")).describeUsage(usage, ms)"""
COUNTS = {"total_prompt_tokens": 1200, "total_completion_tokens": 34, "total_tokens": 1234}


@pytest.mark.parametrize(
    ("usage", "ms", "text"),
    [
        (None, None, ""),
        ({**COUNTS, "total_calls": 1}, None, "1,234 tokens (1,200 in · 34 out) · 1 model call"),
        (
            {**COUNTS, "total_calls": 2},
            1234,
            "1,234 tokens (1,200 in · 34 out) · 2 model calls · 1.2 s",
        ),
        (
            {**COUNTS, "total_calls": 1, "estimated": True},
            None,
            "≈1,234 tokens (1,200 in · ≈34 out) · 1 model call",
        ),
    ],
)
def test_usage_reads_with_estimated_counts_marked(
    module_page: Page, usage: dict[str, Any] | None, ms: int | None, text: str
) -> None:
    assert module_page.evaluate(USAGE, [usage, ms])["text"] == text
