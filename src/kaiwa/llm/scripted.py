"""`scripted`: the deterministic model for tests and demos of failure.

Its behaviour comes from the agent's `meta.model_settings.script`, so a test drives it over HTTP
with no patching::

    {"script": {
        "answer": [{"text": "Hello"}, {"delay": 0.2}, {"text": " world"}, {"fail": "boom"}],
        "title": "Greeting",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    }}

Items of `answer`: `text` (one delta), `delay` (seconds of silence), `tool_call`
(`{"id", "name", "arguments"}`), `fail` (raise `ModelError`). With no script it echoes the user's
message back in small chunks. Each call reports its usage last (`usage`, or an estimate).

An agent that uses tools needs one list of items per model call of a turn: `"rounds": [[...],
[...]]`. The first call of a turn plays `rounds[0]`, the call after the first tool results
`rounds[1]`, and so on; past the end, the last list plays without its tool calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from kaiwa.llm.base import (
    NOT_AN_OBJECT,
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCall,
    Usage,
)
from kaiwa.llm.text import chunks, estimate_tokens, short_title


class ScriptedModel:
    def __init__(self, provider: str, model: str) -> None:
        self._name = f"{provider}/{model}"

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        script: Mapping[str, Any] = request.settings.get("script") or {}
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        prompt = estimate_tokens(request.system or "")
        prompt += sum(estimate_tokens(m.content) for m in request.messages)
        if request.purpose == "title":
            title = str(script.get("title") or short_title(last_user))
            if script.get("title_delay"):
                await asyncio.sleep(float(script["title_delay"]))
            yield TextDelta(title)
            yield _usage(script.get("title_usage"), prompt, estimate_tokens(title))
            return
        items = _items(script, request)
        if items is None:
            items = [{"text": piece} for piece in chunks(f"Echo: {last_user}")]
        completion = 0
        streamed = False
        for item in items:
            if "text" in item:
                text = str(item["text"])
                completion += estimate_tokens(text)
                streamed = streamed or bool(text)
                yield TextDelta(text)
            elif "delay" in item:
                await asyncio.sleep(float(item["delay"]))
            elif "tool_call" in item:
                call = item["tool_call"]
                arguments = call.get("arguments", {})
                # Arguments that are not an object play a model that wrote broken JSON.
                yield ToolCall(
                    id=str(call.get("id", "call_1")),
                    name=str(call["name"]),
                    arguments=arguments if isinstance(arguments, dict) else {},
                    invalid=None if isinstance(arguments, dict) else NOT_AN_OBJECT,
                )
            elif "fail" in item:
                raise ModelError(f"scripted failure: {item['fail']}", partial=streamed)
        yield _usage(script.get("usage"), prompt, completion)


def _items(script: Mapping[str, Any], request: ModelRequest) -> list[Any] | None:
    rounds = script.get("rounds")
    if not rounds:
        answer: list[Any] | None = script.get("answer")
        return answer
    last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
    done = sum(1 for m in request.messages[last_user + 1 :] if m.tool_calls)
    if done < len(rounds):
        return list(rounds[done])
    return [item for item in rounds[-1] if "tool_call" not in item]


def _usage(configured: Mapping[str, int] | None, prompt: int, completion: int) -> Usage:
    if configured is not None:
        return Usage(
            prompt_tokens=int(configured.get("prompt_tokens", 0)),
            completion_tokens=int(configured.get("completion_tokens", 0)),
        )
    return Usage(prompt_tokens=prompt, completion_tokens=completion)
