"""`kaiwa chat` for people, in a pseudo-terminal against a real server: its words in the
terminal's language, steps as sentences with their sources, a submitted form with its values,
Ctrl-C leaving the partial answer drawn once, agents by name, chats continued and created only
with their first question, and errors that say which URL was tried and what to set.

The module has a server of its own (its agents would change what other modules see published).
What a person sees is asserted on `Terminal.display()`, the output played on a small terminal.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.terminal import CTRL_C, CTRL_D, ROWS, Terminal, kaiwa_chat

HOURS = (
    "## 営業時間\n\n当店の**営業時間**は平日の10時から18時までです。"
    "土曜日は11時から17時まで営業しています。日曜日と祝日は定休日です。"
)
PRICES = "Proプランの価格は月額2,000円です。年払いにすると2か月分が無料になります。"
KB_QUESTION = "土曜日の営業時間を教えてください"
SLOW_SCRIPT = {"answer": [{"text": "途中"}, {"delay": 5}, {"text": "続き"}]}
FORM_SCHEMA = {
    "title": "予約",
    "fields": [
        {"name": "name", "label": "お名前", "type": "shortText", "required": True},
        {"name": "count", "label": "人数", "type": "number", "required": True},
        {
            "name": "plan",
            "label": "プラン",
            "type": "radio",
            "options": [{"value": "matsu", "label": "松"}, {"value": "take", "label": "竹"}],
        },
    ],
}
FORM_THANKS = "ご記入ありがとうございます"
USAGE = {"en": r"\d+ tokens \(\d+ in, \d+ out\)", "ja": r"\d+ トークン（入力 \d+・出力 \d+）"}
LEFT = r"continue this chat with: kaiwa chat --chat (\d+)"
DOCUMENT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    # No embeddings: the knowledge base is searched by words, and indexing the guide agent's
    # documents with them makes a start slow on a busy machine.
    server = kaiwa_launcher.start("chat-terminal", env={"KAIWA_EMBEDDINGS__PROVIDER": "none"})
    yield server
    server.stop()


@pytest.fixture
def terminal(server: Any) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, **settings: Any) -> Terminal:
        opened.append(Terminal(server, *args, **settings))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def agent(server: Any, name: str, **fields: Any) -> str:
    fields.setdefault("llm_model", "builtin/extractive")
    agent_id: str = server.create_agent(name=name, **fields)["id"]
    return agent_id


def kb_agent(server: Any) -> str:
    """A built-in agent that searches a knowledge base of two documents for every question."""
    kb = server.api("POST", "/api/v1/knowledge-bases", json={"name": "FAQ"}).json()["data"]
    path = f"/api/v1/knowledge-bases/{kb['id']}/documents"
    for title, text in (("営業時間", HOURS), ("料金", PRICES)):
        document = server.api("POST", path, json={"title": title, "text": text}).json()["data"]
        deadline = time.monotonic() + DOCUMENT_TIMEOUT
        while server.ok("GET", f"{path}/{document['id']}")["status"] == "processing":
            assert time.monotonic() < deadline, "the document was not indexed in time"
            time.sleep(0.05)
    tool = {"type": "knowledge_base", "knowledge_base_ids": [kb["id"]]}
    return agent(server, "受付", unified_tools=[tool])


def chat_ids(server: Any) -> set[int]:
    return {chat["id"] for chat in server.ok("GET", "/api/v1/chats", params={"limit": 1000})}


def leave(term: Terminal) -> int:
    """/quit, and the id of the chat it says to continue."""
    term.type("/quit\r")
    chat_id = int(term.wait_match(LEFT).group(1))
    assert term.exit_code() == 0
    return chat_id


def after_line(lines: list[str], pattern: str) -> list[str]:
    """The non-blank lines from the one matching `pattern` (which must show exactly once)."""
    found = [n for n, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, (pattern, "\n".join(lines))
    return [line.strip() for line in lines[found[0] :] if line.strip()]


@pytest.mark.parametrize(
    ("lang", "args", "env", "header"),
    [
        ("ja", (), {}, r"エージェント 予約係 · 新しいチャット · /new 新しいチャット"),
        ("en", (), {}, r"agent 予約係 · new chat · /new, /quit"),
        ("en", (), {"LC_ALL": "ja_JP.UTF-8"}, r"エージェント 予約係"),
        ("ja", ("--lang", "en"), {}, r"agent 予約係 · new chat"),
        ("en", ("--lang", "ja"), {}, r"エージェント 予約係 · 新しいチャット"),
    ],
)
def test_the_chat_speaks_the_terminals_language_or_the_one_asked(
    server: Any, terminal: Any, lang: str, args: tuple[str, ...], env: dict[str, str], header: str
) -> None:
    agent_id = agent(server, "予約係")
    term = terminal(*args, agent_id=agent_id, lang=lang, env=env)
    term.wait_for(header)
    term.wait_for(r"> ")
    term.type(CTRL_D)

    assert term.exit_code() == 0


@pytest.mark.parametrize(
    ("lang", "sentence"),
    [
        ("en", rf"✓ Searched the knowledge base for “{KB_QUESTION}” \(\d+ results?\)"),
        ("ja", rf"✓ ナレッジベースを検索しました:「{KB_QUESTION}」 \(\d+件\)"),
    ],
)
def test_a_step_reads_as_a_sentence_with_source_titles_and_plain_snippets(
    server: Any, terminal: Any, lang: str, sentence: str
) -> None:
    term = terminal(agent_id=kb_agent(server), lang=lang)
    end = term.wait_for(r"> ")
    term.type(KB_QUESTION + "\r")
    end = term.wait_for(USAGE[lang], after=end)
    term.wait_for(r"> ", after=end)

    lines = term.display()
    step = after_line(lines, sentence)
    assert step[1] == "営業時間", step
    # The snippet, from `## 営業時間\n\n当店の**営業時間**は…`, may wrap at its space.
    snippet = "".join(step[2:4]).replace(" ", "")
    assert snippet.startswith("営業時間当店の営業時間は平日の10時から18時までです。"), step
    shown = "\n".join(lines)
    for raw in ("retrieve_context_objs", "consultant_", "{", "**", "##"):
        assert raw not in shown, (raw, shown)
    term.type(CTRL_D)
    assert term.exit_code() == 0


def test_a_submitted_form_shows_its_labels_and_values(server: Any, terminal: Any) -> None:
    tool = {"type": "request_form", "custom_form_schema": FORM_SCHEMA}
    term = terminal(agent_id=agent(server, "予約", unified_tools=[tool]), lang="ja")
    end = term.wait_for(r"> ")
    term.type("予約をお願いします\r")
    end = term.wait_for(r"フォーム: 予約\n", after=end)
    for prompt, answer in (
        (r"お名前 \[テキスト; 必須\]: ", "山田"),
        (r"人数 \[数値; 必須\]: ", "2"),
        (r"プラン \[ひとつ選択: 番号か値; 空欄でスキップ\]: ", "2"),
    ):
        end = term.wait_for(prompt, after=end)
        term.type(answer + "\r")
    end = term.wait_for(FORM_THANKS, after=end)
    end = term.wait_for(USAGE["ja"], after=end)
    term.wait_for(r"> ", after=end)

    lines = term.display()
    assert after_line(lines, r"\? フォームへの入力をお願いしています")
    sent = after_line(lines, r"✓ フォームを送信しました")
    assert sent[1:4] == ["お名前: 山田", "人数: 2", "プラン: 竹"], sent
    term.type(CTRL_D)
    assert term.exit_code() == 0


def test_ctrl_c_mid_answer_leaves_the_partial_answer_drawn_once(server: Any, terminal: Any) -> None:
    slow = agent(
        server, "slow", llm_model="scripted/slow", meta={"model_settings": {"script": SLOW_SCRIPT}}
    )
    term = terminal(agent_id=slow)
    end = term.wait_for(r"> ")
    term.type("ゆっくり答えて\r")
    end = term.wait_for("途中", after=end)
    time.sleep(0.3)  # a few redraws of the live answer, as a person watching it would see
    stopped_at = time.monotonic()
    term.type(CTRL_C)
    end = term.wait_for(r"\(stopped\)", after=end)
    term.wait_for(r"> ", after=end)
    elapsed = time.monotonic() - stopped_at
    chat_id = leave(term)

    lines = term.display()
    assert [line for line in lines if "途中" in line] == ["途中"], "\n".join(lines)
    assert after_line(lines, "^途中$")[1] == "(stopped)", "\n".join(lines)
    assert "^C" not in term.text
    assert "続き" not in term.screen
    assert elapsed < 4, "the stop waited for the slow answer"
    assistant = server.messages(chat_id)[-1]
    assert (assistant["meta"]["status"], assistant["content"]) == ("cancelled", "途中")


def test_an_answer_taller_than_the_terminal_streams_its_end_and_is_drawn_once(
    server: Any, terminal: Any
) -> None:
    count = ROWS + 20
    parts: list[dict[str, Any]] = [{"text": f"- 項目 {n:02d}\n"} for n in range(count)]
    # A pause once the answer is taller than the terminal: what shows then is what streams.
    parts.insert(count - 5, {"delay": 2})
    script = {"answer": parts}
    tall = agent(
        server, "tall", llm_model="scripted/tall", meta={"model_settings": {"script": script}}
    )
    term = terminal(agent_id=tall)
    end = term.wait_for(r"> ")
    term.type("長く答えて\r")
    end = term.wait_for(f"項目 {count - 6:02d}", after=end)
    assert f"項目 {count - 5:02d}" not in term.screen
    end = term.wait_for(USAGE["en"], after=end)
    term.wait_for(r"> ", after=end)

    shown = [line.strip() for line in term.display() if "項目" in line]
    assert shown == [f"• 項目 {n:02d}" for n in range(count)], "\n".join(term.display())
    term.type(CTRL_D)
    assert term.exit_code() == 0


def test_agent_is_found_by_its_name_whatever_the_case(server: Any, terminal: Any) -> None:
    agent_id = agent(server, "Front Desk")
    term = terminal("--agent", "front DESK")
    end = term.wait_for(r"agent Front Desk · new chat")
    end = term.wait_for(r"> ", after=end)
    term.type("こんにちは\r")
    end = term.wait_for(USAGE["en"], after=end)
    term.wait_for(r"> ", after=end)
    chat_id = leave(term)

    chats = server.ok("GET", "/api/v1/chats", params={"agent_id": agent_id})
    assert [chat["id"] for chat in chats] == [chat_id]


def test_an_ambiguous_or_unknown_agent_name_is_refused_with_the_candidates(server: Any) -> None:
    twins = [agent(server, "Twin"), agent(server, "twin")]

    ambiguous = kaiwa_chat(server, "--agent", "TWIN")
    unknown = kaiwa_chat(server, "--once", "?", "--agent", "nobody")

    assert ambiguous.returncode == unknown.returncode == 1
    assert "several published agents are named TWIN: pass --agent with an id" in ambiguous.stderr
    assert all(f"({twin})" in ambiguous.stderr for twin in twins), ambiguous.stderr
    assert "no published agent is named nobody; published: " in unknown.stderr
    assert f"Twin ({twins[0]})" in unknown.stderr


def test_chat_continues_a_chat_after_showing_its_last_messages(server: Any, terminal: Any) -> None:
    own = agent(server, "History")
    chat = server.create_chat("前の会話", agent_id=own)
    assert server.stream(chat["id"], "最初の質問です", agent_id=own).done
    earlier_answer = server.messages(chat["id"])[-1]["content"]
    before = chat_ids(server)

    # KAIWA_AGENT_ID names another agent: a continued chat keeps its own.
    term = terminal("--chat", str(chat["id"]))
    end = term.wait_for(rf"agent History · chat {chat['id']} “")
    end = term.wait_for(r"> 最初の質問です", after=end)
    first_line = next(line for line in earlier_answer.splitlines() if line.strip())
    end = term.wait_for(re.escape(re.sub(r"[*_`#>]", "", first_line).strip()[:12]), after=end)
    end = term.wait_for(r"> $", after=end)
    term.type("次の質問です\r")
    end = term.wait_for(USAGE["en"], after=end)
    term.wait_for(r"> ", after=end)

    assert leave(term) == chat["id"]
    assert chat_ids(server) == before
    rows = server.messages(chat["id"])
    assert [row["content"] for row in rows if row["role"] == "user"] == [
        "最初の質問です",
        "次の質問です",
    ]


def test_a_chat_is_created_with_its_first_question_only(server: Any, terminal: Any) -> None:
    before = chat_ids(server)
    term = terminal()
    end = term.wait_for(r"> ")
    term.type("/new\r")
    end = term.wait_for(r"a new chat starts with your next message", after=end)
    end = term.wait_for(r"> ", after=end)
    assert chat_ids(server) == before

    created: list[set[int]] = []
    for question in ("一つ目", "二つ目"):
        term.type(question + "\r")
        end = term.wait_for(USAGE["en"], after=end)
        end = term.wait_for(r"> ", after=end)
        created.append(chat_ids(server) - before - set().union(*created))
        term.type("/new\r")
        end = term.wait_for(r"> ", after=end)
    term.type(CTRL_D)
    left = int(term.wait_match(LEFT, after=end).group(1))

    assert term.exit_code() == 0
    assert [len(ids) for ids in created] == [1, 1]
    assert chat_ids(server) - before == created[0] | created[1]
    assert left == max(created[1])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("en", "): is kaiwa running? pass --url or set KAIWA_BASE_URL\n"),
        (
            "ja",
            "）: kaiwa は起動していますか? --url を指定するか KAIWA_BASE_URL を設定してください\n",
        ),
    ],
)
def test_an_unreachable_server_is_named_with_the_flag_to_change(
    server: Any, lang: str, said: str
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = kaiwa_chat(server, "--url", url, lang=lang)

    assert result.returncode == 1
    opening = {"en": f"could not reach {url}/ (", "ja": f"{url}/ に接続できませんでした（"}
    assert result.stderr.startswith(f"kaiwa chat: {opening[lang]}"), result.stderr
    assert result.stderr.endswith(said), result.stderr
    assert "Connection refused" in result.stderr, result.stderr


def test_a_missing_or_refused_key_says_what_to_set(server: Any) -> None:
    missing = kaiwa_chat(server, env={"KAIWA_API_KEY": ""})
    refused = kaiwa_chat(server, "--api-key", "kw_not-a-key")

    assert (missing.returncode, refused.returncode) == (1, 1)
    assert missing.stderr == "kaiwa chat: no API key: pass --api-key or set KAIWA_API_KEY\n"
    assert refused.stderr == (
        f"kaiwa chat: the API key was refused by {server.base_url}/ (error_code 10001): "
        "pass --api-key or set KAIWA_API_KEY\n"
    )
    assert "api_key=" not in missing.stderr + refused.stderr
