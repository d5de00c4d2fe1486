"""The page's layout: the view follows an answer as it streams (unless the reader scrolled up), the
end of an answer is in view when it ends, and a phone-sized window holds everything."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from tests.browser.chat_page import ChatPage

LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen" * 2
WIDE_ANSWER = "\n".join(
    [
        "## 長い回答",
        "",
        f"長い単語 {LONG_WORD} と長い URL https://example.com/{'a' * 120} を含みます。",
        "",
        "| 列1 | 列2 | 列3 | 列4 | 列5 | 列6 |",
        "|---|---|---|---|---|---|",
        "| とても長いセルの内容です | 二番目のセル | 三番目のセル | 四番目 | 五番目 | 六番目 |",
        "",
        "```",
        "x = " + "1 + " * 60 + "1",
        "```",
    ]
)
PARAGRAPHS = [f"{n}番目の段落です。説明が続きます。\n\n" for n in range(1, 41)]
# Forty paragraphs, a tenth of a second apart: a reader has time to scroll up in the middle.
STREAMING_SCRIPT = {
    "answer": [item for text in PARAGRAPHS for item in ({"text": text}, {"delay": 0.1})],
    "title": "長い回答",
}

# Elements sticking out of the window, but for those inside a box that scrolls or clips them (a
# code block or a table scrolls sideways inside the answer; that box itself must fit).
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const clips = (el) => getComputedStyle(el).overflowX !== "visible";
  const held = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) if (clips(p)) return true;
    return false;
  };
  const outside = (el) => {
    const box = el.getBoundingClientRect();
    return box.right > width + 1 || box.left < -1;
  };
  return [...document.querySelectorAll("body *")]
    .filter((el) => el.getClientRects().length > 0 && outside(el) && !held(el))
    .map((el) => `${el.tagName.toLowerCase()}.${el.className}`);
}"""
# Buttons whose label runs over more than one line (e.g. "Regenerate" broken mid-word).
WRAPPED_BUTTONS = """() => [...document.querySelectorAll("button")]
  .filter((b) => b.getClientRects().length > 0)
  .filter((b) => {
    const range = document.createRange();
    range.selectNodeContents(b);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    return tops.size > 1;
  })
  .map((b) => b.textContent)"""


@pytest.fixture(scope="module")
def wide_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("layout", script={"answer": [{"text": WIDE_ANSWER}], "title": "幅"})


@pytest.fixture(scope="module")
def streaming_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("follow", script=STREAMING_SCRIPT)


SCROLL_TOP = "document.getElementById('conversation').scrollTop"
NEXT_FRAME = "() => new Promise((r) => requestAnimationFrame(() => r()))"


def scroll_top(page: Page) -> float:
    return float(page.evaluate(f"() => {SCROLL_TOP}"))


def assert_end_in_view(chat: ChatPage) -> None:
    """The last answer's bottom edge (sources, usage, buttons) is inside the conversation's box,
    above the message box."""
    answer = chat.last_answer.bounding_box()
    box = chat.page.locator("#conversation").bounding_box()
    composer = chat.page.locator("#composer").bounding_box()
    assert answer is not None
    assert box is not None
    assert composer is not None
    bottom = answer["y"] + answer["height"]
    assert bottom <= box["y"] + box["height"] + 1, (answer, box)
    assert bottom <= composer["y"] + 1, (answer, composer)
    assert bottom > box["y"], (answer, box)


def test_the_view_follows_a_streaming_answer_and_ends_with_its_end_in_view(
    chat: ChatPage, streaming_agent: str
) -> None:
    chat.start(streaming_agent)
    chat.send("長く答えて")
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(chat.answer_text()).to_contain_text("10番目の段落")
    # Following: the newest text is at the bottom of the view while it streams.
    assert chat.page.locator("#conversation").evaluate(
        "(box) => box.scrollHeight - box.scrollTop - box.clientHeight < 60"
    )
    expect(answer.get_by_role("button", name="Helpful")).to_be_hidden()  # not while streaming
    expect(answer.get_by_role("button", name="Copy")).to_be_hidden()

    expect(answer).to_have_attribute("data-status", "completed")
    expect(answer.get_by_role("button", name="Helpful")).to_be_visible()
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()
    chat.page.evaluate(NEXT_FRAME)
    assert_end_in_view(chat)


def test_a_reader_who_scrolls_up_is_left_where_they_are(
    chat: ChatPage, streaming_agent: str
) -> None:
    chat.page.set_viewport_size({"width": 1280, "height": 560})
    chat.start(streaming_agent)
    chat.send("長く答えて")
    # The view followed the text down, then the reader goes back up to read.
    chat.page.wait_for_function(f"() => {SCROLL_TOP} > 200")
    expect(chat.last_answer).to_have_attribute("data-status", "streaming")
    chat.page.locator("#conversation").hover()
    chat.page.mouse.wheel(0, -100_000)
    chat.page.wait_for_function(f"() => {SCROLL_TOP} === 0")
    shown = chat.answer_text().text_content() or ""

    expect(chat.answer_text()).not_to_have_text(shown)  # more text came meanwhile
    chat.page.evaluate(NEXT_FRAME)
    assert scroll_top(chat.page) == 0

    # Back at the end, the view follows again.
    chat.page.mouse.wheel(0, 100_000)
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    chat.page.evaluate(NEXT_FRAME)
    assert_end_in_view(chat)


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_a_360_pixel_window_holds_every_element_without_breaking_words(
    chat: ChatPage, wide_agent: str, locale: str
) -> None:
    chat.page.set_viewport_size({"width": 360, "height": 740})
    chat.start(wide_agent)
    chat.send("幅の広い回答を見せて")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    expect(chat.last_answer.locator(".actions button.regenerate")).to_be_visible()

    assert chat.page.evaluate(OVERFLOWING) == []
    assert chat.page.evaluate("() => document.documentElement.scrollWidth") <= 360
    assert chat.page.evaluate(WRAPPED_BUTTONS) == []
    header = chat.page.locator(".topbar").bounding_box()
    assert header is not None
    assert header["height"] < 120, header  # two rows at most: the agent gets its own
    composer = chat.page.locator("#composer").bounding_box()
    assert composer is not None
    assert composer["y"] + composer["height"] <= 740 + 1, composer
    assert_end_in_view(chat)
