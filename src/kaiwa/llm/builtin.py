"""`builtin/extractive`: the offline, deterministic model of the demo agent.

It generates nothing. It uses the tools it is offered by fixed rules, then answers in the
language of the user's message from their results, extracting the passages that share the most
terms with the question and citing their sources; with nothing relevant it says plainly that no
generative model is configured, and how to configure one. Titles are the first sentence of the
message, shortened.

The rules, in order:
- `request_form`: asked for first, alone, once per chat;
- in the first round: `retrieve_context_objs` with the message, `fetch_web_content` for each http(s)
  URL in it, `lookup` with the message, `call_agent` for each agent the message names;
- `search_web` with the message when nothing found so far is relevant;
- then the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncGenerator, Sequence

from kaiwa.knowledge.terms import rank
from kaiwa.llm.base import (
    ChatMessage,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from kaiwa.llm.text import (
    Language,
    Passage,
    chunks,
    detect_language,
    estimate_prompt,
    estimate_tokens,
    parse_passages,
    short_title,
    unmark,
)

_ids = itertools.count(1)
_SENTENCES = re.compile(r"(?<=[。！？])|(?<=[.!?])\s+|\n+")

_NO_MODEL = {
    "en": (
        "Hello! I'm kaiwa's built-in assistant. No generative model is configured yet, so I can "
        "only answer from an agent's knowledge base, attachments and tool results, and I have "
        "none for this question.\n\n"
        "To chat with a real model, set `OPENAI_API_KEY` (and `OPENAI_BASE_URL` for any "
        "OpenAI-compatible server such as vLLM, Ollama or llama.cpp), or name a provider in "
        "`kaiwa.toml`, then give the agent an `llm_model` such as `openai/gpt-4o-mini` and "
        "publish it."
    ),
    "ja": (
        "こんにちは。kaiwa の組み込みアシスタントです。生成モデルがまだ設定されていないため、"
        "エージェントのナレッジベース・添付ファイル・ツールの結果からしか回答できず、"
        "この質問に使える情報がありません。\n\n"
        "実際のモデルと会話するには、`OPENAI_API_KEY` を設定するか(vLLM・Ollama・llama.cpp "
        "などの OpenAI 互換サーバーなら `OPENAI_BASE_URL` も)、`kaiwa.toml` にプロバイダーを"
        "定義してください。そのうえでエージェントの `llm_model` を `openai/gpt-4o-mini` の"
        "ように設定し、公開します。"
    ),
}

_FROM_CONTEXT = {"en": "Here is what I found:", "ja": "見つかった情報です。"}
_SOURCES = {"en": "Sources", "ja": "出典"}
_ASK_FORM = {
    "en": "Before I answer, please fill in the form.",
    "ja": "回答の前に、フォームへのご記入をお願いします。",
}
_FORM_THANKS = {
    "en": "Thank you for filling in the form.",
    "ja": "フォームへのご記入ありがとうございます。",
}
_URL = re.compile(r"https?://[^\s<>\"'「」『』()（）、。]+")
_MAX_SENTENCES = 3


class ExtractiveModel:
    def __init__(self, provider: str, model: str, *, chunk_delay: float = 0.0) -> None:
        self._name = f"{provider}/{model}"
        self._delay = chunk_delay

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        prompt = estimate_prompt(request.system, (m.content for m in request.messages))
        language = detect_language(question)
        if request.purpose == "title":
            text, calls = short_title(question), list[ToolCall]()
        else:
            text, calls = _respond(question, language, request)
        for piece in chunks(text):
            if self._delay:
                await asyncio.sleep(self._delay)
            yield TextDelta(piece)
        for call in calls:
            yield call
        yield Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(text))


def _respond(
    question: str, language: Language, request: ModelRequest
) -> tuple[str, list[ToolCall]]:
    """The fixed rules: which tools to call this round, or the answer."""
    offered = {tool.name: tool for tool in request.tools}
    turn = _this_turn(request.messages)
    called = _called(turn)
    ever_called = _called(request.messages)
    if "request_form" in offered and "request_form" not in ever_called:
        return _ASK_FORM[language], [_call("request_form", {})]
    first: list[ToolCall] = []
    if not called - {"request_form"}:
        if "retrieve_context_objs" in offered:
            first.append(_call("retrieve_context_objs", {"query": question}))
        if "fetch_web_content" in offered:
            urls = dict.fromkeys(url.rstrip(".,;:!?") for url in _URL.findall(question))
            first.extend(_call("fetch_web_content", {"url": url}) for url in urls)
        if "lookup" in offered:
            first.append(_call("lookup", {"query": question}))
        if "call_agent" in offered:
            first.extend(
                _call("call_agent", {"agent": name, "question": question})
                for name in _named_agents(offered["call_agent"], question)
            )
    if first:
        return "", first
    passages = _passages(turn, exclude={"request_form"})
    best = _best_passages(question, language, passages)
    if not best and "search_web" in offered and "search_web" not in called:
        return "", [_call("search_web", {"query": question})]
    return _answer(language, best, form="request_form" in called), []


def _this_turn(messages: Sequence[ChatMessage]) -> Sequence[ChatMessage]:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return messages[last_user + 1 :]


def _called(messages: Sequence[ChatMessage]) -> set[str]:
    """The names of the tools called in `messages`."""
    return {call.name for m in messages for call in m.tool_calls}


def _passages(turn: Sequence[ChatMessage], *, exclude: set[str]) -> list[Passage]:
    names = {call.id: call.name for m in turn for call in m.tool_calls}
    return [
        passage
        for m in turn
        if m.role == "tool" and names.get(m.tool_call_id or "") not in exclude
        for passage in _passages_of(m.content)
    ]


def _passages_of(content: str) -> list[Passage]:
    """A tool's `<source>` passages; a result without them is paragraphs of no known source."""
    return parse_passages(content) or [
        Passage(title="", text=part.strip()) for part in content.split("\n\n") if part.strip()
    ]


