"""A form an agent asks for: built from its schema, checked in the browser (every field at once,
by the server's rules), refused by the server on its fields, submitted, continued."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect
from tests.browser.chat_page import ChatPage
from tests.e2e.conftest import KaiwaServer

CHOICES = [{"value": "free", "label": "無料"}, {"value": "pro", "label": "プロ"}]
FIELDS: list[dict[str, Any]] = [
    {"name": "name", "label": "お名前", "type": "shortText", "required": True},
    {"name": "note", "label": "ご要望", "type": "longText"},
    {"name": "people", "label": "人数", "type": "number"},
    {"name": "plan", "label": "プラン", "type": "dropdown", "required": True, "options": CHOICES},
    {"name": "size", "label": "規模", "type": "radio", "options": CHOICES},
    {"name": "extras", "label": "オプション", "type": "checkbox", "options": CHOICES},
    {"name": "day", "label": "希望日", "type": "date"},
]
FORM_TOOL = {"type": "request_form", "custom_form_schema": {"title": "申し込み", "fields": FIELDS}}
FORM_SCRIPT = {
    "rounds": [
        [
            {"text": "先にフォームを。"},
            {"tool_call": {"id": "call_1", "name": "request_form", "arguments": {}}},
        ],
        [{"text": "ありがとうございます。"}],
    ]
}
SUBMIT = "**/form-requests/*/submit"
# Interface strings a Japanese page must not show in English (the examples among them).
ENGLISH = ["Form filled in", "required", "done", "Nothing found", "Regenerate", "Submit", "Steps"]


@pytest.fixture(scope="module")
def form_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("form", script=FORM_SCRIPT, tools=[FORM_TOOL])


def submits(chat: ChatPage) -> list[str]:
    return [r.url for r in chat.requests if r.method == "POST" and r.url.endswith("/submit")]


def test_a_form_is_checked_in_the_browser_then_submitted_and_the_answer_goes_on(
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
    expect(asking.locator(".step-text")).to_have_text("Waiting for you to fill in the form")

    name = form.get_by_label("お名前")
    expect(name).to_have_attribute("type", "text")
    expect(form.locator('[data-field="name"] .required')).to_contain_text("required")
    expect(form.get_by_label("ご要望")).to_have_js_property("tagName", "TEXTAREA")
    expect(form.get_by_label("人数")).to_have_attribute("type", "number")
    expect(form.get_by_label("プラン")).to_have_js_property("tagName", "SELECT")
    expect(form.get_by_label("希望日")).to_have_attribute("placeholder", "YYYY-MM-DD")
    size = form.get_by_role("group", name="規模")
    expect(size.get_by_role("radio")).to_have_count(2)
    extras = form.get_by_role("group", name="オプション")
    expect(extras.get_by_role("checkbox")).to_have_count(2)

    # Both required fields are flagged at once, and nothing is sent.
    form.get_by_role("button", name="Submit").click()
    name_error = form.locator('[data-field="name"] .field-error')
    expect(name_error).to_have_text("This field is required")
    expect(form.locator('[data-field="plan"] .field-error')).to_have_text("Choose an option")
    expect(form.locator(".form-error")).to_have_text("2 fields need your attention")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    assert submits(chat) == []

    name.fill("山田")
    expect(name_error).to_be_hidden()  # a field changed is no longer flagged
    form.get_by_label("人数").fill("3")
    form.get_by_label("プラン").select_option("pro")
    size.get_by_label("無料").check()
    extras.get_by_label("プロ").check()
    form.get_by_label("希望日").fill("2025-04-01")
    form.get_by_role("button", name="Submit").click()

    expect(chat.answers).to_have_count(2)
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.answer_text()).to_have_text("ありがとうございます。")
    expect(form).to_have_attribute("data-state", "submitted")
    expect(asking.locator(".step")).to_have_attribute("data-state", "done")
    expect(name).to_be_disabled()
    expect(name_error).to_be_hidden()

    # The continuation's step shows the values by their labels, chosen options by theirs.
    values = chat.last_answer.locator(".form-values")
    expect(values.locator("dt")).to_have_text(
        ["お名前", "人数", "プラン", "規模", "オプション", "希望日"]
    )
    expect(values.locator("dd")).to_have_text(["山田", "3", "プロ", "無料", "プロ", "2025-04-01"])

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
    expect(chat.last_answer.locator(".form-values dd")).to_have_text(
        ["山田", "3", "プロ", "無料", "プロ", "2025-04-01"]
    )


@pytest.mark.parametrize("locale", ["ja-JP"])
def test_every_field_is_flagged_in_japanese_before_anything_is_sent(
    chat: ChatPage, form_agent: str
) -> None:
    chat.start(form_agent)
    chat.send("申し込みたい")
    form = chat.answers.first.get_by_role("form", name="申し込み")
    expect(form).to_be_visible()
    expect(chat.answers.first.locator(".step-text")).to_have_text(
        "フォームへの入力をお待ちしています"
    )
    chat.screenshots("ja-form-before-submit")

    form.get_by_label("ご要望").fill("x" * 10_001)
    form.get_by_label("希望日").fill("2026/11/30")
    form.get_by_role("button", name=chat.button_name("submit")).click()

    error = {name: form.locator(f'[data-field="{name}"] .field-error') for name in ("name", "plan")}
    expect(error["name"]).to_have_text("入力してください")
    expect(error["plan"]).to_have_text("選択してください")
    expect(form.locator('[data-field="note"] .field-error')).to_have_text(
        "10,000 文字以内で入力してください"
    )
    expect(form.locator('[data-field="day"] .field-error')).to_have_text(
        "日付は YYYY-MM-DD の形式で入力してください（例: 2026-11-30）"
    )
    expect(form.locator(".form-error")).to_have_text("4件の項目を確認してください")
    expect(form.locator('[aria-invalid="true"]')).to_have_count(4)
    expect(form.locator(".field-error:visible")).to_have_count(4)
    assert submits(chat) == []
    chat.screenshots("ja-form-errors")

    form.get_by_label("お名前").fill("山田")
    form.get_by_label("ご要望").fill("窓側の席")
    form.get_by_label("プラン").select_option("free")
    form.get_by_label("希望日").fill("2026-11-30")
    form.get_by_role("button", name=chat.button_name("submit")).click()
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.last_answer.locator(".step-text")).to_have_text("フォームが送信されました")
    expect(form.locator(".form-note")).to_have_text("送信済み")
    shown = chat.page.locator("body").inner_text()
    assert [word for word in ENGLISH if word in shown] == []
    chat.screenshots("ja-form-after-submit")


def refuse(body: dict[str, Any]) -> Callable[[Route], None]:
    """A route that answers a submit as the server refuses one: 400/10006 with this body."""
    envelope = {"data": None, "error_code": 10006, "pagination": None, **body}
    return lambda route: route.fulfill(
        status=400, content_type="application/json", body=json.dumps(envelope)
    )


@pytest.mark.parametrize("locale", ["ja-JP"])
@pytest.mark.parametrize(
    ("body", "flagged"),
    [
        (
            {
                "message": "values.people: must be a number",
                "errors": [
                    {"field": "people", "reason": "type"},
                    {"field": "day", "reason": "date"},
                ],
            },
            {"people": "数値を入力してください", "day": "日付は YYYY-MM-DD"},
        ),
        (  # a server without the list: the field its message names
            {"message": "values.size: 'big' is not one of free, pro"},
            {"size": "選択肢の中から選んでください"},
        ),
    ],
)
def test_the_servers_refusal_shows_on_the_fields_it_names_in_the_pages_language(
    chat: ChatPage, form_agent: str, body: dict[str, Any], flagged: dict[str, str]
) -> None:
    chat.start(form_agent)
    chat.send("申し込みたい")
    form = chat.answers.first.get_by_role("form", name="申し込み")
    form.get_by_label("お名前").fill("山田")
    form.get_by_label("プラン").select_option("pro")
    chat.page.route(SUBMIT, refuse(body))
    form.get_by_role("button", name=chat.button_name("submit")).click()

    for name, message in flagged.items():
        expect(form.locator(f'[data-field="{name}"] .field-error')).to_contain_text(message)
    expect(form.locator(".field-error:visible")).to_have_count(len(flagged))
    expect(chat.answers).to_have_count(1)
    expect(form.get_by_label("お名前")).to_be_enabled()  # the form can be fixed and sent again


CHECK = """async ([fields, values]) =>
  (await import("/static/validate.js")).checkValues(fields, values)"""


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        ({"name": "山田", "plan": "pro"}, []),
        ({}, [("name", "required"), ("plan", "required")]),
        ({"name": "", "plan": "pro", "extras": []}, [("name", "required")]),
        ({"name": "x" * 1_001, "plan": "pro"}, [("name", "too_long")]),
        ({"name": "😀" * 1_000, "plan": "pro"}, []),  # characters, not UTF-16 units
        ({"name": "a", "plan": "pro", "note": "x" * 10_000}, []),
        ({"name": "a", "plan": "pro", "people": "3"}, [("people", "type")]),
        ({"name": "a", "plan": "pro", "people": 2.5}, []),
        ({"name": "a", "plan": "gold"}, [("plan", "option")]),
        ({"name": "a", "plan": "pro", "size": ["free"]}, [("size", "option")]),
        ({"name": "a", "plan": "pro", "extras": ["free", "gold"]}, [("extras", "option")]),
        ({"name": "a", "plan": "pro", "extras": ["pro", "free"]}, []),
        ({"name": "a", "plan": "pro", "day": "2026/11/30"}, [("day", "date")]),
        ({"name": "a", "plan": "pro", "day": "2026-02-30"}, [("day", "date")]),
        ({"name": "a", "plan": "pro", "day": "2028-02-29"}, []),
        ({"name": "a", "plan": "pro", "day": "0099-01-01"}, []),
        ({"name": "a", "plan": "pro", "colour": "red"}, [("colour", "unknown")]),
        (
            {"zeta": 1, "alpha": 2},
            [("alpha", "unknown"), ("zeta", "unknown"), ("name", "required"), ("plan", "required")],
        ),
    ],
)
def test_values_are_checked_by_the_servers_rules(
    module_page: Page, values: dict[str, Any], problems: list[tuple[str, str]]
) -> None:
    found = module_page.evaluate(CHECK, [FIELDS, values])
    assert [(p["field"], p["reason"]) for p in found] == problems


REFUSED = """async ([errors, message]) =>
  (await import("/static/validate.js")).refusedFields(errors, message)"""


@pytest.mark.parametrize(
    ("errors", "message", "problems"),
    [
        (
            [{"field": "people", "reason": "type"}, {"field": "values.day", "reason": "date"}],
            "values.people: must be a number; values.day: must be a date as YYYY-MM-DD",
            [("people", "type"), ("day", "date")],
        ),
        ([{"field": "people", "reason": "new-rule"}], "values.people: …", [("people", None)]),
        (
            None,
            "values.color: the form has no such field; values.name: required; "
            "values.people: must be a number",
            [("color", "unknown"), ("name", "required"), ("people", "type")],
        ),
        (None, "values.note: over the limit of 10000 characters", [("note", "too_long")]),
        (None, "values.size: 'big; bigger' is not one of free, pro", [("size", "option")]),
        (None, "Form request f-1 not found", []),
    ],
)
def test_a_refusal_reads_as_problems_from_its_list_else_from_its_message(
    module_page: Page,
    errors: list[dict[str, str]] | None,
    message: str,
    problems: list[tuple[str, str | None]],
) -> None:
    found = module_page.evaluate(REFUSED, [errors, message])
    assert [(p["field"], p["reason"]) for p in found] == problems
