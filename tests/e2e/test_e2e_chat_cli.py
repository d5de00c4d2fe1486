"""`kaiwa chat` against a real server: `--once` for scripts, `--json` lines, a refused key, the
interactive chat driven through a pseudo-terminal like a person at a keyboard, forms asked field
by field (and `--once` stopping on one with exit 3), and attachments.

The module has a server of its own, so the slow agent it publishes does not change the published
agents other modules see. Every read of the terminal is bounded (`select` with a deadline), and
ANSI escapes are stripped before anything is asserted.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

QUESTION = "営業時間は?"
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
        {"name": "note", "label": "ご要望", "type": "longText"},
    ],
}
FORM_ASK = "フォームへのご記入をお願いします"
FORM_THANKS = "ご記入ありがとうございます"
EXIT_FORM = 3
DEADLINE = 20.0
CLI_TIMEOUT = 60.0
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.start("chat-cli")
    yield server
    server.stop()


def chat_env(server: Any, *, key: str | None = None, agent_id: str | None = None) -> dict[str, str]:
    return {
        **server.env,
        "KAIWA_BASE_URL": server.base_url,
        "KAIWA_API_KEY": server.api_key if key is None else key,
        "KAIWA_AGENT_ID": agent_id or server.agent_id,
        "TERM": "xterm-256color",
    }


def kaiwa_chat(
    server: Any, *args: str, key: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaiwa.cli", "chat", *args],
        cwd=server.root,
        env={**chat_env(server, key=key), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def newest_chat_id(server: Any) -> int:
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 100})
    return max(int(chat["id"]) for chat in chats)


def form_agent(server: Any) -> str:
    """A built-in agent that asks for the form first (once per chat)."""
    tool = {"type": "request_form", "custom_form_schema": FORM_SCHEMA}
    agent = server.create_agent(name="予約", llm_model="builtin/extractive", unified_tools=[tool])
    agent_id: str = agent["id"]
    return agent_id


class Terminal:
    """`kaiwa chat` in a pseudo-terminal: type into it, wait for text on its screen."""

    def __init__(self, server: Any, *, agent_id: str | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kaiwa.cli", "chat"],
            cwd=server.root,
            env=chat_env(server, agent_id=agent_id),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.closed = False

    @property
    def screen(self) -> str:
        """Everything shown so far, without escapes and carriage returns."""
        text = self.raw.decode("utf-8", errors="replace")
        return ANSI.sub("", text).replace("\r", "")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = DEADLINE) -> int:
        """Wait until `pattern` (a regex) shows at or after `after`; returns where it ends."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.screen, after)
            if found:
                return found.end()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                pytest.fail(f"{pattern!r} did not show in {timeout:g} s; screen:\n{self.screen}")
            self._read(remaining)

    def interrupt_prompt(self, timeout: float = DEADLINE) -> None:
        """Ctrl-C at a prompt, once the program sleeps waiting for the keyboard.

        A SIGINT that lands between readline printing its prompt and blocking on the terminal
        is only noticed at the next key (CPython checks signals when its `select` is
        interrupted): a race a person never runs, but a test that signals the moment the prompt
        shows does. So wait until the process sleeps (`S` in /proc/<pid>/stat) first.
        """
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + timeout
        asleep = 0
        while asleep < 3 and time.monotonic() < deadline:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            asleep = asleep + 1 if state == "S" else 0
            time.sleep(0.01)
        self.process.send_signal(signal.SIGINT)

    def exit_code(self, timeout: float = DEADLINE) -> int:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        return self.process.wait(timeout=max(deadline - time.monotonic(), 1.0))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        os.close(self.master)

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], min(timeout, 0.5))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self.closed = True


@pytest.fixture
def terminal(server: Any) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_terminal(agent_id: str | None = None) -> Terminal:
        opened.append(Terminal(server, agent_id=agent_id))
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