def _named_agents(tool: ToolSpec, question: str) -> list[str]:
    names = tool.parameters.get("properties", {}).get("agent", {}).get("enum", [])
    folded = question.casefold()
    return [name for name in names if isinstance(name, str) and name.casefold() in folded]


def _call(name: str, arguments: dict[str, str]) -> ToolCall:
    return ToolCall(id=f"call_{next(_ids):06d}", name=name, arguments=arguments)


def _answer(language: Language, best: list[Passage], *, form: bool) -> str:
    if not best:
        return (_FORM_THANKS[language] + "\n\n" if form else "") + _NO_MODEL[language]
    parts = [_FORM_THANKS[language]] if form else []
    parts.append(_FROM_CONTEXT[language])
    parts.extend(passage.text for passage in best)
    sources = list(dict.fromkeys(filter(None, (_source(passage) for passage in best))))
    if sources:
        parts.append(f"{_SOURCES[language]}: " + ", ".join(sources))
    return "\n\n".join(parts)


def _source(passage: Passage) -> str:
    ref = passage.ref
    if ref.startswith(("http://", "https://")):
        return f"[{passage.title}]({ref})" if passage.title and passage.title != ref else ref
    return passage.title or ref


def _best_passages(
    question: str, language: Language, passages: list[Passage], limit: int = 3
) -> list[Passage]:
    """The passages that share the most with the question, each cut to its best sentences.

    Passages in the question's language come first, and alone when any matched: a knowledge
    base written in both languages answers each in its own, and one in a single language still
    answers the other (it shares names and identifiers with it).
    """
    ranked = rank(question, [passage.text for passage in passages])
    same = [hit for hit in ranked if detect_language(passages[hit[0]].text) == language]
    return [
        Passage(passages[i].title, _best_sentences(question, passages[i].text), passages[i].ref)
        for i, _ in (same or ranked)[:limit]
    ]


def _best_sentences(question: str, text: str) -> str:
    """At most `_MAX_SENTENCES` of `text`, as plain text: markdown of a quoted document never
    becomes a heading, a list or a code block of the answer."""
    text = unmark(text)
    sentences = [part for part in _SENTENCES.split(text) if part.strip()]
    if len(sentences) <= _MAX_SENTENCES:
        return text
    ranked = rank(question, sentences)
    keep = sorted(i for i, _ in ranked[:_MAX_SENTENCES]) or list(range(_MAX_SENTENCES))
    # A sentence from mid-line may now start the passage: it is unmarked again.
    return " ".join(unmark(sentences[i]) for i in keep)
