"""One chat with one agent over `kaiwa.client`: pick the agent and the chat, ask, stop.

    session = Session.open(client, agent="受付", chat_id=None, choose=ask_user)  # name or id
    session.attach(["配送メモ.txt"])             # uploaded now, sent with the next question
    turn = session.ask("営業時間は?", view)       # the chat is created here, with the question
    turn.state.text, turn.state.usage, turn.stopped
    if turn.form is not None:                  # the answer waits for a form
        turn = session.submit(turn, values, view)

Rendering is the view's business (`View`): this module decides only what happens, so the rich
terminal view, the JSON lines and `--once` share one way of asking and of stopping. Its failures
before an answer are `ChatError`s carrying data (`kaiwa.chat.errors` words them).

A chat is created only when its first question is sent, so that starting `kaiwa chat` and
leaving leaves no empty chat behind (nor does `/new`).

Deliberate oddity: Ctrl-C is taken as the `KeyboardInterrupt` it raises wherever the stream is
blocked. That kills the stream's connection, so after `cancel()` the rest of the answer (up to
its `cancelled` end) is read again from the response's events endpoint, after the last event seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import JsonValue

from kaiwa.chat.errors import AgentMismatch, AmbiguousAgent, NoAgent, UnknownAgent, UnknownChat
from kaiwa.client import (
    Agent,
    Client,
    FormRequest,
    Message,
    Stream,
    StreamError,
    UploadedFile,
)
from kaiwa.protocol import Event, ResponseState

CHAT_NAME = "kaiwa chat"
"""Until the first answer's title renames it."""

Choose = Callable[[Sequence[Agent]], Agent]
"""Picks one of several published agents (asks the user, or refuses)."""


class View(Protocol):
    """Shows a chat's earlier messages, and one answer as its events arrive."""

    def history(self, messages: Sequence[Message], earlier: int) -> None:
        """`earlier`: how many messages came before the ones given."""

    def begin(self) -> None: ...

    def show(self, event: Event, state: ResponseState) -> None:
        """`state` already includes `event`."""

    def end(self, state: ResponseState, *, stopped: bool) -> None: ...


@dataclass
class Turn:
    state: ResponseState
    stopped: bool
    """Stopped by the user (Ctrl-C) or ended `cancelled` by the server."""

    @property
    def form(self) -> FormRequest | None:
        """The form the answer ended waiting for (`awaiting_form`), if any."""
        return FormRequest.from_state(self.state)


