"""A stopped answer counts the tokens it streamed: estimated, and marked so, when the provider
reported nothing for the call that was cut off; a whole answer has the provider's own counts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from api_support import Api, data, parse_stream

from kaiwa.llm.text import estimate_tokens

STREAMED = "営業時間は平日の9時から18時です。 Weekends are closed. "
# Deltas with silence between them; the answer is stopped long before it could end.
SLOW: list[dict[str, Any]] = [
    {"text": "営業時間は平日の"},
    {"text": "9時から18時です。"},
    {"text": " Weekends are closed. "},
    *[{"delay": 0.5}] * 20,
    {"text": "never"},
]


async def running(api: Api, **fields: Any) -> tuple[int, str, str, asyncio.Task[httpx.Response]]:
    """A chat (renamed: no title call) whose answer streamed `STREAMED` and goes on."""
    agent_id = await api.scripted_agent(SLOW)
    chat = await api.create_chat(agent_id)
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "by hand"}))
    send = asyncio.create_task(api.send(chat["id"], "営業時間は?", agent_id=agent_id, **fields))
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat["id"])
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                response_id: str = rows[-1]["meta"]["response_id"]
                url = f"/api/v1/chats/{chat['id']}/responses/{response_id}"
                if data(await api.get(url))["final_text"] == STREAMED:
                    return chat["id"], agent_id, response_id, send
            await asyncio.sleep(0.01)


def assert_estimated(usage: dict[str, Any]) -> None:
    assert usage["estimated"] is True
    assert usage["total_completion_tokens"] >= estimate_tokens(STREAMED) > 0
    assert usage["total_prompt_tokens"] >= estimate_tokens("営業時間は?")
    total = usage["total_prompt_tokens"] + usage["total_completion_tokens"]
    assert usage["total_tokens"] == total
    assert usage["total_calls"] == 1


async def test_a_stopped_answer_counts_the_output_it_streamed_as_estimated(api: Api) -> None:
    chat_id, _, response_id, send = await running(api)
    reply = data(await api.post(f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel"))
    stream = parse_stream((await send).content)

    assert stream.completed.status == "cancelled"
    assert stream.completed.final_text == STREAMED
    (frame,) = [
        line
        for line in stream.raw.split(b"\n")
        if b'"type":"response.output_text.completed"' in line
    ]
    assert_estimated(json.loads(frame.removeprefix(b"data: "))["usage"])
    assert reply["usage"] == stream.completed.usage.model_dump()
    assert stream.completed.usage.estimated is True
    stored = (await api.messages(chat_id))[-1]["meta"]["token_usage"]
    assert_estimated(stored)


async def test_an_interrupted_answer_is_stored_with_its_estimate(api: Api) -> None:
    chat_id, agent_id, _, send = await running(api)
    # The next turn answers at once.
    meta = {"model_settings": {"script": {"answer": [{"text": "はい。"}]}}}
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"meta": meta}))
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))
    data(await api.send(chat_id, "次の質問", agent_id=agent_id, stream=False, if_busy="interrupt"))
    await send
    interrupted = (await api.messages(chat_id))[1]
    assert interrupted["meta"]["status"] == "cancelled"
    assert_estimated(interrupted["meta"]["token_usage"])


async def test_a_whole_answer_has_no_estimated_flag(api: Api) -> None:
    agent_id = await api.scripted_agent(
        [{"text": "はい。"}], usage={"prompt_tokens": 7, "completion_tokens": 2}
    )
    chat = await api.create_chat(agent_id)
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "by hand"}))
    stream = await api.stream(chat["id"], "質問", agent_id=agent_id)
    assert b"estimated" not in stream.raw
    assert stream.completed.usage.estimated is False
    assert stream.completed.usage.model_dump() == {
        "total_prompt_tokens": 7,
        "total_completion_tokens": 2,
        "total_tokens": 9,
        "total_calls": 1,
    }
    assert (await api.messages(chat["id"]))[-1]["meta"]["token_usage"] == {
        "total_prompt_tokens": 7,
        "total_completion_tokens": 2,
        "total_tokens": 9,
        "total_calls": 1,
    }
