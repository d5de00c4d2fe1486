"""`kaiwa chat` in a pseudo-terminal, as a person at a keyboard runs it, and what they would see.

    term = Terminal(server, "--agent", "受付", lang="ja")
    end = term.wait_for(r"> ")                # a regex on all written so far (bounded wait)
    term.type("営業時間は?\\r")
    term.type(CTRL_C)                         # the terminal turns it into SIGINT, and echoes it
    term.wait_match("chat ([0-9]+)", after=end).group(1)
    term.display()                            # the lines on screen (scrollback included)

The pty is the program's controlling terminal (a new session), so Ctrl-C typed is a SIGINT from
the terminal, echo included, exactly as for a person. `screen` is the output with escapes and
carriage returns dropped: it only grows, which makes it the thing to wait on. `display()` plays
the output on a small VT100 (`Screen`), so that a line drawn twice shows twice and a line redrawn
in place shows once.

Every read is bounded (`select` with a deadline).
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

DEADLINE = 20.0
CLI_TIMEOUT = 60.0
ROWS, COLUMNS = 40, 120
CTRL_C, CTRL_D = "\x03", "\x04"
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# Make the pty the controlling terminal of the new session, then become `kaiwa chat` (same pid).
_CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def chat_env(
    server: Any, *, key: str | None = None, agent_id: str | None = None, lang: str = "en"
) -> dict[str, str]:
    """The chat's settings for `server`, in a locale of `lang` whatever the tests run in."""
    env = {
        name: value
        for name, value in server.env.items()
        if name not in ("LC_ALL", "LC_MESSAGES", "LANGUAGE")
    }
    return {
        **env,
        "KAIWA_BASE_URL": server.base_url,
        "KAIWA_API_KEY": server.api_key if key is None else key,
        "KAIWA_AGENT_ID": agent_id or server.agent_id,
        "LANG": "ja_JP.UTF-8" if lang == "ja" else "en_US.UTF-8",
        "TERM": "xterm-256color",
    }


def kaiwa_chat(
    server: Any, *args: str, env: dict[str, str] | None = None, **settings: Any
) -> subprocess.CompletedProcess[str]:
    """`kaiwa chat` without a terminal (`--once`, `--json`, or failing before the first prompt)."""
    return subprocess.run(
        [sys.executable, "-m", "kaiwa.cli", "chat", *args],
        cwd=server.root,
        env={**chat_env(server, **settings), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


class Terminal:
    def __init__(
        self,
        server: Any,
        *args: str,
        agent_id: str | None = None,
        lang: str = "en",
        env: dict[str, str] | None = None,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        command = [sys.executable, "-m", "kaiwa.cli", "chat", *args]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CONTROLLING_TTY, sys.executable, *command[1:]],
            cwd=server.root,
            env={**chat_env(server, agent_id=agent_id, lang=lang), **(env or {})},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.closed = False

    @property
    def screen(self) -> str:
        """Everything written so far, without escapes and carriage returns."""
        return ANSI.sub("", self.text).replace("\r", "")

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def display(self) -> list[str]:
        """The lines a person sees (and can scroll back to), as the terminal drew them."""
        screen = Screen(ROWS, COLUMNS)
        screen.feed(self.text)
        return screen.lines()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = DEADLINE) -> int:
        """Wait until `pattern` (a regex) shows at or after `after`; returns where it ends."""
        return self.wait_match(pattern, after=after, timeout=timeout).end()

    def wait_match(
        self, pattern: str, *, after: int = 0, timeout: float = DEADLINE
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.screen, after)
            if found:
                return found
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


class Screen:
    """Just enough of a VT100 for rich's live display: printing with wide characters and the
    deferred wrap at the last column, CR, LF, cursor up/down/left/right/column, erase in line and
    below. Lines scrolled off the top stay (as scrollback) and the cursor cannot go up into them,
    as on a real terminal."""

    _CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")

    def __init__(self, rows: int, columns: int) -> None:
        self.rows, self.columns = rows, columns
        self._lines: list[list[str]] = [[]]
        self._row = 0
        self._col = 0
        """`columns` means: at the last column, wrapping before the next character."""

    def lines(self) -> list[str]:
        return ["".join(cells).rstrip() for cells in self._lines]

    def feed(self, text: str) -> None:
        at = 0
        while at < len(text):
            if (csi := self._CSI.match(text, at)) is not None:
                self._control(csi.group(1), csi.group(2))
                at = csi.end()
            elif (escape := ANSI.match(text, at)) is not None:
                at = escape.end()  # other escapes move nothing here
            else:
                self._char(text[at])
                at += 1

    def _char(self, char: str) -> None:
        if char == "\r":
            self._col = 0
        elif char == "\n":
            self._down(1)
        elif char == "\b":
            self._col = max(min(self._col, self.columns - 1) - 1, 0)
        elif char >= " " and not unicodedata.combining(char):
            width = 2 if unicodedata.east_asian_width(char) in "WF" else 1
            if self._col + width > self.columns:
                self._col = 0
                self._down(1)
            line = self._line()
            line[self._col : self._col + width] = [char] + [""] * (width - 1)
            self._col += width

    def _control(self, params: str, final: str) -> None:
        number = int(params) if params.isdigit() else 0
        col = min(self._col, self.columns - 1)
        if final == "A":
            self._row = max(self._row - max(number, 1), self._top())
            self._col = col
        elif final == "B":
            self._down(max(number, 1))
            self._col = col
        elif final == "C":
            self._col = min(col + max(number, 1), self.columns - 1)
        elif final == "D":
            self._col = max(col - max(number, 1), 0)
        elif final == "G":
            self._col = min(max(number, 1), self.columns) - 1
        elif final == "K":
            line = self._line()
            if number == 0:
                line[col:] = [" "] * (self.columns - col)
            elif number == 1:
                line[: col + 1] = [" "] * (col + 1)
            else:
                line[:] = [" "] * self.columns
        elif final == "J" and number == 0:
            self._line()[col:] = [" "] * (self.columns - col)
            del self._lines[self._row + 1 :]

    def _top(self) -> int:
        return max(len(self._lines) - self.rows, 0)

    def _down(self, count: int) -> None:
        self._row += count
        while len(self._lines) <= self._row:
            self._lines.append([])

    def _line(self) -> list[str]:
        line = self._lines[self._row]
        if len(line) < self.columns:
            line.extend([" "] * (self.columns - len(line)))
        return line
