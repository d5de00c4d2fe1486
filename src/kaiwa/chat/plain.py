"""What needs nothing but `print`: JSON lines, silence for `--once`, and the chrome of `--json`.

kaiwa chat --once "営業時間は?"          # QuietView: only the final text, printed after
kaiwa chat --once "営業時間は?" --json   # JsonView: one event per line, as it arrives
kaiwa chat --json                       # JsonView, with PlainChrome's prompts on stderr
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from kaiwa.chat.lang import Texts
from kaiwa.client import Message
from kaiwa.protocol import Event, ResponseState


class JsonView:
    """Each event as one JSON line (`event.model_dump_json()`), flushed at once."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def history(self, messages: Sequence[Message], earlier: int) -> None:
        pass  # stdout holds the events of this session's answers only

    def begin(self) -> None:
        pass

    def show(self, event: Event, state: ResponseState) -> None:
        self._out.write(event.model_dump_json() + "\n")
        self._out.flush()

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        pass


class QuietView:
    """Shows nothing while the answer streams; the caller prints what it wants at the end."""

    def history(self, messages: Sequence[Message], earlier: int) -> None:
        pass

    def begin(self) -> None:
        pass

    def show(self, event: Event, state: ResponseState) -> None:
        pass

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        pass


class PlainChrome:
    """Prompts, notes and errors on stderr, so that stdout holds only JSON lines."""

    def __init__(self, texts: Texts) -> None:
        self._texts = texts

    def prompt(self, text: str) -> str:
        sys.stderr.write(text)
        sys.stderr.flush()
        return input()

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)

    def error(self, code: int | None, message: str) -> None:
        print(self._texts.error_label(code) + message, file=sys.stderr)
