"""The rich terminal chat: a chat's earlier messages, and each answer live as it streams.

      ✓ Searched the knowledge base for “土曜日の営業時間” (2 results)
          営業時間
            当店の営業時間は平日の10時から18時までです。土曜日は11時から17時まで…
          料金
            Proプランの価格は月額2,000円です。…
      — 営業時間について —                       (the chat's title, when it comes)
      …the answer as markdown…
      (stopped)                                   (if Ctrl-C stopped it)
      412 tokens (380 in, 32 out) · 2 calls

Steps read as sentences in the chat's language (`steps.describe`). Everything the server sends is
shown as `Text`, never parsed as rich markup, except the answer, which is markdown by design.

Deliberate oddities, both so that an answer is drawn once, cleanly:

- While an answer streams, the keyboard does not echo. An echo (the `^C` of Ctrl-C above all)
  lands after the live region's last line; markdown lines fill the width, so it wraps onto a new
  line, and the region's next redraw, one line off, leaves a copy of a line behind.
- While an answer streams, only its last lines that fit the terminal are drawn (`_Tail`): the
  live region can only redraw what is on screen, so a taller one would leave copies of its top
  lines in the scrollback at every refresh. The whole answer is printed once when it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import cast

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.padding import Padding
from rich.segment import Segment
from rich.text import Text

from kaiwa.chat.lang import Texts
from kaiwa.chat.steps import Json, StepLine, StepState, describe
from kaiwa.client import Message
from kaiwa.protocol import ChatTitleUpdated, Event, ResponseState

REFRESH_PER_SECOND = 10
MARKS: dict[StepState, tuple[str, str, str]] = {
    # state: (mark, its style, the sentence's style)
    "running": ("…", "dim", "dim"),
    "waiting": ("?", "cyan", ""),
    "done": ("✓", "green", ""),
    "failed": ("✗", "red", ""),
    "interrupted": ("–", "yellow", "dim"),
}


class RichView:
    def __init__(self, console: Console, texts: Texts) -> None:
        self.console = console
        self.texts = texts
        self._live: Live | None = None
        self._echo_on: Callable[[], None] = _nothing

    def history(self, messages: Sequence[Message], earlier: int) -> None:
        if earlier:
            self.console.print(Text(self.texts.count(self.texts.earlier, earlier), style="dim"))
        # A form's step ends in the message after the one that asked: it keeps the fields (and
        # their labels) from there.
        known: dict[str, Json] = {}
        for message in messages:
            if message.role == "user":
                self.console.print(Text(f"> {message.content}", style="bold"))
                continue
            steps = []
            for step in message.meta.reasoning_steps or []:
                merged = {**known.get(str(step.get("id")), {}), **step}
                known[str(step.get("id"))] = merged
                steps.append(merged)
            waiting = message.meta.status == "awaiting_form"
            ended: StepState = "waiting" if waiting else "interrupted"
            self.console.print(self._answer(steps, message.content, ended))
            if message.meta.status == "cancelled":
                self.console.print(Text(self.texts.stopped, style="yellow"))

    def begin(self) -> None:
        self._echo_on = _echo_off()
        self._live = Live(
            _Tail(self._answer([], "", None)),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._live.start()

    def show(self, event: Event, state: ResponseState) -> None:
        if self._live is None:
            return
        if isinstance(event, ChatTitleUpdated):
            # Printed above the live region, so it stays where it appeared.
            self._live.console.print(Text(f"— {event.name} —", style="bold cyan"))
        self._live.update(_Tail(self._answer(state.steps, state.text, _ended(state, False))))

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        try:
            if self._live is not None:
                # Stopping draws it one last time, whole.
                self._live.update(self._answer(state.steps, state.text, _ended(state, stopped)))
                self._live.stop()
                self._live = None
        finally:
            self._echo_on()
            self._echo_on = _nothing
        if stopped:
            self.console.print(Text(self.texts.stopped, style="yellow"))
        if state.error is not None:
            self.console.print(error_text(self.texts, state.error.code, state.error.message))
        if state.done:
            usage = state.usage
            line = self.texts.usage.format(
                tokens=usage.total_tokens,
                prompt=usage.total_prompt_tokens,
                completion=usage.total_completion_tokens,
                calls=self.texts.count(self.texts.calls, usage.total_calls),
            )
            self.console.print(Text(line, style="dim"))

    def _answer(self, steps: Sequence[Json], text: str, ended: StepState | None) -> Group:
        parts: list[RenderableType] = [
            step_view(describe(step, self.texts, ended=ended), self.texts) for step in steps
        ]
        if text:
            parts.append(Markdown(text))
        elif ended is None:
            parts.append(Text("…", style="dim"))
        return Group(*parts)


class RichChrome:
    """Prompts, notes and errors around the answers."""

    def __init__(self, console: Console, texts: Texts) -> None:
        self._console = console
        self._texts = texts

    def prompt(self, text: str) -> str:
        return input(text)

    def note(self, text: str) -> None:
        self._console.print(Text(text, style="dim"))

    def error(self, code: int | None, message: str) -> None:
        self._console.print(error_text(self._texts, code, message))


def step_view(line: StepLine, texts: Texts) -> Group:
    """The sentence under its mark, then what was found, indented (wrapped lines too)."""
    mark, mark_style, style = MARKS[line.state]
    sentence = Text.assemble((mark, mark_style), " ", (line.sentence, style))
    parts = [Padding(sentence, (0, 0, 0, 2))]
    for item in line.items:
        parts.append(Padding(Text(item.head, style="bold"), (0, 0, 0, 6)))
        if item.detail:
            parts.append(Padding(Text(item.detail, style="dim"), (0, 0, 0, 8)))
    if line.more:
        parts.append(Padding(Text(texts.more.format(n=line.more), style="dim"), (0, 0, 0, 6)))
    return Group(*parts)


def error_text(texts: Texts, code: int | None, message: str) -> Text:
    return Text(texts.error_label(code) + message, style="bold red")


def _ended(state: ResponseState, stopped: bool) -> StepState | None:
    """How steps without a result are shown: None while the answer streams."""
    if not (state.done or stopped):
        return None
    return "waiting" if state.status == "awaiting_form" else "interrupted"


class _Tail:
    """The last lines of a renderable that fit the terminal (see the module's oddities)."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        for line in lines[-max(options.size.height - 1, 1) :]:
            yield from line
            yield Segment.line()


def _echo_off() -> Callable[[], None]:
    """Stop the terminal echoing typed keys (see the module's oddities); returns what turns it
    back on. Ctrl-C still interrupts, and keys typed meanwhile still reach the next prompt."""
    if sys.platform == "win32" or not sys.stdin.isatty():
        return _nothing
    import termios

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] = cast(int, quiet[3]) & ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    return lambda: termios.tcsetattr(fd, termios.TCSANOW, saved)


def _nothing() -> None:
    pass