def test_interactive_chat_streams_the_answer_and_the_title(server: Any, terminal: Any) -> None:
    term = terminal()
    end = term.wait_for(r"chat (\d+) ·")
    chat_id = int(re.compile(r"chat (\d+) ·").search(term.screen).group(1))  # type: ignore[union-attr]
    end = term.wait_for(r"> ", after=end)

    term.type(QUESTION + "\r")
    end = term.wait_for(r"\d+ tokens \(\d+ in, \d+ out\) · \d+ calls?", after=end)
    rows = server.messages(chat_id)
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 100})
    title = next(chat["name"] for chat in chats if chat["id"] == chat_id)
    answer_start = term.screen.index(QUESTION) + len(QUESTION)
    shown = term.screen[answer_start:end]
    first_line = next(line for line in rows[-1]["content"].splitlines() if line.strip())
    assert re.sub(r"[*_`#>\-\s]", "", first_line)[:10] in re.sub(r"\s", "", shown), shown
    assert f"— {title} —" in shown, shown
    assert title != "kaiwa chat"

    term.wait_for(r"> ", after=end)
    term.type("/quit\r")
    assert term.exit_code() == 0


def test_ctrl_c_stops_a_slow_answer_and_returns_to_the_prompt(server: Any, terminal: Any) -> None:
    agent = server.create_agent(
        name="slow", llm_model="scripted/slow", meta={"model_settings": {"script": SLOW_SCRIPT}}
    )
    term = terminal(agent["id"])
    end = term.wait_for(r"chat (\d+) ·")
    chat_id = int(re.compile(r"chat (\d+) ·").search(term.screen).group(1))  # type: ignore[union-attr]
    end = term.wait_for(r"> ", after=end)

    term.type("ゆっくり答えて\r")
    end = term.wait_for("途中", after=end)
    stopped_at = time.monotonic()
    term.process.send_signal(signal.SIGINT)
    end = term.wait_for(r"\(stopped\)", after=end)
    term.wait_for(r"> ", after=end)

    assert time.monotonic() - stopped_at < 4, "the stop waited for the slow answer"
    assert "続き" not in term.screen
    assistant = server.messages(chat_id)[-1]
    assert assistant["role"] == "assistant"
    assert assistant["meta"]["status"] == "cancelled"
    assert assistant["content"] == "途中"

    term.type("/quit\r")
    assert term.exit_code() == 0


def test_new_starts_another_chat_and_ctrl_d_leaves(server: Any, terminal: Any) -> None:
    term = terminal()
    end = term.wait_for(r"chat (\d+) ·")
    first = int(re.compile(r"chat (\d+) ·").search(term.screen).group(1))  # type: ignore[union-attr]
    end = term.wait_for(r"> ", after=end)

    term.type("/new\r")
    end = term.wait_for(rf"chat {first + 1}\n", after=end)
    term.wait_for(r"> ", after=end)
    term.type("\x04")  # Ctrl-D at the start of a line: end of input

    assert term.exit_code() == 0
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 100})
    assert {first, first + 1} <= {chat["id"] for chat in chats if chat["name"] == "kaiwa chat"}


def test_a_form_is_asked_field_by_field_and_the_answer_goes_on(server: Any, terminal: Any) -> None:
    term = terminal(form_agent(server))
    end = term.wait_for(r"chat (\d+) ·")
    chat_id = int(re.compile(r"chat (\d+) ·").search(term.screen).group(1))  # type: ignore[union-attr]
    end = term.wait_for(r"> ", after=end)

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
    end = term.wait_for(r"\d+ tokens \(\d+ in, \d+ out\) · \d+ calls?", after=end)
    term.wait_for(r"> ", after=end)

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

    term.type("/quit\r")
    assert term.exit_code() == 0


def test_ctrl_c_on_a_required_field_gives_the_form_up(server: Any, terminal: Any) -> None:
    term = terminal(form_agent(server))
    end = term.wait_for(r"chat (\d+) ·")
    chat_id = int(re.compile(r"chat (\d+) ·").search(term.screen).group(1))  # type: ignore[union-attr]
    end = term.wait_for(r"> ", after=end)

    term.type("予約をお願いします\r")
    end = term.wait_for(r"お名前 \[text; required\]: ", after=end)
    term.interrupt_prompt()
    end = term.wait_for(r"form not sent: the answer waits for it\n", after=end)
    term.wait_for(r"> ", after=end)

    assert server.messages(chat_id)[-1]["meta"]["status"] == "awaiting_form"
    term.type("/quit\r")
    assert term.exit_code() == 0


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
