"""`kaiwa chat`: the interactive loop and `--once`, on top of `Session`.

    kaiwa chat                                  # the rich terminal chat (needs kaiwa[chat])
    kaiwa chat --once "営業時間は?"              # the answer's text only, for scripts
    kaiwa chat --json                           # events as JSON lines (also with --once)
    kaiwa chat --attach メモ.txt                 # uploaded, sent with the first question

When an answer asks for a form, the interactive chat prompts for its fields (`form`), submits
them and shows the rest of the answer. `--once` cannot prompt: it prints the text so far, then
the form request as one JSON line on stderr, and exits 3 — answer it through the API
(`client.forms.submit`) with the `chat_id` and `form_request_id` given there.

Exit codes: 0 done (or left with /quit, Ctrl-D, Ctrl-C at the prompt); 1 an error (on stderr);
2 rich is missing for the interactive view; 3 `--once` ended on a form request; 130 `--once`
stopped by Ctrl-C (the partial text is printed).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Protocol

from kaiwa.chat import form as forms
from kaiwa.chat.plain import JsonView, QuietView
from kaiwa.chat.session import Session, Turn, View
from kaiwa.client import (
    Agent,
    APIError,
    BadRequestError,
    Client,
    ConflictError,
    FormRequest,
    KaiwaError,
)

if TYPE_CHECKING:
    from rich.console import Console

INSTALL_HINT = "kaiwa chat: the terminal chat needs rich: pip install 'kaiwa[chat]'"
HELP = "/new, /quit · Ctrl-C stops an answer"
EXIT_ERROR = 1
EXIT_FORM = 3
"""`--once` ended on a form request (printed on stderr as JSON)."""
EXIT_INTERRUPTED = 130


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
    attach: tuple[str, ...] = ()
    """Files to upload and attach to the first question."""


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
        return EXIT_ERROR
    except OSError as exc:  # an --attach path that cannot be read
        print(f"kaiwa chat: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # before an answer started (opening the chat, with --once)
        return EXIT_INTERRUPTED


def _once(client: Client, options: Options, question: str) -> int:
    session = Session.open(
        client, agent_id=options.agent_id, chat_id=options.chat_id, choose=_refuse
    )
    session.attach(options.attach)
    view: View = JsonView() if options.json else QuietView()
    turn = session.ask(question, view)
    if turn.state.error is not None:
        error = turn.state.error
        print(f"kaiwa chat: {error.message} (error_code {error.code})", file=sys.stderr)
        return EXIT_ERROR
    if not options.json:
        print(turn.state.text)
    if (form := turn.form) is not None:
        print(form_json(session.chat_id, turn, form), file=sys.stderr)
        return EXIT_FORM
    return EXIT_INTERRUPTED if turn.stopped else 0


def form_json(chat_id: int, turn: Turn, form: FormRequest) -> str:
    """The form request for a script: where to submit it, and its fields."""
    return json.dumps(
        {
            "type": "form_request",
            "chat_id": chat_id,
            "response_id": turn.state.response_id,
            "form_request_id": form.id,
            "title": form.title,
            "fields": [field.model_dump(mode="json", exclude_none=True) for field in form.fields],
            "submit": f"POST /api/v1/chats/{chat_id}/form-requests/{form.id}/submit",
        },
        ensure_ascii=False,
    )


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
    for file in session.attach(options.attach):
        chrome.note(f"attached {file.original_name} ({file.size} bytes) to the first question")
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
            turn: Turn | None = session.ask(line, view)
            while turn is not None and (form := turn.form) is not None:
                turn = _answer_form(session, form, view, chrome)
        except APIError as exc:
            chrome.error(exc.code, exc.message)
        except KaiwaError as exc:
            chrome.error(None, str(exc))


def _answer_form(session: Session, form: FormRequest, view: View, chrome: Chrome) -> Turn | None:
    """Prompt for the form, submit it, stream the rest: the new turn, or None if the user gave
    the form up (the answer goes on waiting for it) or it was answered elsewhere."""
    try:
        values = forms.fill(form, chrome)
        while True:
            try:
                return session.submit(form, values, view)
            except BadRequestError as exc:
                field = forms.field_named(form, exc.message)
                chrome.error(exc.code, exc.message)
                if field is None:
                    return None
                value = forms.ask(field, chrome)
                values.pop(field.name, None)
                if value is not None:
                    values[field.name] = value
            except ConflictError as exc:  # submitted already, from elsewhere
                chrome.error(exc.code, exc.message)
                return None
    except forms.FormAbandoned:
        chrome.note("")
        chrome.note("form not sent: the answer waits for it")
        return None


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
