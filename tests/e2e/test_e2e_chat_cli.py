"""`kaiwa chat` against a real server: `--once` for scripts, `--json` lines, a refused key, the
interactive chat driven through a pseudo-terminal like a person at a keyboard (`terminal`), forms
asked field by field (and `--once` stopping on one with exit 3), and attachments. What issue 16
added for people (languages, steps, Ctrl-C, agents by name, continued chats, errors) is in
`test_e2e_chat_terminal.py`.

The module has a server of its own, so the agents it publishes do not change the published
agents other modules see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.terminal import Terminal, kaiwa_chat

QUESTION = "営業時間は?"
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
        {"name": "note", "label": "ご要望", "type": "longText"},
    ],
}
FORM_ASK = "フォームへのご記入をお願いします"
FORM_THANKS = "ご記入ありがとうございます"
EXIT_FORM = 3
USAGE = r"\d+ tokens \(\d+ in, \d+ out\) · \d+ calls?"
LEFT = r"continue this chat with: kaiwa chat --chat (\d+)"


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    # No embeddings: nothing here searches by meaning, and indexing the guide agent's documents
    # with them makes a start slow on a busy machine.
    server = kaiwa_launcher.start("chat-cli", env={"KAIWA_EMBEDDINGS__PROVIDER": "none"})
    yield server
    server.stop()


def newest_chat_id(server: Any) -> int:
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 100})
    return max(int(chat["id"]) for chat in chats)


def form_agent(server: Any) -> str:
    """A built-in agent that asks for the form first (once per chat)."""
    tool = {"type": "request_form", "custom_form_schema": FORM_SCHEMA}
    agent = server.create_agent(name="予約", llm_model="builtin/extractive", unified_tools=[tool])
    agent_id: str = agent["id"]
    return agent_id


@pytest.fixture
def terminal(server: Any) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, **settings: Any) -> Terminal:
        opened.append(Terminal(server, *args, **settings))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def test_once_prints_exactly_the_stored_answer(server: Any) -> None:
    result = kaiwa_chat(server, "--once", QUESTION)

    assert result.returncode == 0, result.stderr
    rows = server.messages(newest_chat_id(server))
    assert [row["role"] for row in rows] == ["user", "assistant"]
    assert rows[0]["content"] == QUESTION
    assert result.stdout == rows[1]["content"] + "\n"
    assert rows[1]["content"].strip()


def test_once_json_prints_the_events_as_json_lines(server: Any) -> None:
    result = kaiwa_chat(server, "--once", QUESTION, "--json")

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [event["type"] for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.output_text.completed"
    assert "response.output_text.delta" in types
    rows = server.messages(events[0]["chat_id"])
    assert events[-1]["final_text"] == rows[-1]["content"]
    assert events[-1]["status"] == "completed"


def test_once_and_json_work_without_rich(server: Any, tmp_path: Path) -> None:
    # A `rich` that cannot be imported shadows the installed one, as on the base install.
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('no rich here')\n")
    without_rich = {"PYTHONPATH": str(tmp_path)}

    text = kaiwa_chat(server, "--once", QUESTION, env=without_rich)
    lines = kaiwa_chat(server, "--once", QUESTION, "--json", env=without_rich)

    assert (text.returncode, lines.returncode) == (0, 0), text.stderr + lines.stderr
    assert text.stdout.strip()
    assert json.loads(lines.stdout.splitlines()[-1])["final_text"]


def test_once_with_a_bad_key_fails_with_the_error_on_stderr(server: Any) -> None:
    result = kaiwa_chat(server, "--once", QUESTION, key="sk-not-a-key")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "10001" in result.stderr, result.stderr


def leave(term: Terminal) -> int:
    """/quit, and the id of the chat it says to continue."""
    term.type("/quit\r")
    chat_id = int(term.wait_match(LEFT).group(1))
    assert term.exit_code() == 0
    return chat_id


def test_interactive_chat_streams_the_answer_and_the_title(server: Any, terminal: Any) -> None:
    term = terminal()
    end = term.wait_for(r"> ")

    term.type(QUESTION + "\r")
    end = term.wait_for(USAGE, after=end)
    shown = term.screen[term.screen.index(QUESTION) + len(QUESTION) : end]
    term.wait_for(r"> ", after=end)
    chat_id = leave(term)

    rows = server.messages(chat_id)
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 100})
    title = next(chat["name"] for chat in chats if chat["id"] == chat_id)
    first_line = next(line for line in rows[-1]["content"].splitlines() if line.strip())
    assert re.sub(r"[*_`#>\-\s]", "", first_line)[:10] in re.sub(r"\s", "", shown), shown
    assert f"— {title} —" in shown, shown
    assert title != "kaiwa chat"


def test_a_form_is_asked_field_by_field_and_the_answer_goes_on(server: Any, terminal: Any) -> None:
    term = terminal(agent_id=form_agent(server))
    end = term.wait_for(r"> ")

    term.type("予約をお願いします\r")
    end = term.wait_for(FORM_ASK, after=end)
    end = term.wait_for(r"form: 予約\n", after=end)
    end = term.wait_for(r"お名前 \[text; required\]: ", after=end)
    term.type("\r")  # empty: a required field asks again
    end = term.wait_for(r"お名前 is required\n", after=end)
    end = term.wait_for(r"お名前 \[text; required\]: ", after=end)
    term.type("山田\r")
    end = term.wait_for(r"人数 \[number; required\]: ", after=end)
    term.type("two\r")  # not a number: the server refuses it, naming the field
    end = term.wait_for(r"1\) 松  2\) 竹\n", after=end)
    end = term.wait_for(r"プラン \[pick one: number or value; empty skips\]: ", after=end)
    term.type("2\r")
    end = term.wait_for(r"ご要望 \[text; empty skips\]: ", after=end)
    term.interrupt_prompt()  # Ctrl-C skips an optional field
    end = term.wait_for(r"error 10006: values\.count: must be a number", after=end)
    end = term.wait_for(r"人数 \[number; required\]: ", after=end)
    term.type("2\r")
    end = term.wait_for(FORM_THANKS, after=end)
    end = term.wait_for(USAGE, after=end)
    term.wait_for(r"> ", after=end)
    chat_id = leave(term)

    rows = server.messages(chat_id)
    # The paused answer stays as it was; the continuation is an answer of the same turn.
    assert [row["role"] for row in rows] == ["user", "assistant", "assistant"]
    assert rows[1]["meta"]["form_request"]["status"] == "submitted"
    assert len({row["group_id"] for row in rows}) == 1
    steps = rows[-1]["meta"]["reasoning_steps"]
    (form_step,) = [step for step in steps if step["type"] == "consultant_request_form"]
    assert form_step["result"]["data"] == {"name": "山田", "count": 2, "plan": "take"}
    assert FORM_THANKS in rows[-1]["content"]
    assert rows[-1]["meta"]["status"] == "completed"


def test_ctrl_c_on_a_required_field_gives_the_form_up(server: Any, terminal: Any) -> None:
    term = terminal(agent_id=form_agent(server))
    end = term.wait_for(r"> ")

    term.type("予約をお願いします\r")
    end = term.wait_for(r"お名前 \[text; required\]: ", after=end)
    term.interrupt_prompt()
    end = term.wait_for(r"form not sent: the answer waits for it\n", after=end)
    term.wait_for(r"> ", after=end)
    chat_id = leave(term)

    assert server.messages(chat_id)[-1]["meta"]["status"] == "awaiting_form"


def test_once_stops_on_a_form_and_prints_it_as_json(server: Any) -> None:
    agent_id = form_agent(server)
    result = kaiwa_chat(server, "--once", "予約をお願いします", env={"KAIWA_AGENT_ID": agent_id})

    assert result.returncode == EXIT_FORM, result.stderr
    assert FORM_ASK in result.stdout
    request = json.loads(result.stderr.strip().splitlines()[-1])
    assert request["type"] == "form_request"
    assert request["title"] == "予約"
    assert [field["name"] for field in request["fields"]] == ["name", "count", "plan", "note"]
    assert request["fields"][2]["options"][1] == {"value": "take", "label": "竹"}
    chat_id, form_id = request["chat_id"], request["form_request_id"]
    assert request["submit"] == f"POST /api/v1/chats/{chat_id}/form-requests/{form_id}/submit"
    # What it says is enough to answer the form.
    submitted = server.api(
        "POST",
        f"/api/v1/chats/{chat_id}/form-requests/{form_id}/submit",
        json={"values": {"name": "山田", "count": 2}, "stream": False},
    )
    assert submitted.status_code == 200, submitted.text
    assert FORM_THANKS in submitted.json()["data"]


def test_once_json_with_a_form_prints_the_events_and_exits_3(server: Any) -> None:
    agent_id = form_agent(server)
    result = kaiwa_chat(
        server, "--once", "予約をお願いします", "--json", env={"KAIWA_AGENT_ID": agent_id}
    )

    assert result.returncode == EXIT_FORM, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "response.output_text.completed"
    assert events[-1]["status"] == "awaiting_form"
    starts = [e["step"] for e in events if e["type"] == "response.reasoning_step.start"]
    request = json.loads(result.stderr.strip().splitlines()[-1])
    assert request["form_request_id"] == starts[-1]["args"]["form_request_id"]


def test_attached_files_go_with_the_first_question(server: Any, tmp_path: Path) -> None:
    agent = server.create_agent(
        name="clerk", llm_model="builtin/extractive", unified_tools=[{"type": "lookup"}]
    )
    note = tmp_path / "配送メモ.txt"
    note.write_text("配送について。ご注文から3営業日以内に発送します。離島は追加で2日かかります。")
    result = kaiwa_chat(
        server,
        "--once",
        "離島への配送は何日かかりますか",
        "--agent",
        agent["id"],
        "--attach",
        str(note),
    )

    assert result.returncode == 0, result.stderr
    assert "離島は追加で2日かかります" in result.stdout
    user = server.messages(newest_chat_id(server))[0]
    assert [f["original_name"] for f in user["attached_files"]] == ["配送メモ.txt"]


def test_an_unreadable_attachment_is_an_error(server: Any, tmp_path: Path) -> None:
    missing = tmp_path / "ない.txt"
    result = kaiwa_chat(server, "--once", "?", "--attach", str(missing))

    assert result.returncode == 1
    assert "ない.txt" in result.stderr
