"""A form an agent asks for: built from its schema, refused on a field, submitted, continued."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect
from tests.browser.chat_page import ChatPage
from tests.e2e.conftest import KaiwaServer

CHOICES = [{"value": "free", "label": "Free"}, {"value": "pro", "label": "Pro"}]
FORM_TOOL = {
    "type": "request_form",
    "custom_form_schema": {
        "title": "申し込み",
        "fields": [
            {"name": "name", "label": "お名前", "type": "shortText", "required": True},
            {"name": "note", "label": "ご要望", "type": "longText"},
            {"name": "people", "label": "人数", "type": "number"},
            {
                "name": "plan",
                "label": "プラン",
                "type": "dropdown",
                "required": True,
                "options": CHOICES,
            },
            {"name": "size", "label": "規模", "type": "radio", "options": CHOICES},
            {"name": "extras", "label": "オプション", "type": "checkbox", "options": CHOICES},
            {"name": "day", "label": "希望日", "type": "date"},
        ],
    },
}
FORM_SCRIPT = {
    "rounds": [
        [
            {"text": "先にフォームを。"},
            {"tool_call": {"id": "call_1", "name": "request_form", "arguments": {}}},
        ],
        [{"text": "ありがとうございます。"}],
    ]
}


@pytest.fixture(scope="module")
def form_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("form", script=FORM_SCRIPT, tools=[FORM_TOOL])


def test_a_form_is_refused_on_its_field_then_submitted_and_the_answer_goes_on(
    chat: ChatPage, form_agent: str, web_server: KaiwaServer
) -> None:
    chat.start(form_agent)
    chat.send("申し込みたい")

    asking = chat.answers.first
    expect(asking).to_have_attribute("data-status", "awaiting_form")
    expect(chat.answer_text(asking)).to_have_text("先にフォームを。")
    form = asking.get_by_role("form", name="申し込み")
    expect(form).to_be_visible()
    expect(asking.locator(".step")).to_have_attribute("data-state", "waiting")

    name = form.get_by_label("お名前")
    expect(name).to_have_attribute("type", "text")
    expect(form.locator('[data-field="name"] .required')).to_contain_text("required")
    expect(form.get_by_label("ご要望")).to_have_js_property("tagName", "TEXTAREA")
    expect(form.get_by_label("人数")).to_have_attribute("type", "number")
    expect(form.get_by_label("プラン")).to_have_js_property("tagName", "SELECT")
    expect(form.get_by_label("希望日")).to_have_attribute("type", "date")
    size = form.get_by_role("group", name="規模")
    expect(size.get_by_role("radio")).to_have_count(2)
    extras = form.get_by_role("group", name="オプション")
    expect(extras.get_by_role("checkbox")).to_have_count(2)

    # The server checks the values; its refusal shows on the field it names.
    form.get_by_role("button", name="Submit").click()
    error = form.locator('[data-field="name"] .field-error')
    expect(error).to_have_text("required")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(chat.answers).to_have_count(1)

    name.fill("山田")
    form.get_by_label("人数").fill("3")
    form.get_by_label("プラン").select_option("pro")
    size.get_by_label("Free").check()
    extras.get_by_label("Pro").check()
    form.get_by_label("希望日").fill("2025-04-01")
    form.get_by_role("button", name="Submit").click()

    expect(chat.answers).to_have_count(2)
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("ありがとうございます。")
    expect(form).to_have_attribute("data-state", "submitted")
    expect(asking.locator(".step")).to_have_attribute("data-state", "done")
    expect(name).to_be_disabled()
    expect(error).to_be_hidden()

    chat_id = int(chat.session_value("chatId"))
    answers = [m for m in web_server.messages(chat_id) if m["role"] == "assistant"]
    submitted = answers[-1]["meta"]["reasoning_steps"][0]["result"]["data"]
    assert submitted == {
        "name": "山田",
        "people": 3,
        "plan": "pro",
        "size": "free",
        "extras": ["pro"],
        "day": "2025-04-01",
    }

    # Reloaded, the form shows as submitted, with its values.
    chat.page.reload()
    form = chat.answers.first.get_by_role("form", name="申し込み")
    expect(form).to_have_attribute("data-state", "submitted")
    expect(form.get_by_label("お名前")).to_have_value("山田")
    expect(chat.answer_text()).to_have_text("ありがとうございます。")
