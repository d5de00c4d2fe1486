"""A step as a person reads it: a sentence in the chat's language, then what it found — titles
and plain snippets, links, a called agent's answer, a form's labels and values — never raw JSON
nor a tool's name."""

from __future__ import annotations

from typing import Any

import pytest

from kaiwa.chat.lang import EN, JA
from kaiwa.chat.steps import MAX_ITEMS, Item, StepLine, StepState, describe, plain


def step(tool: str, args: dict[str, Any], result: dict[str, Any] | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {
        "id": "step_1",
        "type": f"consultant_{tool}",
        "tool_name": tool,
        "content": "the server's own line",
        "args": args,
    }
    if result is not None:
        made["result"] = result
    return made


HITS = {
    "query": "営業時間",
    "sources": [
        {"title": "営業時間", "snippet": "## 営業時間\n\n平日は**10時**から", "score": 0.9},
        {"title": "", "snippet": "- 料金は[こちら](https://x.jp)", "score": 0.5},
    ],
}
FIELDS = [
    {"name": "name", "label": "お名前", "type": "shortText"},
    {
        "name": "plan",
        "label": "プラン",
        "type": "checkbox",
        "options": [{"value": "matsu", "label": "松"}, {"value": "take", "label": "竹"}],
    },
]


def test_a_search_reads_as_a_sentence_with_titles_and_plain_snippets() -> None:
    done = step("retrieve_context_objs", {"query": "営業時間"}, {"success": True, "data": HITS})

    assert describe(done, EN) == StepLine(
        "done",
        "Searched the knowledge base for “営業時間” (2 results)",
        (Item("営業時間", "営業時間 平日は10時から"), Item("(untitled)", "料金はこちら")),
    )
    assert describe(done, JA).sentence == "ナレッジベースを検索しました:「営業時間」 (2件)"


@pytest.mark.parametrize(
    ("ended", "state", "sentence"),
    [
        (None, "running", "Searching the knowledge base for “営業時間”"),
        ("interrupted", "interrupted", "Searching the knowledge base for “営業時間” — interrupted"),
    ],
)
def test_a_step_without_its_result_is_running_until_its_answer_ends(
    ended: StepState | None, state: StepState, sentence: str
) -> None:
    running = step("retrieve_context_objs", {"query": "営業時間"})

    assert describe(running, EN, ended=ended) == StepLine(state, sentence)


def test_a_failed_step_says_why() -> None:
    failed = step(
        "fetch_web_content", {"url": "http://x"}, {"success": False, "data": {"error": "403"}}
    )

    assert describe(failed, JA) == StepLine(
        "failed", "ウェブページを読んでいます — 失敗しました: 403"
    )


def test_web_results_are_titles_with_their_links_and_more_are_counted() -> None:
    results = [{"title": f"t{n}", "url": f"https://x.jp/{n}", "snippet": "s"} for n in range(7)]
    done = step("search_web", {"query": "q"}, {"success": True, "data": {"results": results}})

    line = describe(done, EN)

    assert line.sentence == "Searched the web for “q” (7 results)"
    assert line.items[0] == Item("t0", "https://x.jp/0")
    assert (len(line.items), line.more) == (MAX_ITEMS, 7 - MAX_ITEMS)


def test_a_called_agent_is_named_and_its_answer_shown_as_plain_text() -> None:
    data = {"agent": "経理", "answer": "**3日**です", "steps": []}
    done = step("call_agent", {"agent": "経理", "question": "?"}, {"success": True, "data": data})

    assert describe(done, JA) == StepLine("done", "経理 に質問しました", (Item("3日です"),))


def test_a_submitted_form_shows_labels_and_option_labels() -> None:
    values = {"name": "山田", "plan": ["take", "matsu"]}
    sent = step(
        "request_form", {"fields": FIELDS, "title": "予約"}, {"success": True, "data": values}
    )

    assert describe(sent, JA) == StepLine(
        "done", "フォームを送信しました", (Item("お名前: 山田"), Item("プラン: 竹, 松"))
    )


def test_a_form_step_stored_without_its_fields_shows_the_values_by_name() -> None:
    sent = {"id": "s", "tool_name": "request_form", "result": {"success": True, "data": {"n": 2}}}

    assert describe(sent, EN) == StepLine("done", "Sent the form", (Item("n: 2"),))


def test_a_step_waiting_for_a_form_is_shown_as_waiting() -> None:
    asked = step("request_form", {"fields": FIELDS, "form_request_id": "f"})

    assert describe(asked, EN, ended="waiting") == StepLine(
        "waiting", "Asking you to fill in a form"
    )


def test_an_unknown_tool_is_shown_by_the_servers_line_and_odd_data_by_nothing() -> None:
    newer = step("summarize", {"query": "q"}, {"success": True, "data": ["not", "an", "object"]})

    odd = step("retrieve_context_objs", {"query": 3}, {"success": True, "data": {"sources": "x"}})

    assert describe(newer, EN) == StepLine("done", "the server's own line")
    assert describe(odd, EN) == StepLine("done", "Searched the knowledge base (0 results)")
    assert describe({}, JA) == StepLine("running", "ステップ")


@pytest.mark.parametrize(
    ("markdown", "columns", "text"),
    [
        (
            "## 営業時間\n**平日**は[こちら](https://x.jp)、`10:00`〜\n\n- 土曜日",
            150,
            "営業時間 平日はこちら、10:00〜 土曜日",
        ),
        ("| a | b |\n|---|---|\n| 1 | 2 |", 150, "a b 1 2"),
        (
            "```python\nx = 1\n```\n> *em* _u_ snake_case ~~del~~ <b>x</b> ![図](u)",
            150,
            "x = 1 em u snake_case del x 図",
        ),
        ("あ" * 10, 10, "ああああ…"),
        ("あ" * 5, 10, "あああああ"),
        ("abc def ghi", 8, "abc def…"),
        ("", 10, ""),
    ],
)
def test_plain_strips_markdown_and_fits_the_columns(markdown: str, columns: int, text: str) -> None:
    assert plain(markdown, columns) == text
