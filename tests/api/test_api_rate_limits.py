"""[ext] Per-key limits over HTTP: 429/10007 with Retry-After, and nothing stored when refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api_support import Api, error, parse_stream

MakeApi = Callable[..., Awaitable[Api]]


async def test_requests_over_the_per_minute_limit_answer_429_with_retry_after(
    make_api: MakeApi,
) -> None:
    api = await make_api(rate_limit_per_minute=3)
    for _ in range(3):
        assert (await api.get("/api/v1/chats")).status_code == 200
    refused = await api.get("/api/v1/chats")
    message = error(refused, 429, 10007)
    assert "3 requests per minute" in message
    assert int(refused.headers["retry-after"]) >= 1
    # The limit is per key: the chat key still has its own allowance.
    assert (await api.get("/api/v1/chats", key=api.chat_key)).status_code == 200


async def test_a_send_over_the_in_flight_limit_is_refused_and_stores_nothing(
    make_api: MakeApi,
) -> None:
    api = await make_api(rate_limit_concurrent=1)
    agent_id = await api.scripted_agent([{"text": "slow"}, {"delay": 0.4}, {"text": " answer"}])
    first_chat = await api.create_chat(agent_id)
    second_chat = await api.create_chat(agent_id)
    running = asyncio.create_task(api.send(first_chat["id"], "one", agent_id=agent_id))
    await _until_running(api, first_chat["id"])
    before = await api.counts()

    refused = await api.send(second_chat["id"], "two", agent_id=agent_id)
    assert "1 answers in flight" in error(refused, 429, 10007)
    assert refused.headers["retry-after"] == "1"
    assert await api.counts() == before

    finished = await running
    assert parse_stream(finished.content).completed.final_text == "slow answer"
    # The slot came back when the first stream ended.
    again = await api.send(second_chat["id"], "two", agent_id=agent_id, stream=False)
    assert again.status_code == 200


async def test_a_refused_turn_gives_its_slot_back(make_api: MakeApi) -> None:
    api = await make_api(rate_limit_concurrent=1)
    chat = await api.create_chat()
    other_agent = await api.scripted_agent([{"text": "x"}])
    mismatch = await api.send(chat["id"], "hello", agent_id=other_agent)
    error(mismatch, 400, 10006)
    # Had the failed start kept its slot, this would be 429.
    assert (await api.send(chat["id"], "hello", stream=False)).status_code == 200


async def _until_running(api: Api, chat_id: int) -> None:
    for _ in range(500):
        rows = await api.messages(chat_id)
        if rows and rows[-1]["meta"]["status"] == "in_progress":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the response never started")
