"""`kaiwa chat`: the interactive loop and `--once`, on top of `Session`.

    kaiwa chat                                  # the rich terminal chat (needs kaiwa[chat])
    kaiwa chat --once "営業時間は?"              # the answer's text only, for scripts
    kaiwa chat --json                           # events as JSON lines (also with --once)

Exit codes: 0 done (or left with /quit, Ctrl-D, Ctrl-C at the prompt); 1 an error (on stderr);
2 rich is missing for the interactive view; 130 `--once` stopped by Ctrl-C (the partial text is
printed).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Protocol

from kaiwa.chat.plain import JsonView, QuietView
from kaiwa.chat.session import Session, View
from kaiwa.client import Agent, APIError, Client, KaiwaError

if TYPE_CHECKING:
    from rich.console import Console

INSTALL_HINT = "kaiwa chat: the terminal chat needs rich: pip install 'kaiwa[chat]'"
HELP = "/new, /quit · Ctrl-C stops an answer"


@dataclass(frozen=True)
class Options:
    base_url: str | None = None
    """None: `KAIWA_BASE_URL`, else http://127.0.0.1:8000 (the client's defaults)."""
    api_key: str | None = None
    """None: `KAIWA_API_KEY`."""
    agent_id: str | None = None
    chat_id: int | None = None
    once: str | None = None
    json: bool = False


def run(options: Options) -> int:
    rich_view = options.once is None and not options.json
    if rich_view and find_spec("rich") is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        with Client(base_url=options.base_url, api_key=options.api_key) as client:
            if options.once is not None:
                return _once(client, options, options.once)
            if options.json:
                return _interactive(client, options, JsonView(), _Plain())
            return _rich(client, options)
    except KaiwaError as exc:
        print(f"kaiwa chat: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before an answer started (opening the chat, with --once)
        return 130


def _once(client: Client, options: Options, question: str) -> int:
    session = Session.open(
        client, agent_id=options.agent_id, chat_id=options.chat_id, choose=_refuse
    )
    view: View = JsonView() if options.json else QuietView()
    turn = session.ask(question, view)
    if turn.state.error is not None:
        error = turn.state.error
        print(f"kaiwa chat: {error.message} (error_code {error.code})", file=sys.stderr)
        return 1
    if not options.json:
        print(turn.state.text)
    return 130 if turn.stopped else 0


def _refuse(agents: Sequence[Agent]) -> Agent:
    names = ", ".join(f"{agent.id} ({agent.name})" for agent in agents)
    raise KaiwaError(f"several published agents, pass --agent or KAIWA_AGENT_ID: {names}")


class Chrome(Protocol):
    """What the interactive loop needs around the answers: a prompt, notes, errors."""

    def prompt(self, text: str) -> str: ...

    def note(self, text: str) -> None: ...

    def error(self, code: int | None, message: str) -> None: ...


class _Plain:
    """The interactive chrome without rich: prompts and notes on stderr, so that stdout holds
    only JSON lines."""

    def prompt(self, text: str) -> str:
        sys.stderr.write(text)
        sys.stderr.flush()
        return input()

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)

    def error(self, code: int | None, message: str) -> None:
        label = f"error {code}: " if code is not None else "error: "
        print(label + message, file=sys.stderr)


class _Rich:
    def __init__(self, console: Console) -> None:
        from rich.text import Text

        self._console = console
        self._text = Text

    def prompt(self, text: str) -> str:
        return input(text)

    def note(self, text: str) -> None:
        self._console.print(self._text(text, style="dim"))

    def error(self, code: int | None, message: str) -> None:
        label = f"error {code}: " if code is not None else "error: "
        self._console.print(self._text(label + message, style="bold red"))


def _rich(client: Client, options: Options) -> int:
    from rich.console import Console

    from kaiwa.chat.view import RichView

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 (line editing for input())
    console = Console(highlight=False)
    return _interactive(client, options, RichView(console), _Rich(console))


def _interactive(client: Client, options: Options, view: View, chrome: Chrome) -> int:
    try:
        session = Session.open(
            client,
            agent_id=options.agent_id,
            chat_id=options.chat_id,
            choose=lambda agents: _choose(agents, chrome),
        )
    except (KeyboardInterrupt, EOFError):
        return 0
    chrome.note(f"agent {_agent_name(session)} · chat {session.chat_id} · {HELP}")
    while True:
        try:
            line = chrome.prompt("> ").strip()
        except (KeyboardInterrupt, EOFError):
            chrome.note("")
            return 0
        if not line:
            continue
        if line == "/quit":
            return 0
        if line == "/new":
            chrome.note(f"chat {session.new_chat()}")
            continue
        try:
            session.ask(line, view)
        except APIError as exc:
            chrome.error(exc.code, exc.message)
        except KaiwaError as exc:
            chrome.error(None, str(exc))


def _agent_name(session: Session) -> str:
    """The agent's name if it is published, else its id (a name is only for the eye)."""
    if session.agent_name != session.agent_id:
        return session.agent_name
    with contextlib.suppress(KaiwaError):
        for agent in session.client.chats.published_agents():
            if agent.id == session.agent_id:
                return agent.name
    return session.agent_id


def _choose(agents: Sequence[Agent], chrome: Chrome) -> Agent:
    for number, agent in enumerate(agents, 1):
        chrome.note(f"{number}. {agent.name}  ({agent.id})")
    while True:
        answer = chrome.prompt("agent number: ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(agents):
            return agents[int(answer) - 1]
