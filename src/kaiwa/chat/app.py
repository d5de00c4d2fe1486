"""`kaiwa chat`: the interactive loop and `--once`, on top of `Session`.

    kaiwa chat                                  # the rich terminal chat (needs kaiwa[chat])
    kaiwa chat --agent 受付                      # an agent by name (or id)
    kaiwa chat --chat 12                        # go on with chat 12, its last messages shown
    kaiwa chat --once "営業時間は?"              # the answer's text only, for scripts
    kaiwa chat --json                           # events as JSON lines (also with --once)
    kaiwa chat --attach メモ.txt                 # uploaded, sent with the first question
    kaiwa chat --lang ja                        # else the language of LC_ALL, LC_MESSAGES, LANG

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
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Protocol

from kaiwa.chat import form as forms
from kaiwa.chat.errors import SeveralAgents, explain, server_url
from kaiwa.chat.lang import Lang, Texts, catalogue, detect
from kaiwa.chat.plain import JsonView, PlainChrome, QuietView
from kaiwa.chat.session import Session, Turn, View
from kaiwa.client import (
    Agent,
    BadRequestError,
    Client,
    ConflictError,
    FormRequest,
    KaiwaError,
)

EXIT_ERROR = 1
EXIT_NO_RICH = 2
EXIT_FORM = 3
"""`--once` ended on a form request (printed on stderr as JSON)."""
EXIT_INTERRUPTED = 130
HISTORY_MESSAGES = 20
"""How many of a continued chat's last messages are shown."""


@dataclass(frozen=True)
class Options:
    base_url: str | None = None
    """None: `KAIWA_BASE_URL`, else http://127.0.0.1:8000 (the client's defaults)."""
    api_key: str | None = None
    """None: `KAIWA_API_KEY`."""
    agent: str | None = None
    """An id or a name. None: the chat's (`chat_id`), the only published one, or ask."""
    chat_id: int | None = None
    once: str | None = None
    json: bool = False
    attach: tuple[str, ...] = ()
    """Files to upload and attach to the first question."""
    lang: Lang | None = None
    """None: the terminal's (`lang.detect`)."""


class Chrome(forms.Prompter, Protocol):
    """What the interactive loop needs around the answers: prompts, notes, errors."""

    def error(self, code: int | None, message: str) -> None: ...


def run(options: Options) -> int:
    texts = catalogue(options.lang or detect(os.environ))
    if options.once is None and not options.json and find_spec("rich") is None:
        print(texts.install_hint, file=sys.stderr)
        return EXIT_NO_RICH
    # Checked here, not by the client: its message speaks to Python callers (`api_key=…`).
    api_key = options.api_key if options.api_key is not None else os.environ.get("KAIWA_API_KEY")
    if not api_key:
        return _fail(texts.no_key)
    with Client(base_url=options.base_url, api_key=api_key) as client:
        try:
            if options.once is not None:
                return _once(client, options, texts, options.once)
            if options.json:
                return _interactive(client, options, texts, JsonView(), PlainChrome(texts))
            return _rich(client, options, texts)
        except KaiwaError as exc:
            return _fail(explain(exc, texts, server_url(client)))
        except OSError as exc:  # an --attach path that cannot be read
            return _fail(str(exc))
        except KeyboardInterrupt:  # before an answer started (opening the chat, with --once)
            return EXIT_INTERRUPTED


def _fail(message: str) -> int:
    print(f"kaiwa chat: {message}", file=sys.stderr)
    return EXIT_ERROR


def _open(client: Client, options: Options, chrome: Chrome | None, texts: Texts) -> Session:
    """The session; with no `chrome` to ask, several published agents are an error."""

    def choose(agents: Sequence[Agent]) -> Agent:
        if chrome is None:
            raise SeveralAgents(agents)
        return _choose(agents, chrome, texts)

    return Session.open(client, agent=options.agent, chat_id=options.chat_id, choose=choose)


def _once(client: Client, options: Options, texts: Texts, question: str) -> int:
    session = _open(client, options, None, texts)
    session.attach(options.attach)
    view: View = JsonView() if options.json else QuietView()
    turn = session.ask(question, view)
    if turn.state.error is not None:
        error = turn.state.error
        return _fail(f"{error.message} (error_code {error.code})")
    if not options.json:
        print(turn.state.text)
    if (form := turn.form) is not None and session.chat_id is not None:
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


def _rich(client: Client, options: Options, texts: Texts) -> int:
    from rich.console import Console

    from kaiwa.chat.view import RichChrome, RichView

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 (line editing for input())
    console = Console(highlight=False)
    view, chrome = RichView(console, texts), RichChrome(console, texts)
    return _interactive(client, options, texts, view, chrome)


def _interactive(client: Client, options: Options, texts: Texts, view: View, chrome: Chrome) -> int:
    try:
        session = _open(client, options, chrome, texts)
    except (KeyboardInterrupt, EOFError):
        return 0
    chat = texts.new_chat
    if session.chat_id is not None:
        chat = texts.chat_named.format(id=session.chat_id, name=session.chat_name)
    chrome.note(texts.header.format(agent=session.agent.name, chat=chat))
    view.history(*session.history(HISTORY_MESSAGES))
    for file in session.attach(options.attach):
        chrome.note(texts.attached.format(name=file.original_name, size=file.size))
    url = server_url(client)
    used = session.chat_id  # the chat to continue another time: the last one asked in
    while True:
        try:
            line = chrome.prompt("> ").strip()
        except (KeyboardInterrupt, EOFError):
            chrome.note("")
            break
        if line == "/quit":
            break
        if line == "/new":
            session.new_chat()
            chrome.note(texts.started_new)
        elif line:
            try:
                turn: Turn | None = session.ask(line, view)
                while turn is not None and turn.form is not None:
                    turn = _answer_form(session, turn, view, chrome, texts)
            except KaiwaError as exc:
                chrome.error(None, explain(exc, texts, url))
            except KeyboardInterrupt:  # before the answer started: creating the chat
                chrome.note("")
            used = session.chat_id or used
    if used is not None:
        chrome.note(texts.continue_later.format(id=used))
    return 0


def _answer_form(
    session: Session, turn: Turn, view: View, chrome: Chrome, texts: Texts
) -> Turn | None:
    """Prompt for the form `turn` waits for, submit it, stream the rest: the new turn, or None
    if the user gave the form up (the answer goes on waiting for it) or it was answered
    elsewhere."""
    form = turn.form
    if form is None:
        return None
    try:
        values = forms.fill(form, chrome, texts)
        while True:
            try:
                return session.submit(turn, values, view)
            except BadRequestError as exc:
                field = forms.field_named(form, exc.message)
                chrome.error(exc.code, exc.message)
                if field is None:
                    return None
                value = forms.ask(field, chrome, texts)
                values.pop(field.name, None)
                if value is not None:
                    values[field.name] = value
            except ConflictError as exc:  # submitted already, from elsewhere
                chrome.error(exc.code, exc.message)
                return None
    except forms.FormAbandoned:
        chrome.note("")
        chrome.note(texts.form_not_sent)
        return None


def _choose(agents: Sequence[Agent], chrome: Chrome, texts: Texts) -> Agent:
    for number, agent in enumerate(agents, 1):
        chrome.note(f"{number}. {agent.name}  ({agent.id})")
    while True:
        answer = chrome.prompt(texts.choose_agent).strip()
        if answer.isdigit() and 1 <= int(answer) <= len(agents):
            return agents[int(answer) - 1]
