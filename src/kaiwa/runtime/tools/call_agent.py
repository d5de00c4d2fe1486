"""`call_agent`: put a sub-question to another agent of the workspace, which answers with its own
tools. Its usage is the step's `token_usage`, and counts in the response's total."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language
from kaiwa.runtime.tools.base import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolOutput,
    pick,
    text_argument,
)


@dataclass(frozen=True, slots=True)
class Callee:
    agent_id: str
    name: str
    instruction: str
    """When to call it, from the calling agent's configuration."""


Runner = Callable[[Callee, str, ToolContext], Awaitable[ToolOutput]]
"""Runs `callee` on a question in the caller's context; raises `ToolFailure`."""


class CallAgentTool(Tool):
    step_type = "consultant_call_agent"
    tool_name = "call_agent"

    def __init__(self, callees: Sequence[Callee], runner: Runner) -> None:
        self._callees = {callee.name: callee for callee in callees}
        self._by_id = {callee.agent_id: callee for callee in callees}
        self._runner = runner

    def spec(self) -> ToolSpec:
        lines = [
            f"- {callee.name}: {callee.instruction or 'no instruction given'}"
            for callee in self._callees.values()
        ]
        return ToolSpec(
            name=self.tool_name,
            description="Ask another assistant a question; it answers with its own tools. "
            "The assistants, and when to ask them:\n" + "\n".join(lines),
            parameters={
                "type": "object",
                "properties": {
                    "agent": {
                        "type": "string",
                        "enum": list(self._callees),
                        "description": "The assistant's name",
                    },
                    "question": {
                        "type": "string",
                        "description": "A self-contained question, in the user's language",
                    },
                },
                "required": ["agent", "question"],
            },
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        name = text_argument(arguments, "agent", limit=256)
        callee = self._callees.get(name) or self._by_id.get(name)
        if callee is None:
            names = ", ".join(self._callees)
            raise ToolFailure(f"argument 'agent' must be one of: {names}; got {name!r}")
        question = text_argument(arguments, "question", limit=8000)
        return {"agent_id": callee.agent_id, "agent": callee.name, "question": question}

    def describe(self, args: dict[str, Any], language: Language) -> str:
        name = args.get("agent") or ""
        if not name:
            return pick(
                language, en="Asking another agent", ja="別のエージェントに問い合わせています"
            )
        return pick(language, en=f"Asking {name}", ja=f"{name} に問い合わせています")

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        callee = self._by_id[args["agent_id"]]
        return await self._runner(callee, args["question"], context)
