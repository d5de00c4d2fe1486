"""`kaiwa chat` against a real server: `--once` for scripts, `--json` lines, a refused key, and
the interactive chat driven through a pseudo-terminal like a person at a keyboard.

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
