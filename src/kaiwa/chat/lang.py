"""Every string `kaiwa chat` shows, in English and Japanese: one catalogue per language.

    texts = catalogue(detect(os.environ))       # or catalogue("ja") for `--lang ja`
    texts.stopped                               # '(stopped)' / '（中断しました）'
    texts.count(texts.results, 3)               # '3 results' / '3件'
    texts.unreachable.format(url=…, reason=…)   # placeholders are the same in both languages

What the server writes (answers, step lines of unknown tools, error messages) is shown as it
comes; only the chat's own words are here. `--json` lines are never translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Lang = Literal["en", "ja"]
LANGS: tuple[Lang, ...] = ("en", "ja")
Plural = tuple[str, str]
"""The forms for one and for any other count, each with `{n}`."""


def detect(environ: Mapping[str, str]) -> Lang:
    """The language of the terminal's locale: the first of LC_ALL, LC_MESSAGES and LANG that is
    set (as the C library reads them); Japanese for `ja…`, English for anything else."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := environ.get(name):
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


@dataclass(frozen=True)
class ToolTexts:
    running: str
    """A step that has not ended, as a sentence: "Searching the knowledge base"."""
    done: str
    """The same step, ended: "Searched the knowledge base"; may use `{agent}`."""


@dataclass(frozen=True)
class Texts:
    # The chat around the answers.
    header: str
    new_chat: str
    chat: str
    chat_named: str
    started_new: str
    continue_later: str
    attached: str
    choose_agent: str
    earlier: Plural
    error: str
    error_code: str
    # What went wrong before or around an answer (`errors.explain`).
    install_hint: str
    no_key: str
    unreachable: str
    key_refused: str
    no_agent: str
    unknown_agent: str
    ambiguous_agent: str
    several_agents: str
    unknown_chat: str
    agent_mismatch: str
    # An answer and its steps.
    stopped: str
    usage: str
    calls: Plural
    results: Plural
    more: str
    untitled: str
    tools: Mapping[str, ToolTexts]
    """By tool name; a tool this client does not know shows the server's own line."""
    query: str
    failed: str
    interrupted: str
    step: str
    # Forms.
    form: str
    form_titled: str
    hints: Mapping[str, str]
    """What to type, by field type."""
    required: str
    optional: str
    is_required: str
    form_not_sent: str

    def count(self, forms: Plural, n: int) -> str:
        return forms[0 if n == 1 else 1].format(n=n)

    def error_label(self, code: int | None) -> str:
        return self.error if code is None else self.error_code.format(code=code)


EN = Texts(
    header="agent {agent} · {chat} · /new, /quit · Ctrl-C stops an answer",
    new_chat="new chat",
    chat="chat {id}",
    chat_named="chat {id} “{name}”",
    started_new="a new chat starts with your next message",
    continue_later="continue this chat with: kaiwa chat --chat {id}",
    attached="attached {name} ({size} bytes) to the first question",
    choose_agent="agent number: ",
    earlier=("… {n} earlier message", "… {n} earlier messages"),
    error="error: ",
    error_code="error {code}: ",
    install_hint="kaiwa chat: the terminal chat needs rich: pip install 'kaiwa[chat]'",
    no_key="no API key: pass --api-key or set KAIWA_API_KEY",
    unreachable=(
        "could not reach {url} ({reason}): is kaiwa running? pass --url or set KAIWA_BASE_URL"
    ),
    key_refused=(
        "the API key was refused by {url} (error_code {code}): pass --api-key or set KAIWA_API_KEY"
    ),
    no_agent="{url} has no published agent: publish one first",
    unknown_agent="no published agent is named {agent}; published: {agents}",
    ambiguous_agent="several published agents are named {agent}: pass --agent with an id: {agents}",
    several_agents="several published agents: pass --agent or set KAIWA_AGENT_ID: {agents}",
    unknown_chat="no chat {id} at {url} for this API key",
    agent_mismatch="chat {id} is with agent {chat_agent}, not {agent}: leave --agent out",
    stopped="(stopped)",
    usage="{tokens} tokens ({prompt} in, {completion} out) · {calls}",
    calls=("{n} call", "{n} calls"),
    results=("{n} result", "{n} results"),
    more="… and {n} more",
    untitled="(untitled)",
    tools={
        "retrieve_context_objs": ToolTexts(
            "Searching the knowledge base", "Searched the knowledge base"
        ),
        "lookup": ToolTexts(
            "Looking through this chat and its files", "Looked through this chat and its files"
        ),
        "search_web": ToolTexts("Searching the web", "Searched the web"),
        "fetch_web_content": ToolTexts("Reading a web page", "Read a web page"),
        "call_agent": ToolTexts("Asking {agent}", "Asked {agent}"),
        "request_form": ToolTexts("Asking you to fill in a form", "Sent the form"),
    },
    query=" for “{query}”",
    failed=" — failed: {error}",
    interrupted=" — interrupted",
    step="A step",
    form="form",
    form_titled="form: {title}",
    hints={
        "shortText": "text",
        "longText": "text",
        "number": "number",
        "date": "date YYYY-MM-DD",
        "dropdown": "pick one: number or value",
        "radio": "pick one: number or value",
        "checkbox": "pick any: numbers or values, comma-separated",
    },
    required="required",
    optional="empty skips",
    is_required="{label} is required",
    form_not_sent="form not sent: the answer waits for it",
)

