"""`builtin/extractive`: offline answers in the user's language, from tool results or guidance."""

from __future__ import annotations

import re
from typing import Any

from kaiwa.llm.base import (
    ChatMessage,
    ModelEvent,
    ModelRequest,
    Purpose,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from kaiwa.llm.builtin import ExtractiveModel
from kaiwa.llm.text import Passage, detect_language, estimate_tokens, render_passages

JA_QUESTION = "営業時間は何時ですか？土曜日も開いていますか？"
EN_QUESTION = "What are your opening hours?"


async def run(request: ModelRequest, model: ExtractiveModel | None = None) -> list[ModelEvent]:
    model = model or ExtractiveModel("builtin", "extractive")
    return [event async for event in model.stream(request)]


def ask(
    *messages: ChatMessage, purpose: Purpose = "answer", system: str | None = None
) -> ModelRequest:
    return ModelRequest(messages=messages, purpose=purpose, system=system)


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_name_is_provider_slash_model() -> None:
    assert ExtractiveModel("builtin", "extractive").name == "builtin/extractive"


async def test_japanese_question_gets_japanese_guidance() -> None:
    text = text_of(await run(ask(ChatMessage("user", JA_QUESTION))))
    assert detect_language(text) == "ja"
    assert "生成モデルがまだ設定されていない" in text
    assert "`OPENAI_API_KEY` を設定" in text
    assert "OPENAI_BASE_URL" in text
    assert "kaiwa.toml" in text


async def test_english_question_gets_english_guidance() -> None:
    text = text_of(await run(ask(ChatMessage("user", EN_QUESTION))))
    assert detect_language(text) == "en"
    assert "No generative model is configured" in text
    assert "set `OPENAI_API_KEY`" in text
    assert "`openai/gpt-4o-mini`" in text
    assert text.startswith("Hello! I'm kaiwa's built-in assistant.")
    assert text.endswith("publish it.")


async def test_answer_streams_in_several_small_chunks() -> None:
    for question in (JA_QUESTION, EN_QUESTION):
        events = await run(ask(ChatMessage("user", question)))
        deltas = [e.text for e in events if isinstance(e, TextDelta)]
        assert len(deltas) >= 20
        assert max(len(d) for d in deltas) <= 24
        assert all(deltas)


async def test_usage_comes_last_once_with_nonzero_counts() -> None:
    events = await run(ask(ChatMessage("user", EN_QUESTION)))
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert [e for e in events if isinstance(e, Usage)] == [usage]
    assert usage.prompt_tokens == estimate_tokens(EN_QUESTION) > 0
    assert usage.completion_tokens == estimate_tokens(text_of(events)) > 0


async def test_prompt_tokens_count_the_system_prompt_and_every_message() -> None:
    system = "You are the support agent of a bakery."
    messages = (
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello, how can I help?"),
        ChatMessage("user", EN_QUESTION),
    )
    events = await run(ask(*messages, system=system))
    usage = events[-1]
    assert isinstance(usage, Usage)
    expected = estimate_tokens(system) + sum(estimate_tokens(m.content) for m in messages)
    assert usage.prompt_tokens == expected


async def test_two_runs_are_identical() -> None:
    request = ask(ChatMessage("user", JA_QUESTION))
    assert await run(request) == await run(request)


async def test_answers_in_the_language_of_the_last_user_message() -> None:
    events = await run(
        ask(
            ChatMessage("user", EN_QUESTION),
            ChatMessage("assistant", "..."),
            ChatMessage("user", JA_QUESTION),
        )
    )
    assert detect_language(text_of(events)) == "ja"


async def test_answers_from_a_tool_message_sharing_terms_with_a_japanese_question() -> None:
    # `営業時間` starts at a different offset in the question and in the passage: terms must
    # match wherever a word starts.
    tool = ChatMessage(
        "tool",
        "駐車場は店舗の裏にあります。\n\n当店の営業時間は10時から18時です。",
        tool_call_id="call_1",
    )
    text = text_of(await run(ask(ChatMessage("user", "営業時間を教えてください"), tool)))
    assert text == "見つかった情報です。\n\n当店の営業時間は10時から18時です。"


async def test_answers_from_a_tool_message_sharing_terms_with_an_english_question() -> None:
    tool = ChatMessage(
        "tool",
        "Parking is behind the store.\n\nOpening hours: 10:00 to 18:00, Saturdays included.",
        tool_call_id="call_1",
    )
    text = text_of(await run(ask(ChatMessage("user", EN_QUESTION), tool)))
    assert text == "Here is what I found:\n\nOpening hours: 10:00 to 18:00, Saturdays included."


async def test_passages_sharing_only_common_words_are_not_an_answer() -> None:
    tool = ChatMessage("tool", "We are closed on public holidays. What a pity.", tool_call_id="c")
    text = text_of(await run(ask(ChatMessage("user", EN_QUESTION), tool)))
    assert "No generative model is configured" in text


async def test_only_tool_messages_are_context() -> None:
    earlier = ChatMessage("assistant", "Opening hours are 10 to 18.")
    text = text_of(await run(ask(earlier, ChatMessage("user", EN_QUESTION))))
    assert "No generative model is configured" in text


async def test_best_passages_come_first_and_at_most_three() -> None:
    passages = [
        "Opening times vary.",
        "Opening hours: 10 to 18, hours may change.",
        "Store hours are posted online.",
        "Opening day was in 1999.",
        "Opening soon: a second store.",
    ]
    tool = ChatMessage("tool", "\n\n".join(passages), tool_call_id="c")
    text = text_of(await run(ask(ChatMessage("user", EN_QUESTION), tool)))
    found = text.removeprefix("Here is what I found:\n\n").split("\n\n")
    # BM25: "hours" is rarer than "opening" among the passages, so it weighs more.
    assert found == [passages[1], passages[2], passages[0]]


async def test_title_purpose_yields_a_short_title_in_the_message_language() -> None:
    ja = text_of(await run(ask(ChatMessage("user", JA_QUESTION), purpose="title")))
    en = text_of(await run(ask(ChatMessage("user", EN_QUESTION), purpose="title")))
    assert ja == "営業時間は何時ですか"
    assert en == "What are your opening hours"


async def test_chunk_delay_does_not_change_the_answer() -> None:
    request = ask(ChatMessage("user", "Hi"))
    slow = ExtractiveModel("builtin", "extractive", chunk_delay=0.001)
    assert await run(request, slow) == await run(request)


def tool(name: str, **parameters: Any) -> ToolSpec:
    return ToolSpec(name=name, description="", parameters={"type": "object", **parameters})


def calls_of(events: list[ModelEvent]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, e.arguments) for e in events if isinstance(e, ToolCall)]


AGENTS = {"properties": {"agent": {"type": "string", "enum": ["Billing", "経理"]}}}


async def test_first_round_calls_every_fitting_tool_with_the_message() -> None:
    question = "経理 に聞いて: https://example.com/a と http://example.org/b。を読んで"
    request = ModelRequest(
        messages=[ChatMessage("user", question)],
        tools=[
            tool("retrieve_context_objs"),
            tool("fetch_web_content"),
            tool("lookup"),
            tool("call_agent", **AGENTS),
            tool("search_web"),
        ],
    )
    assert calls_of(await run(request)) == [
        ("retrieve_context_objs", {"query": question}),
        ("fetch_web_content", {"url": "https://example.com/a"}),
        ("fetch_web_content", {"url": "http://example.org/b"}),
        ("lookup", {"query": question}),
        ("call_agent", {"agent": "経理", "question": question}),
    ]


async def test_a_form_is_asked_for_first_alone_and_once() -> None:
    tools = [tool("request_form"), tool("retrieve_context_objs")]
    first = await run(ModelRequest(messages=[ChatMessage("user", "予約したい")], tools=tools))
    assert calls_of(first) == [("request_form", {})]
    assert "フォーム" in text_of(first)
    asked = ToolCall(id="f1", name="request_form", arguments={})
    later = [
        ChatMessage("user", "予約したい"),
        ChatMessage("assistant", "", tool_calls=(asked,)),
        ChatMessage("tool", "The user submitted the form", tool_call_id="f1"),
        ChatMessage("assistant", "ok"),
        ChatMessage("user", "営業時間は?"),
    ]
    again = await run(ModelRequest(messages=later, tools=tools))
    assert calls_of(again) == [("retrieve_context_objs", {"query": "営業時間は?"})]


async def test_web_search_only_when_nothing_relevant_was_found() -> None:
    question = "What are the opening hours?"
    tools = [tool("retrieve_context_objs"), tool("search_web")]
    retrieved = ToolCall(id="r1", name="retrieve_context_objs", arguments={"query": question})
    empty = [
        ChatMessage("user", question),
        ChatMessage("assistant", "", tool_calls=(retrieved,)),
        ChatMessage("tool", "No passage matches.", tool_call_id="r1"),
    ]
    assert calls_of(await run(ModelRequest(messages=empty, tools=tools))) == [
        ("search_web", {"query": question})
    ]
    found = render_passages([Passage("Hours", "Opening hours are 9 to 5.", "kb:d1#3")])
    relevant = [*empty[:2], ChatMessage("tool", found, tool_call_id="r1")]
    events = await run(ModelRequest(messages=relevant, tools=tools))
    assert calls_of(events) == []
    assert text_of(events) == (
        "Here is what I found:\n\nOpening hours are 9 to 5.\n\nSources: Hours"
    )


