"""The page's language: Japanese or English from the browser's languages, switchable, remembered;
every string from the catalogues, which hold the same keys."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from tests.browser.chat_page import ChatPage

from kaiwa.server.routes import web

# Keys the code builds from a tool's name (steps.js) rather than writes out.
STEP_KEYS = {
    f"{tool}{state}"
    for tool in ("search", "web", "fetch", "agent", "lookup", "form", "tool")
    for state in ("Running", "Done", "Failed")
}
KEY_USES = [
    re.compile(r"""\bt\(\s*"(\w+)\""""),  # t("key", …)
    re.compile(r"""data-i18n(?:-[a-z-]+)?="(\w+)\""""),  # <… data-i18n-title="key">
    re.compile(r"""^\s+\w+: "([a-z]+[A-Z]\w*)",$""", re.MULTILINE),  # {completed: "answerComplete"}
]
CATALOGUE_KEYS = """async () => {
  const { CATALOGUES } = await import("/static/strings.js");
  return Object.fromEntries(Object.entries(CATALOGUES).map(([lang, c]) => [lang, Object.keys(c)]));
}"""


@pytest.fixture(scope="module")
def echo_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("i18n-echo", script={"title": "言語"})


@pytest.mark.parametrize(
    ("locale", "lang", "heading", "connect"),
    [
        ("ja-JP", "ja", "kaiwa に接続", "接続"),
        ("en-US", "en", "Connect to kaiwa", "Connect"),
        ("fr-FR", "en", "Connect to kaiwa", "Connect"),  # a language the page does not speak
    ],
)
def test_the_page_speaks_the_browsers_language(
    chat: ChatPage, lang: str, heading: str, connect: str
) -> None:
    chat.open()
    expect(chat.page.locator("html")).to_have_attribute("lang", lang)
    expect(chat.page.locator("#key-heading")).to_have_text(heading)
    expect(chat.page.get_by_role("button", name=connect)).to_be_visible()
    expect(chat.page.locator("#language")).to_have_value(lang)


@pytest.mark.parametrize("locale", ["ja-JP"])
def test_the_language_switch_redraws_the_page_and_is_remembered(
    chat: ChatPage, echo_agent: str
) -> None:
    chat.start(echo_agent)
    chat.send("こんにちは")
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "completed")
    expect(answer.get_by_role("button", name="再生成")).to_be_visible()
    expect(chat.message_box).to_have_attribute("placeholder", re.compile("Enter で送信"))

    chat.page.get_by_label("表示言語").select_option("en")

    expect(chat.page.locator("html")).to_have_attribute("lang", "en")
    expect(chat.last_answer.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(chat.last_answer.get_by_role("button", name="Helpful")).to_be_visible()
    expect(chat.page.get_by_label("Message", exact=True)).to_have_attribute(
        "placeholder", re.compile("Enter to send")
    )
    expect(chat.page.get_by_role("button", name="Send")).to_be_visible()
    expect(chat.page.locator("#chats-heading")).to_have_text("Chats")
    expect(chat.answer_text()).to_have_text("Echo: こんにちは")
    assert chat.page.evaluate("() => localStorage.getItem('kaiwa.language')") == "en"

    chat.page.reload()  # the choice outlives the page, over the browser's own language
    expect(chat.last_answer.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(chat.page.locator("html")).to_have_attribute("lang", "en")


def test_every_string_the_page_uses_is_in_both_catalogues(module_page: Page) -> None:
    catalogues = module_page.evaluate(CATALOGUE_KEYS)
    assert set(catalogues) == {"ja", "en"}
    assert sorted(catalogues["ja"]) == sorted(catalogues["en"])
    used = set(STEP_KEYS)
    for name, path in web.static_files().items():
        if name.startswith("vendor/") or name in ("strings.js", "i18n.js") or name.endswith(".svg"):
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in KEY_USES:
            used.update(pattern.findall(text))
    missing = sorted(used - set(catalogues["en"]))
    assert not missing, f"keys used but in no catalogue: {missing}"
