"""`builtin/extractive`: the offline, deterministic model of the demo agent.

It generates nothing. It answers in the language of the user's message from the context it has
(tool results in the conversation), extracting the passages that share the most terms with the
question; with no context it says plainly that no generative model is configured, and how to
configure one. Titles are the first sentence of the message, shortened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

from kaiwa.llm.base import ChatMessage, ModelEvent, ModelRequest, TextDelta, Usage
from kaiwa.llm.text import Language, chunks, detect_language, estimate_tokens, short_title

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

_FROM_CONTEXT = {"en": "Here is what I found:\n\n", "ja": "見つかった情報です。\n\n"}

_JAPANESE = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Katakana and Han carry a Japanese sentence's content (hiragana is mostly grammar); a word of
# another script stops where Japanese starts, so `kaiwaの設定` is `kaiwa` and `設定`.
_TERM_RUNS = re.compile(
    "(?P<ja>[\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)"
    f"|(?P<word>[^\\W{_JAPANESE}]{{3,}})"
)
# English words too common to tell passages apart.
_COMMON = """about and are can could did does for from has have how its not our that the their there
these they this those was were what when where which who why will with would you your"""
_STOPWORDS = frozenset(_COMMON.split())


class ExtractiveModel:
    def __init__(self, provider: str, model: str, *, chunk_delay: float = 0.0) -> None:
        self._name = f"{provider}/{model}"
        self._delay = chunk_delay

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        prompt = estimate_tokens(request.system or "")
        prompt += sum(estimate_tokens(m.content) for m in request.messages)
        language = detect_language(question)
        if request.purpose == "title":
            text = short_title(question)
        else:
            text = _answer(question, language, request.messages)
        for piece in chunks(text):
            if self._delay:
                await asyncio.sleep(self._delay)
            yield TextDelta(piece)
        yield Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(text))


def _answer(question: str, language: Language, messages: Sequence[ChatMessage]) -> str:
    passages = [
        p for m in messages if m.role == "tool" for p in m.content.split("\n\n") if p.strip()
    ]
    best = _best_passages(question, passages)
    if not best:
        return _NO_MODEL[language]
    return _FROM_CONTEXT[language] + "\n\n".join(best)


def _best_passages(question: str, passages: list[str], limit: int = 3) -> list[str]:
    terms = _terms(question)
    scored = []
    for index, passage in enumerate(passages):
        score = len(terms & _terms(passage))
        if score:
            scored.append((-score, index, passage.strip()))
    return [passage for _, _, passage in sorted(scored)[:limit]]


def _terms(text: str) -> set[str]:
    """Words, and every overlapping pair of Japanese characters (a lone one stands alone).

    Pairs overlap so that a word matches wherever it starts: `営業時間` in the question and in
    `当店の営業時間` share `営業`, `業時` and `時間`.
    """
    terms: set[str] = set()
    for match in _TERM_RUNS.finditer(text.lower()):
        run = match.group()
        if match.lastgroup == "word":
            if run not in _STOPWORDS:
                terms.add(run)
        elif len(run) == 1:
            terms.add(run)
        else:
            terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms
