"""What went wrong, in the user's language and with what to do about it.

    try:
        session = Session.open(client, agent="受付", chat_id=None, choose=refuse)
    except KaiwaError as exc:
        print("kaiwa chat:", explain(exc, texts, server_url(client)), file=sys.stderr)

The chat's own errors (`ChatError`) carry data, not sentences; `explain` is the one place that
words them, and the client's errors too: a refused key and an unreachable server name the URL
tried and the flag or variable to change, as a person at a terminal needs it (the client's own
messages speak to Python callers: `api_key=…`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from kaiwa.chat.lang import Texts
from kaiwa.client import (
    Agent,
    APIConnectionError,
    APIError,
    Client,
    KaiwaError,
    PermissionDeniedError,
)

API_PREFIX = "/api/v1"


class ChatError(KaiwaError, ABC):
    """A failure of the chat itself, before any answer: worded by `words`."""

    @abstractmethod
    def words(self, texts: Texts, url: str) -> str:
        """The failure in the user's language, naming `url` where it helps."""


@dataclass(eq=False)
class NoAgent(ChatError):
    """The server has no published agent to chat with."""

    def words(self, texts: Texts, url: str) -> str:
        return texts.no_agent.format(url=url)


@dataclass(eq=False)
class UnknownAgent(ChatError):
    wanted: str
    published: Sequence[Agent]

    def words(self, texts: Texts, url: str) -> str:
        return texts.unknown_agent.format(agent=self.wanted, agents=agent_list(self.published))


@dataclass(eq=False)
class AmbiguousAgent(ChatError):
    wanted: str
    candidates: Sequence[Agent]

    def words(self, texts: Texts, url: str) -> str:
        return texts.ambiguous_agent.format(agent=self.wanted, agents=agent_list(self.candidates))


@dataclass(eq=False)
class SeveralAgents(ChatError):
    """Several published agents and nobody to choose (`--once`)."""

    agents: Sequence[Agent]

    def words(self, texts: Texts, url: str) -> str:
        return texts.several_agents.format(agents=agent_list(self.agents))


@dataclass(eq=False)
class UnknownChat(ChatError):
    chat_id: int

    def words(self, texts: Texts, url: str) -> str:
        return texts.unknown_chat.format(id=self.chat_id, url=url)


@dataclass(eq=False)
class AgentMismatch(ChatError):
    """`--agent` names another agent than the one of the chat `--chat` continues."""

    chat_id: int
    chat_agent: Agent
    agent: Agent

    def words(self, texts: Texts, url: str) -> str:
        return texts.agent_mismatch.format(
            id=self.chat_id, chat_agent=self.chat_agent.name, agent=self.agent.name
        )


def explain(exc: KaiwaError, texts: Texts, url: str) -> str:
    if isinstance(exc, ChatError):
        return exc.words(texts, url)
    if isinstance(exc, PermissionDeniedError) and exc.status == 401:
        return texts.key_refused.format(url=url, code=exc.code)
    if isinstance(exc, APIError):
        return f"{exc.message} (error_code {exc.code})"
    if isinstance(exc, APIConnectionError):
        # The transport's own words ("[Errno 111] Connection refused"), not the call's.
        reason = str(exc.__cause__ or exc) or type(exc.__cause__ or exc).__name__
        return texts.unreachable.format(url=url, reason=reason)
    return str(exc)


def server_url(client: Client) -> str:
    """The server the client talks to, as a person would type it: `http://127.0.0.1:8000/`."""
    base = client.base_url
    return str(base.copy_with(path=base.path.removesuffix(API_PREFIX) or "/"))


def agent_list(agents: Sequence[Agent]) -> str:
    return ", ".join(f"{agent.name} ({agent.id})" for agent in agents)