JA = Texts(
    header="エージェント {agent} · {chat} · /new 新しいチャット, /quit 終了 · Ctrl-C で回答を中断",
    new_chat="新しいチャット",
    chat="チャット {id}",
    chat_named="チャット {id}「{name}」",
    started_new="次のメッセージから新しいチャットになります",
    continue_later="このチャットの続き: kaiwa chat --chat {id}",
    attached="{name}（{size} バイト）を最初の質問に添付しました",
    choose_agent="エージェントの番号: ",
    earlier=("… 以前のメッセージ {n} 件", "… 以前のメッセージ {n} 件"),
    error="エラー: ",
    error_code="エラー {code}: ",
    install_hint="kaiwa chat: 端末のチャットには rich が必要です: pip install 'kaiwa[chat]'",
    no_key="API キーがありません: --api-key を指定するか KAIWA_API_KEY を設定してください",
    unreachable=(
        "{url} に接続できませんでした（{reason}）: kaiwa は起動していますか? "
        "--url を指定するか KAIWA_BASE_URL を設定してください"
    ),
    key_refused=(
        "API キーが {url} に拒否されました（error_code {code}）: "
        "--api-key を指定するか KAIWA_API_KEY を設定してください"
    ),
    no_agent="{url} に公開済みのエージェントがありません: 先に公開してください",
    unknown_agent="{agent} という名前の公開済みエージェントはありません。公開済み: {agents}",
    ambiguous_agent=(
        "{agent} という名前の公開済みエージェントが複数あります: "
        "--agent に ID を指定してください: {agents}"
    ),
    several_agents=(
        "公開済みのエージェントが複数あります: "
        "--agent を指定するか KAIWA_AGENT_ID を設定してください: {agents}"
    ),
    unknown_chat="この API キーで使えるチャット {id} は {url} にありません",
    agent_mismatch=(
        "チャット {id} のエージェントは {chat_agent} で、{agent} ではありません: "
        "--agent を外してください"
    ),
    stopped="（中断しました）",
    usage="{tokens} トークン（入力 {prompt}・出力 {completion}）· {calls}",
    calls=("モデル呼び出し {n} 回", "モデル呼び出し {n} 回"),
    results=("{n}件", "{n}件"),
    more="… ほか {n} 件",
    untitled="（無題）",
    tools={
        "retrieve_context_objs": ToolTexts(
            "ナレッジベースを検索しています", "ナレッジベースを検索しました"
        ),
        "lookup": ToolTexts(
            "この会話と添付ファイルから探しています", "この会話と添付ファイルから探しました"
        ),
        "search_web": ToolTexts("ウェブを検索しています", "ウェブを検索しました"),
        "fetch_web_content": ToolTexts("ウェブページを読んでいます", "ウェブページを読みました"),
        "call_agent": ToolTexts("{agent} に質問しています", "{agent} に質問しました"),
        "request_form": ToolTexts("フォームへの入力をお願いしています", "フォームを送信しました"),
    },
    query=":「{query}」",
    failed=" — 失敗しました: {error}",
    interrupted=" — 中断しました",
    step="ステップ",
    form="フォーム",
    form_titled="フォーム: {title}",
    hints={
        "shortText": "テキスト",
        "longText": "テキスト",
        "number": "数値",
        "date": "日付 YYYY-MM-DD",
        "dropdown": "ひとつ選択: 番号か値",
        "radio": "ひとつ選択: 番号か値",
        "checkbox": "いくつでも選択: 番号か値をカンマ区切りで",
    },
    required="必須",
    optional="空欄でスキップ",
    is_required="{label} は必須です",
    form_not_sent="フォームは送信していません: 回答は入力を待っています",
)

CATALOGUES: dict[Lang, Texts] = {"en": EN, "ja": JA}


def catalogue(lang: Lang) -> Texts:
    return CATALOGUES[lang]