async def test_the_answer_cites_web_pages_as_links() -> None:
    fetched = ToolCall(id="c1", name="fetch_web_content", arguments={})
    page = render_passages(
        [Passage("Pricing", "The Pro plan costs 20 dollars a month.", "https://example.com/p")]
    )
    messages = [
        ChatMessage("user", "How much does the Pro plan cost?"),
        ChatMessage("assistant", "", tool_calls=(fetched,)),
        ChatMessage("tool", page, tool_call_id="c1"),
    ]
    text = text_of(await run(ModelRequest(messages=messages, tools=[tool("fetch_web_content")])))
    assert text.endswith("Sources: [Pricing](https://example.com/p)")


# -- quoted markdown stays text --------------------------------------------------------------------


async def answer_from(question: str, *passages: Passage) -> str:
    """The answer to `question` from a knowledge-base search that found `passages`."""
    call = ToolCall(id="c1", name="retrieve_context_objs", arguments={})
    messages = [
        ChatMessage("user", question),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", render_passages(passages), tool_call_id="c1"),
    ]
    return text_of(await run(ModelRequest(messages=messages)))


def block_starts(text: str) -> list[str]:
    """Every line of `text` that a markdown renderer would start a block with (none wanted)."""
    block = re.compile(r"^\s*(#{1,6}(\s|$)|>|[-*+](\s|$)|\d{1,9}[.)](\s|$)|`{3}|~{3}|[-=]+\s*$)")
    return [line for line in text.splitlines() if block.match(line)]


async def test_a_passage_starting_with_a_heading_is_not_a_heading_of_the_answer() -> None:
    page = Passage("営業時間", "# 営業時間\n\n当店の営業時間は10時から18時です。", "kb:1#1")
    text = await answer_from("営業時間を教えてください", page)
    quoted = "営業時間\n当店の営業時間は10時から18時です。"
    assert text == f"見つかった情報です。\n\n{quoted}\n\n出典: 営業時間"
    assert block_starts(text) == []


async def test_a_setext_heading_and_a_rule_are_dropped() -> None:
    page = Passage("Hours", "Opening hours\n=============\n\n10 to 18.\n\n---\n", "kb:1#1")
    text = await answer_from(EN_QUESTION, page)
    assert text.startswith("Here is what I found:\n\nOpening hours\n10 to 18.")
    assert block_starts(text) == []


async def test_list_markers_are_shown_as_text() -> None:
    page = Passage(
        "Tools",
        "- `lookup`: the tools search the chat\n1. Open the tools settings.\n2) Save the tools.",
        "kb:2#1",
    )
    text = await answer_from("Which tools can an agent use?", page)
    quoted = (
        "• `lookup`: the tools search the chat\n(1) Open the tools settings.\n(2) Save the tools."
    )
    assert f"\n\n{quoted}\n\n" in text
    assert block_starts(text) == []


async def test_quote_and_bullet_markers_nest_and_are_peeled() -> None:
    page = Passage("Tips", "> - ## Tools tip\n+ + tools\n> > tools quoted twice", "kb:2#2")
    text = await answer_from("Which tools can an agent use?", page)
    assert "• ## Tools tip\n• + tools\ntools quoted twice" in text
    assert block_starts(text) == []


async def test_code_fences_are_dropped_and_their_lines_kept_as_text() -> None:
    page = Passage(
        "起動",
        "```sh\n# サーバーを起動する\nkaiwa serve --port 8000\n```\n起動すると画面が開けます。",
        "kb:3#1",
    )
    text = await answer_from("サーバーの起動方法は?", page)
    assert "```" not in text
    assert "kaiwa serve --port 8000" in text
    assert "サーバーを起動する" in text
    assert block_starts(text) == []


async def test_a_long_passage_cut_to_its_best_sentences_starts_no_block() -> None:
    # More than three sentences: the best ones are joined, the first of them from mid-line.
    page = Passage(
        "Guide",
        "Intro text here. - Opening hours are 10 to 18. Other words. More words. "
        "Hours change on holidays.\n# Closing remarks",
        "kb:4#1",
    )
    text = await answer_from(EN_QUESTION, page)
    assert block_starts(text) == []
    assert "Opening hours are 10 to 18." in text


# -- one language, its own passages ----------------------------------------------------------------


async def test_a_question_gets_passages_in_its_own_language_when_there_are_any() -> None:
    ja = Passage("モデルの設定", "OpenAI を使うには `OPENAI_API_KEY` を設定します。", "kb:1#1")
    en = Passage("Configuring a model", "To use OpenAI, set `OPENAI_API_KEY`.", "kb:2#1")
    english = await answer_from("How do I use OpenAI?", ja, en)
    assert "To use OpenAI" in english
    assert "設定します" not in english
    japanese = await answer_from("OpenAI を使うには?", en, ja)
    assert "設定します" in japanese
    assert "To use OpenAI" not in japanese


async def test_passages_in_another_language_still_answer_when_none_is_in_its_own() -> None:
    ja = Passage("モデルの設定", "OpenAI を使うには `OPENAI_API_KEY` を設定します。", "kb:1#1")
    assert "OPENAI_API_KEY" in await answer_from("How do I set OPENAI_API_KEY?", ja)
