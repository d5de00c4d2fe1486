"""A running answer's text is stored every few seconds, so a crash keeps what was streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api_support import Api, parse_stream

MakeApi = Callable[..., Awaitable[Api]]


async def test_the_text_so_far_is_stored_while_the_answer_runs(make_api: MakeApi) -> None:
    api = await make_api(checkpoint_interval=0.05)
    agent_id = await api.scripted_agent([{"text": "途中まで"}, {"delay": 0.5}, {"text": "、完了"}])
    chat = await api.create_chat(agent_id)
    running = asyncio.create_task(api.send(chat["id"], "質問", agent_id=agent_id))

    stored = ""
    for _ in range(200):
        rows = await api.messages(chat["id"])
        answer = rows[-1] if rows else {"role": None}
        if answer["role"] == "assistant" and answer["content"]:
            stored = answer["content"]
            assert answer["meta"]["status"] == "in_progress"
            break
        await asyncio.sleep(0.01)
    assert stored == "途中まで"

    final = parse_stream((await running).content).completed
    assert final.final_text == "途中まで、完了"
    answer = (await api.messages(chat["id"]))[-1]
    assert (answer["content"], answer["meta"]["status"]) == ("途中まで、完了", "completed")


async def test_every_running_answer_is_checkpointed(make_api: MakeApi) -> None:
    api = await make_api(checkpoint_interval=0.05)
    agent_id = await api.scripted_agent([{"text": "前半"}, {"delay": 0.6}, {"text": "後半"}])
    chats = [await api.create_chat(agent_id) for _ in range(3)]
    running = [
        asyncio.create_task(api.send(chat["id"], "質問", agent_id=agent_id)) for chat in chats
    ]

    stored: dict[int, str] = {}
    for _ in range(300):
        for chat in chats:
            rows = await api.messages(chat["id"])
            if len(rows) == 2 and rows[1]["content"] and rows[1]["meta"]["status"] == "in_progress":
                stored[chat["id"]] = rows[1]["content"]
        if len(stored) == len(chats):
            break
        await asyncio.sleep(0.01)
    assert stored == {chat["id"]: "前半" for chat in chats}
    for task in running:
        assert parse_stream((await task).content).completed.final_text == "前半後半"
