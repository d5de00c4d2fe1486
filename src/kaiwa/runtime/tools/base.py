"""The one small interface every tool implements, and what a tool call gets to work with.

A tool is a step type: it offers the model a `ToolSpec`, checks the model's arguments, describes
what it is about to do in one line of the user's language, and runs. A tool that fails raises
`ToolFailure`: its step ends with `success: false` and the answer goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language
from kaiwa.protocol import TokenUsage
from kaiwa.protocol.events import StepType, ToolName
from kaiwa.runtime.observe import NO_WATCH, AnswerWatch
from kaiwa.store.db import iso


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The turn a tool runs in."""

    workspace_id: str
    chat_id: int
    agent_id: str
    message: str
    """The user's message this turn answers."""
    language: Language
    user_message_id: int = 0
    attachments: tuple[str, ...] = ()
    """Uuids of the files attached to the user's message."""
    agent_path: tuple[str, ...] = ()
    """The agents on the call stack, outermost first, this one last (for `call_agent`)."""
    watch: AnswerWatch = NO_WATCH
    """Who watches the answer (metrics, traces): a called agent's model calls and steps count
    as the answer's."""


@dataclass(frozen=True, slots=True)
class ToolOutput:
    data: Any
    """The step's `result.data`: JSON, for people and programs."""
    text: str
    """What the model reads."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    """Model calls made inside the tool (a called agent's)."""


class ToolFailure(Exception):
    """The tool could not do its job; `message` says why, in words a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Tool(ABC):
    step_type: StepType
    tool_name: ToolName

    @abstractmethod
    def spec(self) -> ToolSpec:
        """How the model sees the tool: its name is `tool_name`."""

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        """The arguments the step shows and `run` gets, checked. Raises `ToolFailure`."""
        return arguments

    @abstractmethod
    def describe(self, args: dict[str, Any], language: Language) -> str:
        """One line for the step's `content`: what the tool is doing, in `language`."""

    @abstractmethod
    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        """Do it. Raises `ToolFailure` when it cannot."""


def text_argument(arguments: dict[str, Any], name: str, *, limit: int = 2000) -> str:
    """A required, non-empty string argument, trimmed; `ToolFailure` names it otherwise."""
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolFailure(f"argument {name!r} must be a non-empty string")
    value = value.strip()
    if len(value) > limit:
        raise ToolFailure(f"argument {name!r} is over the limit of {limit} characters")
    return value


def timestamp() -> str:
    """Now, as steps carry it (ISO-8601 UTC with `Z`)."""
    return iso(datetime.now(UTC)) or ""


def pick(language: Language, *, en: str, ja: str) -> str:
    return ja if language == "ja" else en
