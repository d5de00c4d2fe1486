"""One chat with one agent over `kaiwa.client`: pick the agent, open the chat, ask, stop.

    session = Session.open(client, agent_id=None, chat_id=None, choose=ask_user)
    session.attach(["配送メモ.txt"])             # uploaded now, sent with the next question
    turn = session.ask("営業時間は?", view)       # Ctrl-C inside: the answer is stopped
    turn.state.text, turn.state.usage, turn.stopped
    if (form := turn.form) is not None:        # the answer waits for a form
        turn = session.submit(form, values, view)

Rendering is the view's business (`View`): this module decides only what happens, so the rich
terminal view, the JSON lines and `--once` share one way of asking and of stopping.

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

from kaiwa.client import Agent, Client, FormRequest, KaiwaError, Stream, StreamError, UploadedFile
from kaiwa.protocol import Event, ResponseState

CHAT_NAME = "kaiwa chat"

Choose = Callable[[Sequence[Agent]], Agent]
"""Picks one of several published agents (asks the user, or refuses)."""


class View(Protocol):
    """Shows one answer as its events arrive."""

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
    def __init__(self, client: Client, agent_id: str, chat_id: int, agent_name: str = "") -> None:
        self.client = client
        self.agent_id = agent_id
        self.agent_name = agent_name or agent_id
        self.chat_id = chat_id
        self.attached: list[UploadedFile] = []
        """Uploaded, to be sent with the next question."""

    @classmethod
    def open(
        cls, client: Client, *, agent_id: str | None, chat_id: int | None, choose: Choose
    ) -> Session:
        """Resolve the agent (given, the only published one, or `choose`n) and the chat."""
        if agent_id is not None:
            session = cls(client, agent_id, chat_id or 0)
        else:
            agents = client.chats.published_agents()
            if not agents:
                raise KaiwaError("No published agent: publish one, or pass --agent")
            agent = agents[0] if len(agents) == 1 else choose(agents)
            session = cls(client, agent.id, chat_id or 0, agent.name)
        if chat_id is None:
            session.new_chat()
        return session

    def new_chat(self) -> int:
        self.chat_id = self.client.chats.create(name=CHAT_NAME, agent_id=self.agent_id).id
        return self.chat_id

    def attach(self, paths: Iterable[str | Path]) -> list[UploadedFile]:
        """Upload files to go with the next question. Raises `OSError` for an unreadable path."""
        uploaded = [self.client.files.upload(Path(path)) for path in paths]
        self.attached.extend(uploaded)
        return uploaded

    def ask(self, question: str, view: View) -> Turn:
        """Stream the answer into `view`. A failed answer is in `state.error`; an error before
        the stream started (bad key, busy chat, …) raises its `KaiwaError`, with nothing shown."""
        files = [file.uuid for file in self.attached]
        stream = self.client.messages.stream(
            self.chat_id, question, agent_id=self.agent_id, attached_file_uuids=files or None
        )
        turn = self._answer(stream, view)
        self.attached = []
        return turn

    def submit(self, form: FormRequest, values: dict[str, JsonValue], view: View) -> Turn:
        """Submit a form and stream the rest of the answer, as `ask` does. A refused value
        raises `BadRequestError` (its message names the field); a second submit `ConflictError`."""
        return self._answer(self.client.forms.stream(self.chat_id, form.id, values), view)

    def _answer(self, stream: Stream, view: View) -> Turn:
        state = ResponseState()
        interrupted = False
        with contextlib.ExitStack() as opened:
            try:
                # The request goes out here: a refusal raises before the view shows anything.
                opened.enter_context(stream)
            except KeyboardInterrupt:
                return Turn(state, stopped=True)
            view.begin()
            try:
                try:
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
                self.chat_id, response_id, after=stream.last_event_id
            )
            with follow:
                _pump(follow, state, view)
        except KeyboardInterrupt:
            pass


def _pump(events: Iterable[Event], state: ResponseState, view: View) -> None:
    try:
        for event in events:
            state.apply(event)
            view.show(event, state)
    except StreamError as exc:
        state.apply(exc.event)
        view.show(exc.event, state)
