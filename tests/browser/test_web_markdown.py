"""Answers render as markdown, and nothing in them runs: HTML shows as text, links are http(s)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from tests.browser.chat_page import ChatPage

HOSTILE = "\n".join(
    [
        "## 見出し",
        "",
        "**太字**と*斜体*と`code`。",
        "",
        '<img src=x onerror="window.__pwned = 1">',
        "<script>window.__pwned = 2</script>",
        "[x](javascript:alert(1)) [y](JAVASCRIPT:alert(2)) [z](data:text/html,<b>z</b>)",
        '[kaiwa](https://example.com/kaiwa "title") and https://example.org/page.',
        "",
        "- 一つ目",
        "- 二つ目",
        "  1. 入れ子",
        "",
        "```html",
        "<b onclick=alert(3)>not bold</b>",
        "```",
    ]
)
# Every `on…` attribute of an element inside the answer (none is expected).
HANDLER_ATTRIBUTES = """(body) => [...body.querySelectorAll("*")]
  .flatMap((element) => [...element.attributes].map((a) => a.name))
  .filter((name) => name.startsWith("on"))"""


@pytest.fixture(scope="module")
def hostile_agent(make_agent: Callable[..., str]) -> str:
    return make_agent("markdown", script={"answer": [{"text": HOSTILE}], "title": "md"})


def test_markdown_renders_and_html_or_script_links_stay_inert(
    chat: ChatPage, hostile_agent: str
) -> None:
    dialogs: list[str] = []
    chat.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    chat.start(hostile_agent)
    chat.send("見せて")
    expect(chat.last_answer).to_have_attribute("data-status", "completed")
    body = chat.answer_text()

    expect(body.locator("h4")).to_have_text("見出し")
    expect(body.locator("strong")).to_have_text("太字")
    expect(body.locator("em")).to_have_text("斜体")
    expect(body.locator("p code")).to_have_text("code")
    expect(body.locator("ul > li")).to_have_count(2)
    expect(body.locator("ul ol > li")).to_have_text(["入れ子"])
    expect(body.locator("pre code")).to_have_text("<b onclick=alert(3)>not bold</b>")

    # Markup is shown as the characters it is, never made into elements.
    expect(body).to_contain_text('<img src=x onerror="window.__pwned = 1">')
    expect(body).to_contain_text("<script>window.__pwned = 2</script>")
    for tag in ("img", "script", "b", "iframe", "object"):
        expect(body.locator(tag)).to_have_count(0)
    assert body.evaluate(HANDLER_ATTRIBUTES) == []

    # Only the http(s) links are links; the others are their text.
    links = body.locator("a")
    expect(links).to_have_count(2)
    assert [links.nth(i).get_attribute("href") for i in range(2)] == [
        "https://example.com/kaiwa",
        "https://example.org/page",
    ]
    expect(links.first).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(body).to_contain_text("x y z")

    assert chat.page.evaluate("() => window.__pwned") is None
    assert dialogs == []


RENDER = """async (source) => {
  const { renderMarkdown } = await import("/static/markdown.js");
  const box = document.createElement("div");
  box.append(renderMarkdown(source));
  return box.innerHTML;
}"""
LINK = 'target="_blank" rel="noopener noreferrer nofollow"'


@pytest.mark.parametrize(
    ("source", "html"),
    [
        ("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"),
        ("`a<b>`", "<p><code>a&lt;b&gt;</code></p>"),
        ("snake_case_name", "<p>snake_case_name</p>"),
        ("2 * 3 * 4", "<p>2 * 3 * 4</p>"),
        ("\\*not\\*", "<p>*not*</p>"),
        ("**太字**です", "<p><strong>太字</strong>です</p>"),
        ("__強調__と_斜体_", "<p><strong>強調</strong>と<em>斜体</em></p>"),
        ("*a **b** c*", "<p><em>a <strong>b</strong> c</em></p>"),
        ("***both***", "<p><strong><em>both</em></strong></p>"),
        ("a\nb", "<p>a<br>b</p>"),
        ("# h\ntext", "<h3>h</h3><p>text</p>"),
        ("> 引用\n> 続き", "<blockquote><p>引用<br>続き</p></blockquote>"),
        ("```\nstill streaming", "<pre><code>still streaming</code></pre>"),
        ("3. c", '<ol start="3"><li><p>c</p></li></ol>'),
        (
            "- a\n  - b\n- c",
            "<ul><li><p>a</p><ul><li><p>b</p></li></ul></li><li><p>c</p></li></ul>",
        ),
        (
            "見て https://example.com/a。",
            f'<p>見て <a href="https://example.com/a" {LINK}>https://example.com/a</a>。</p>',
        ),
        ("[a](http://x.test/?q=(1))", f'<p><a href="http://x.test/?q=(1)" {LINK}>a</a></p>'),
        ("![猫](https://e.x/cat.png)", f'<p><a href="https://e.x/cat.png" {LINK}>猫</a></p>'),
        ("[x](javascript:alert(1))", "<p>x</p>"),
        ("[x](//evil.test/)", "<p>x</p>"),
        ("[x](/relative)", "<p>x</p>"),
        (
            "| 名前 | 値 |\n|:--|--:|\n| a | 1 |",
            '<div class="table-wrap"><table><thead><tr><th>名前</th><th class="align-right">値</th>'
            '</tr></thead><tbody><tr><td>a</td><td class="align-right">1</td></tr></tbody></table>'
            "</div>",
        ),
    ],
)
def test_markdown_renders_as_this_html(module_page: Page, source: str, html: str) -> None:
    assert module_page.evaluate(RENDER, source) == html


PLAIN = """async (source) => (await import("/static/markdown.js")).plainText(source)"""


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("## 営業時間\n平日は**9時**から", "営業時間 平日は9時から"),
        ("- `kaiwa serve` を実行\n- *確認*する", "kaiwa serve を実行 確認する"),
        ("1. 一つ目\n2. 二つ目", "一つ目 二つ目"),
        ("> 引用です [リンク](https://example.com)", "引用です リンク"),
        ("…途中から始まる**太字の", "…途中から始まる太字の"),  # a pair cut in two
        ("<b>タグ</b> はそのまま", "<b>タグ</b> はそのまま"),
    ],
)
def test_a_snippet_shows_as_plain_text(module_page: Page, source: str, text: str) -> None:
    assert module_page.evaluate(PLAIN, source) == text
