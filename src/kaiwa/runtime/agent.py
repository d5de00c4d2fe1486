"""The agent loop: model ⇄ tool rounds, streamed into a response's events.

Each round streams one model call: its text goes out as deltas at once, its tool calls become
reasoning steps (`start` when the tool starts, `end` with its result), and their results go back
to the model in the next round. After the last allowed round the model answers without tools.
A failing tool ends its step with `success: false` and the answer goes on; a `request_form` call
pauses the turn until the form is submitted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from kaiwa.llm import ChatMessage, ChatModel, ModelRequest, TextDelta, ToolCall, Usage
from kaiwa.protocol import TokenUsage
from kaiwa.protocol.events import StepEnd, StepResult, StepStart
from kaiwa.runtime.observe import NO_WATCH, AnswerWatch, StepWatch
from kaiwa.runtime.tools.base import Tool, ToolContext, ToolFailure, ToolOutput, timestamp
from kaiwa.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a run's output goes: the response's event log, or a calling agent's collector."""

    async def delta(self, text: str) -> None: ...

    async def step_start(self, step: StepStart) -> None: ...

    async def step_end(self, step: StepEnd) -> None: ...


@dataclass(slots=True)
class Collector:
    """A sink that keeps what a called agent says, for the step that called it."""

    parts: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    async def delta(self, text: str) -> None:
        self.parts.append(text)

    async def step_start(self, step: StepStart) -> None:
        return None

    async def step_end(self, step: StepEnd) -> None:
        self.steps.append(
            {"type": step.type, "tool_name": step.tool_name, "success": step.result.success}
        )

    @property
    def text(self) -> str:
        return "".join(self.parts)


class AwaitForm(Exception):
    """Raised by the form tool's `run`: the turn pauses here until the form is submitted."""


@dataclass(frozen=True, slots=True)
class FormPause:
    """A turn paused on a form: what it needs to go on once the values arrive."""

    step: StepStart
    call: ToolCall
    messages: list[ChatMessage]
    """The turn's model messages after the user's: the rounds so far, ending with the call."""
    round: int


@dataclass(slots=True)
class AgentRun:
    model: ChatModel
    request: ModelRequest
    """The conversation up to the user's message, the system prompt and the model settings."""
    tools: Mapping[str, Tool]
    context: ToolContext
    sink: Sink
    meter: UsageMeter
    max_rounds: int = 8
    tool_timeout: float = 60.0
    include_tool_tags: bool = False
    """Put `<tool id=…>name</tool>` in the text where each step starts."""
    watch: AnswerWatch = NO_WATCH
    """Who watches the answer: each model call and step is reported to it."""


async def run_agent(
    run: AgentRun, *, turn: Sequence[ChatMessage] = (), first_round: int = 0
) -> FormPause | None:
    """Run rounds until the model answers without calling a tool; None when it did.

    `turn` and `first_round` continue a turn that paused on a form.
    """
    messages = list(turn)
    for number in range(first_round, run.max_rounds + 1):
        offered = run.tools if number < run.max_rounds else {}
        request = replace(
            run.request,
            messages=[*run.request.messages, *messages],
            tools=[tool.spec() for tool in offered.values()],
        )
        text, calls = await _model_call(run, request)
        if not calls:
            return None
        messages.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
        for index, call in enumerate(calls):
            tool = offered.get(call.name)
            if tool is None:
                # Not a step: there is no step type for a tool that does not exist.
                names = ", ".join(offered) or "none"
                reply = f"Error: there is no tool {call.name!r}; the tools are: {names}"
                messages.append(ChatMessage("tool", reply, tool_call_id=call.id, is_error=True))
                continue
            paused, reply, failed = await _step(run, tool, call)
            if paused is not None:
                # Every call gets a reply before the next round; the form's comes on submit.
                for skipped in calls[index + 1 :]:
                    reply = "Not run: the conversation paused for a form first."
                    messages.append(ChatMessage("tool", reply, tool_call_id=skipped.id))
                return FormPause(step=paused, call=call, messages=messages, round=number)
            messages.append(ChatMessage("tool", reply, tool_call_id=call.id, is_error=failed))
    return None


async def _model_call(run: AgentRun, request: ModelRequest) -> tuple[str, list[ToolCall]]:
    parts: list[str] = []
    calls: list[ToolCall] = []
    usage: Usage | None = None
    provider, _, model = run.model.name.partition("/")
    with run.watch.model_call(provider, model) as watch:
        try:
            async with aclosing(run.model.stream(request)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if event.text:
                            if not parts:
                                watch.first_token()
                            parts.append(event.text)
                            await run.sink.delta(event.text)
                    elif isinstance(event, ToolCall):
                        calls.append(event)
                    elif isinstance(event, Usage):
                        usage = event
        finally:
            # Also when cut off (a stop): what streamed until then counts, estimated if need be.
            run.meter.add_call(usage, request=request, text="".join(parts), calls=calls)
            if usage is not None:
                watch.usage(usage.prompt_tokens, usage.completion_tokens)
    return "".join(parts), calls


async def _step(run: AgentRun, tool: Tool, call: ToolCall) -> tuple[StepStart | None, str, bool]:
    """One tool call as a step: the step start when the turn pauses on it, the text the model
    reads, and whether the tool failed."""
    step_id = f"step_{uuid.uuid4().hex}"
    language = run.context.language
    failure: str | None = call.invalid
    args = dict(call.arguments)
    if failure is None:
        try:
            args = tool.prepare(args, run.context)
        except ToolFailure as exc:
            failure = exc.message
    start = StepStart(
        id=step_id,
        type=tool.step_type,
        tool_name=tool.tool_name,
        content=tool.describe(args, language),
        args=args,
        timestamp=timestamp(),
    )
    with run.watch.tool_step(tool.step_type, tool.tool_name) as watch:
        return await _run_step(run, tool, start, args, failure, watch)


async def _run_step(
    run: AgentRun,
    tool: Tool,
    start: StepStart,
    args: dict[str, Any],
    failure: str | None,
    watch: StepWatch,
) -> tuple[StepStart | None, str, bool]:
    step_id = start.id
    if run.include_tool_tags:
        await run.sink.delta(f"<tool id={step_id}>{tool.tool_name}</tool>")
    await run.sink.step_start(start)
    output: ToolOutput | None = None
    if failure is None:
        try:
            async with asyncio.timeout(run.tool_timeout):
                output = await tool.run(args, run.context)
        except AwaitForm:
            return start, "", False
        except ToolFailure as exc:
            failure = exc.message
        except TimeoutError:
            failure = f"{tool.tool_name} took longer than {run.tool_timeout:g} s and was stopped"
        except Exception:
            logger.exception("tool %s failed", tool.tool_name)
            failure = f"{tool.tool_name} failed with an internal error"
    if output is None:
        result = StepResult(success=False, data={"error": failure})
        usage = TokenUsage()
        reply = f"Error: {failure}"
    else:
        result = StepResult(success=True, data=output.data)
        usage = output.usage
        reply = output.text
    watch.ended(success=output is not None)
    run.meter.merge_usage(usage)
    await run.sink.step_end(
        StepEnd(
            id=step_id,
            type=tool.step_type,
            tool_name=tool.tool_name,
            result=result,
            timestamp=timestamp(),
            token_usage=usage,
        )
    )
    return None, reply, output is None
