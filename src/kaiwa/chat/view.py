"""The rich terminal view of one answer: live markdown, reasoning steps, title, usage.

    ⠿ live while streaming (≈10 fps):       after the answer:
      • 資料を検索しています                     — 営業時間について —   (the title, when it comes)
        ✓ 3 items                             …the answer as markdown…
      …the answer so far as markdown…         (stopped)               (if Ctrl-C stopped it)
                                              412 tokens (380 in, 32 out) · 2 calls

Everything the server sends is shown as `Text`, never parsed as rich markup, except the answer,
which is markdown by design.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from kaiwa.protocol import ChatTitleUpdated, Event, ResponseState, TokenUsage

REFRESH_PER_SECOND = 10
SUMMARY_CHARS = 80


class RichView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None

    def begin(self) -> None:
        self._live = Live(
            _answer(ResponseState()),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
            vertical_overflow="visible",
        )
        self._live.start()

    def show(self, event: Event, state: ResponseState) -> None:
        if self._live is None:
            return
        if isinstance(event, ChatTitleUpdated):
            # Printed above the live region, so it stays where it appeared.
            self._live.console.print(Text(f"— {event.name} —", style="bold cyan"))
        self._live.update(_answer(state))

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        if self._live is not None:
            self._live.update(_answer(state), refresh=True)
            self._live.stop()
            self._live = None
        if stopped:
            self.console.print(Text("(stopped)", style="yellow"))
        if state.error is not None:
            self.error(state.error.code, state.error.message)
        if state.done:
            self.console.print(Text(usage_line(state.usage), style="dim"))

    def error(self, code: int | None, message: str) -> None:
        label = f"error {code}: " if code is not None else "error: "
        self.console.print(Text(label + message, style="bold red"))


def _answer(state: ResponseState) -> RenderableType:
    parts: list[RenderableType] = [_step(step) for step in state.steps]
    if state.text:
        parts.append(Markdown(state.text))
    elif not state.done:
        parts.append(Text("…", style="dim"))
    return Group(*parts)


def _step(step: dict[str, Any]) -> Text:
    line = Text(f"  • {step.get('content', '')}", style="dim")
    result = step.get("result")
    if isinstance(result, dict):
        ok = bool(result.get("success"))
        line.append("\n    ")
        line.append("✓" if ok else "✗", style="green" if ok else "red")
        summary = summarize(result.get("data"))
        if summary:
            line.append(f" {summary}", style="dim")
    return line


def summarize(data: Any) -> str:
    """One short line for a step's result data.

    >>> summarize(["a", "b"]), summarize("見つかりました\\n詳細"), summarize(None)
    ('2 items', '見つかりました', '')
    """
    if data is None or data == "":
        return ""
    if isinstance(data, str):
        text = data.strip().splitlines()[0] if data.strip() else ""
    elif isinstance(data, list):
        return f"{len(data)} item" + ("" if len(data) == 1 else "s")
    else:
        text = json.dumps(data, ensure_ascii=False, default=str)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def usage_line(usage: TokenUsage) -> str:
    calls = f"{usage.total_calls} call" + ("" if usage.total_calls == 1 else "s")
    return (
        f"{usage.total_tokens} tokens ({usage.total_prompt_tokens} in, "
        f"{usage.total_completion_tokens} out) · {calls}"
    )
