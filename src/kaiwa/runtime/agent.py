"""The agent loop: the model's answer streamed into the response's events.

Tools (reasoning steps) plug in here: the model's tool calls become steps between model rounds.
"""

from __future__ import annotations

from contextlib import aclosing

from kaiwa.llm import ChatModel, ModelRequest, TextDelta, ToolCall, Usage
from kaiwa.runtime.emitter import Emitter
from kaiwa.runtime.usage import UsageMeter


async def run_agent(
    model: ChatModel, request: ModelRequest, emitter: Emitter, meter: UsageMeter
) -> None:
    """Stream one answer; deltas go out as they come, usage is added to `meter`."""
    usage: Usage | None = None
    try:
        async with aclosing(model.stream(request)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    if event.text:
                        await emitter.delta(event.text)
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, ToolCall):
                    # No tools are offered yet: a call can only be the model improvising.
                    continue
    finally:
        meter.add_call(usage)
