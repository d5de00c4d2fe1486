"""The message box with Japanese input: an Enter that confirms an IME conversion never sends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect
from tests.browser.chat_page import ChatPage

# Dispatched the way browsers send them while an IME composes: Chromium and Firefox set
# `isComposing`; Safari sends the confirming Enter after `compositionend` with keyCode 229.
COMPOSING_ENTERS = """(box) => {
  box.dispatchEvent(new CompositionEvent("compositionstart", { data: "" }));
  box.dispatchEvent(new KeyboardEvent("keydown", {
    key: "Enter", code: "Enter", isComposing: true, bubbles: true, cancelable: true }));
  box.dispatchEvent(new CompositionEvent("compositionend", { data: "日本語" }));
  const safari = new KeyboardEvent("keydown", {
    key: "Enter", code: "Enter", keyCode: 229, bubbles: true, cancelable: true });
  box.dispatchEvent(safari);
  return safari.keyCode;
}"""
PLAIN_ENTER = """(box) => box.dispatchEvent(new KeyboardEvent("keydown", {
  key: "Enter", code: "Enter", bubbles: true, cancelable: true }))"""


@pytest.fixture(scope="module")
def echo_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("composer-echo", script={"title": "入力"})


def test_enter_while_composing_japanese_does_not_send(chat: ChatPage, echo_agent: str) -> None:
    chat.start(echo_agent)
    box = chat.message_box
    box.fill("日本語")

    key_code = box.evaluate(COMPOSING_ENTERS)

    assert key_code == 229  # the browser kept the legacy keyCode: the check is not vacuous
    expect(box).to_have_value("日本語")  # a send empties the box at once
    expect(chat.user_messages).to_have_count(0)
    assert chat.sent_messages() == []

    # Shift+Enter adds a line; a plain Enter then sends both lines, once.
    box.press("End")
    box.press("Shift+Enter")
    box.type("入力")
    expect(box).to_have_value("日本語\n入力")
    box.evaluate(PLAIN_ENTER)
    expect(box).to_have_value("")
    expect(chat.user_texts).to_have_text(["日本語\n入力"])
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    assert len(chat.sent_messages()) == 1
    assert "日本語\\n入力" in (chat.sent_messages()[0].post_data or "")
