"""`scripted`: a model that follows the script in its settings, or echoes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kaiwa.llm.base import (
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelRequest,
    Purpose,
    TextDelta,
    ToolCall,
    Usage,
)
from kaiwa.llm.scripted import ScriptedModel
from kaiwa.llm.text import estimate_tokens

MODEL = ScriptedModel("scripted", "test")


def request(
    script: dict[str, Any] | None = None,
    *,
    message: str = "営業時間は何時ですか？",
    purpose: Purpose = "answer",
) -> ModelRequest:
    settings = {} if script is None else {"script": script}
    return ModelRequest(messages=[ChatMessage("user", message)], purpose=purpose, settings=settings)


async def run(req: ModelRequest) -> list[ModelEvent]:
    return [event async for event in MODEL.stream(req)]


def test_name_is_provider_slash_model() -> None:
    assert MODEL.name == "scripted/test"


async def test_text_items_are_deltas_in_order_then_usage() -> None:
    events = await run(request({"answer": [{"text": "Hello"}, {"text": " 世界"}]}))
    assert events == [
        TextDelta("Hello"),
        TextDelta(" 世界"),
        Usage(prompt_tokens=estimate_tokens("営業時間は何時ですか？"), completion_tokens=3),
    ]


async def test_configured_usage_is_reported() -> None:
    script = {"answer": [{"text": "x"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    events = await run(request(script))
    assert events[-1] == Usage(prompt_tokens=10, completion_tokens=5)


async def test_delay_is_silence_between_items() -> None:
    loop = asyncio.get_running_loop()
    script = {"answer": [{"text": "a"}, {"delay": 0.05}, {"text": "b"}]}
    times: list[float] = []
    async for event in MODEL.stream(request(script)):
        if isinstance(event, TextDelta):
            times.append(loop.time())
    assert times[1] - times[0] >= 0.045


async def test_tool_call_item_yields_a_tool_call() -> None:
    script = {
        "answer": [
            {"tool_call": {"id": "call_9", "name": "search_web", "arguments": {"q": "営業時間"}}},
            {"tool_call": {"name": "lookup"}},
        ]
    }
    events = await run(request(script))
    assert events[:2] == [
        ToolCall(id="call_9", name="search_web", arguments={"q": "営業時間"}),
        ToolCall(id="call_1", name="lookup", arguments={}),
    ]
    assert events[2] == Usage(prompt_tokens=estimate_tokens("営業時間は何時ですか？"))


async def test_fail_after_text_raises_a_partial_model_error() -> None:
    seen: list[ModelEvent] = []

    async def consume() -> None:
        async for event in MODEL.stream(request({"answer": [{"text": "途中"}, {"fail": "boom"}]})):
            seen.append(event)

    with pytest.raises(ModelError, match="scripted failure: boom") as raised:
        await consume()
    assert seen == [TextDelta("途中")]
    assert raised.value.partial is True


async def test_fail_before_any_text_is_not_partial() -> None:
    script = {"answer": [{"tool_call": {"name": "lookup"}}, {"fail": "down"}]}
    with pytest.raises(ModelError) as raised:
        await run(request(script))
    assert raised.value.partial is False
    assert raised.value.message == "scripted failure: down"


async def test_fail_after_text_without_tokens_is_still_partial() -> None:
    # Partial means text reached the user, whatever its token estimate.
    with pytest.raises(ModelError) as raised:
        await run(request({"answer": [{"text": " "}, {"fail": "boom"}]}))
    assert raised.value.partial is True


async def test_title_comes_from_the_script() -> None:
    script = {"title": "営業時間", "title_usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    events = await run(request(script, purpose="title"))
    assert events == [TextDelta("営業時間"), Usage(prompt_tokens=3, completion_tokens=2)]


async def test_title_without_script_is_a_short_title_of_the_message() -> None:
    events = await run(request(purpose="title"))
    assert events[0] == TextDelta("営業時間は何時ですか")
    assert isinstance(events[1], Usage)
    assert events[1].completion_tokens == estimate_tokens("営業時間は何時ですか")


async def test_no_script_echoes_the_message_in_chunks() -> None:
    message = "Tell me the opening hours of the Shinjuku store, please"
    events = await run(request(message=message))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == f"Echo: {message}"
    assert len(deltas) > 5
    assert events[-1] == Usage(
        prompt_tokens=estimate_tokens(message),
        completion_tokens=estimate_tokens(f"Echo: {message}"),
    )


async def test_script_without_answer_echoes() -> None:
    events = await run(request({"title": "x"}, message="hi"))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Echo:"), TextDelta(" hi")]


async def test_title_delay_is_silence_before_the_title() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await run(request({"title": "t", "title_delay": 0.05}, purpose="title"))
    assert loop.time() - started >= 0.045
    assert events[0] == TextDelta("t")
