"""One chat with one agent over `kaiwa.client`: pick the agent, open the chat, ask, stop.

    session = Session.open(client, agent_id=None, chat_id=None, choose=ask_user)
    turn = session.ask("営業時間は?", view)       # Ctrl-C inside: the answer is stopped
    turn.state.text, turn.state.usage, turn.stopped

Rendering is the view's business (`View`): this module decides only what happens, so the rich
terminal view, the JSON lines and `--once` share one way of asking and of stopping.

Deliberate oddity: Ctrl-C is taken as the `KeyboardInterrupt` it raises wherever the stream is
blocked. That kills the stream's connection, so after `cancel()` the rest of the answer (up to
its `cancelled` end) is read again from the response's events endpoint, after the last event seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kaiwa.client import Agent, Client, KaiwaError, Stream, StreamError
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


class Session:
    def __init__(self, client: Client, agent_id: str, chat_id: int, agent_name: str = "") -> None:
        self.client = client
        self.agent_id = agent_id
        self.agent_name = agent_name or agent_id
        self.chat_id = chat_id

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

    def ask(self, question: str, view: View) -> Turn:
        """Stream the answer into `view`. A failed answer is in `state.error`; an error before
        the stream started (bad key, busy chat, …) raises its `KaiwaError`."""
        state = ResponseState()
        interrupted = False
        stream = self.client.messages.stream(self.chat_id, question, agent_id=self.agent_id)
        view.begin()
        try:
            try:
                with stream:
                    _pump(stream, state, view)
            except KeyboardInterrupt:
                interrupted = True
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
