"""Answers whose replica died are ended once, by whoever sweeps first; their owner, should it
wake up, can neither add to them nor overwrite how they ended.

A replica's death is made here by handing a running answer to an owner that has no heartbeat
(an UPDATE of its row): the sweeper must then treat it as dead, while the producer — still
running in this process — plays the paused replica that wakes up afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api_support import Api, parse_stream
from sqlalchemy import select, update

from kaiwa.store.models import Response

MakeApi = Callable[..., Awaitable[Api]]


async def _running_answer(api: Api) -> tuple[int, asyncio.Task[bytes], str]:
    """A chat whose answer streams "途中まで", then pauses; the stream's task and response id."""
    agent_id = await api.scripted_agent(
        [{"text": "途中まで"}, {"delay": 0.6}, {"text": "、その後"}, {"delay": 0.2}, {"text": "。"}]
    )
    chat = await api.create_chat(agent_id)

    async def stream() -> bytes:
        response = await api.send(chat["id"], "質問", agent_id=agent_id)
        return response.content

    task = asyncio.create_task(stream())
    for _ in range(300):
        rows = await api.messages(chat["id"])
        if len(rows) == 2 and rows[1]["content"] == "途中まで":
            async with api.store() as session:
                response_id = await session.scalar(
                    select(Response.id).where(Response.chat_id == chat["id"])
                )
            assert response_id is not None
            return chat["id"], task, response_id
        await asyncio.sleep(0.01)
    raise AssertionError("the answer's first checkpoint never came")


async def _orphan(api: Api, response_id: str, owner: str | None) -> None:
    async with api.store() as session:
        await session.execute(
            update(Response).where(Response.id == response_id).values(owner=owner)
        )


async def test_an_answer_of_a_dead_owner_ends_with_an_error_and_keeps_its_checkpoint(
    make_api: MakeApi,
) -> None:
    api = await make_api(checkpoint_interval=0.05)
    chat_id, stream, response_id = await _running_answer(api)
    await _orphan(api, response_id, "replica-that-died")

    assert await api.app.state.sweeper.sweep() == [response_id]
    assert await api.app.state.sweeper.sweep() == []  # exactly once

    events = parse_stream(await asyncio.wait_for(stream, 10))
    assert events.types[-1] == "response.error"
    assert events.deltas == "途中まで"
    error = events.of("response.error")[0]
    assert error.code == 10005

    # The producer went on ("、その後。") after the sweep: none of it reached the log or the row.
    await asyncio.sleep(1.0)
    answer = (await api.messages(chat_id))[-1]
    assert (answer["content"], answer["meta"]["status"]) == ("途中まで", "failed")
    async with api.store() as session:
        record = await session.get(Response, response_id)
        assert record is not None
        assert (record.status, record.error_code) == ("failed", 10005)
        assert record.last_event_id == events.ids[-1]
    resumed = await api.get(f"/api/v1/chats/{chat_id}/responses/{response_id}/events")
    assert parse_stream(resumed.content).raw == events.raw


async def test_an_answer_of_a_live_owner_is_left_alone(make_api: MakeApi) -> None:
    api = await make_api(checkpoint_interval=0.05)
    chat_id, stream, _ = await _running_answer(api)

    assert await api.app.state.sweeper.sweep() == []
    final = parse_stream(await asyncio.wait_for(stream, 10)).completed
    assert final.final_text == "途中まで、その後。"
    answer = (await api.messages(chat_id))[-1]
    assert answer["meta"]["status"] == "completed"


async def test_answers_from_before_replicas_had_ids_count_as_orphans(make_api: MakeApi) -> None:
    api = await make_api(checkpoint_interval=0.05)
    chat_id, stream, response_id = await _running_answer(api)
    await _orphan(api, response_id, None)

    assert await api.app.state.sweeper.sweep() == [response_id]
    assert parse_stream(await asyncio.wait_for(stream, 10)).types[-1] == "response.error"
    await asyncio.sleep(1.0)
    answer = (await api.messages(chat_id))[-1]
    assert (answer["content"], answer["meta"]["status"]) == ("途中まで", "failed")