class Session:
    def __init__(
        self, client: Client, agent: Agent, chat_id: int | None = None, chat_name: str = ""
    ) -> None:
        self.client = client
        self.agent = agent
        self.chat_id = chat_id
        """None until the first question creates the chat."""
        self.chat_name = chat_name
        self.attached: list[UploadedFile] = []
        """Uploaded, to be sent with the next question."""

    @classmethod
    def open(
        cls, client: Client, *, agent: str | None, chat_id: int | None, choose: Choose
    ) -> Session:
        """The agent named (by id or name), else the chat's, else the only published one, else
        the one `choose` picks; the chat `chat_id` continued, else none yet."""
        published = client.chats.published_agents()
        wanted = find_agent(published, agent) if agent else None
        if chat_id is not None:
            chat = next((chat for chat in client.chats.iter_all() if chat.id == chat_id), None)
            if chat is None:
                raise UnknownChat(chat_id)
            if (own := chat.meta.conversation_agent_id) is not None:
                # An agent no longer published is named by its id; the server says why it fails.
                chat_agent = next((a for a in published if a.id == own), Agent(id=own, name=own))
                if wanted is not None and wanted.id != chat_agent.id:
                    raise AgentMismatch(chat_id, chat_agent, wanted)
                return cls(client, chat_agent, chat.id, chat.name)
        if wanted is None:
            if not published:
                raise NoAgent()
            wanted = published[0] if len(published) == 1 else choose(published)
        return cls(client, wanted, chat_id)

    def new_chat(self) -> None:
        """The next question starts a new chat."""
        self.chat_id, self.chat_name = None, ""

    def history(self, limit: int) -> tuple[list[Message], int]:
        """The chat's last `limit` messages (answers replaced by a regenerated one left out),
        and how many messages came before them."""
        if self.chat_id is None:
            return [], 0
        page = self.client.messages.list(self.chat_id, limit=limit)
        total = page.pagination.total_records if page.pagination else len(page.items)
        if total > limit:
            page = self.client.messages.list(self.chat_id, limit=limit, offset=total - limit)
        return [m for m in page.items if not m.meta.superseded], max(total - limit, 0)

    def attach(self, paths: Iterable[str | Path]) -> list[UploadedFile]:
        """Upload files to go with the next question. Raises `OSError` for an unreadable path."""
        uploaded = [self.client.files.upload(Path(path)) for path in paths]
        self.attached.extend(uploaded)
        return uploaded

    def ask(self, question: str, view: View) -> Turn:
        """Stream the answer into `view`. A failed answer is in `state.error`; an error before
        the stream started (bad key, busy chat, …) raises its `KaiwaError`, with nothing shown."""
        if self.chat_id is None:
            self.chat_id = self.client.chats.create(name=CHAT_NAME, agent_id=self.agent.id).id
        files = [file.uuid for file in self.attached]
        stream = self.client.messages.stream(
            self.chat_id, question, agent_id=self.agent.id, attached_file_uuids=files or None
        )
        turn = self._answer(stream, view, ResponseState())
        self.attached = []
        return turn

    def submit(self, turn: Turn, values: dict[str, JsonValue], view: View) -> Turn:
        """Submit the form `turn` waits for and stream the rest of the answer, as `ask` does. A
        refused value raises `BadRequestError` (its message names the field); a second submit
        `ConflictError`."""
        form = turn.form
        if form is None or self.chat_id is None:
            raise ValueError("this answer waits for no form")
        # The rest of the answer starts by ending the form step, which it never started: begin
        # with that step as the paused answer had it, so its fields label the values sent.
        state = ResponseState(steps=[dict(s) for s in turn.state.steps if s["id"] == form.step_id])
        stream = self.client.forms.stream(self.chat_id, form.id, values)
        return self._answer(stream, view, state)

    def _answer(self, stream: Stream, view: View, state: ResponseState) -> Turn:
        interrupted = False
        with contextlib.ExitStack() as opened:
            try:
                # The request goes out here: a refusal raises before the view shows anything.
                opened.enter_context(stream)
            except KeyboardInterrupt:
                return Turn(state, stopped=True)
            try:
                try:
                    view.begin()
                    _pump(stream, state, view)
                except KeyboardInterrupt:
                    interrupted = True
                    stream.close()
                    self._stop(stream, state, view)
            finally:
                view.end(state, stopped=interrupted or state.status == "cancelled")
        return Turn(state, interrupted or state.status == "cancelled")

    def _stop(self, stream: Stream, state: ResponseState, view: View) -> None:
        """Cancel through the stop endpoint, then read the answer's end (a second Ctrl-C
        gives up waiting for it)."""
        response_id = stream.response_id
        if response_id is None or state.done:
            return
        try:
            stream.cancel()
            follow = self.client.responses.stream(
                stream.chat_id, response_id, after=stream.last_event_id
            )
            with follow:
                _pump(follow, state, view)
        except KeyboardInterrupt:
            pass


def find_agent(published: Sequence[Agent], wanted: str) -> Agent:
    """The published agent with that id, else the one with that name (case-insensitive)."""
    key = wanted.strip().casefold()
    matches = [a for a in published if a.id.casefold() == key] or [
        a for a in published if a.name.strip().casefold() == key
    ]
    if len(matches) > 1:
        raise AmbiguousAgent(wanted, matches)
    if not matches:
        raise UnknownAgent(wanted, published)
    return matches[0]


def _pump(events: Iterable[Event], state: ResponseState, view: View) -> None:
    try:
        for event in events:
            state.apply(event)
            view.show(event, state)
    except StreamError as exc:
        state.apply(exc.event)
        view.show(exc.event, state)
