"""Regenerate: a new answer to the chat's last user message; earlier answers kept, superseded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from api_support import Api, data, error, parse_stream

from kaiwa.llm.text import estimate_tokens
from kaiwa.protocol import ResponseCreated
from kaiwa.runtime.turns import HISTORY_MESSAGES
from kaiwa.store import messages

LONG_ANSWER = "many words in this first answer " * 10


def regenerate_url(chat_id: int) -> str:
    return f"/api/v1/chats/{chat_id}/regenerate"


async def regenerate(api: Api, chat_id: int, agent_id: str, **fields: Any) -> httpx.Response:
    return await api.post(regenerate_url(chat_id), json={"agent_id": agent_id, **fields})


async def republish(api: Api, agent_id: str, answer: list[dict[str, Any]]) -> None:
    """Publish a new version of a scripted agent: the chat's next turn follows `answer`."""
    meta = {"model_settings": {"script": {"answer": answer}}}
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"meta": meta}))
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))


async def answered_chat(api: Api) -> tuple[int, str]:
    """A chat with one finished turn ("question" → LONG_ANSWER) whose next answer is "short"."""
    agent_id = await api.scripted_agent([{"text": LONG_ANSWER}])
    chat = await api.create_chat(agent_id)
    assert data(await api.send(chat["id"], "question", agent_id=agent_id, stream=False)) == (
        LONG_ANSWER
    )
    await republish(api, agent_id, [{"text": "short"}])
    return chat["id"], agent_id


async def test_regenerate_streams_a_new_answer_to_the_last_user_message(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    user, first = await api.messages(chat_id)

    reply = await regenerate(api, chat_id, agent_id)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    stream = parse_stream(reply.content)
    created = stream.events[0]
    assert isinstance(created, ResponseCreated)
    assert created.conversation_group_id == user["group_id"]
    assert created.user_conversation_id == user["id"]
    assert created.response_id == reply.headers["x-kaiwa-response-id"]
    assert created.resume_token
    assert stream.completed.final_text == stream.deltas == "short"
    # The model saw the question and nothing before it.
    assert stream.completed.usage.total_prompt_tokens == estimate_tokens("question")

    rows = await api.messages(chat_id)
    assert [m["id"] for m in rows[:2]] == [user["id"], first["id"]]
    old, new = rows[1], rows[2]
    assert len(rows) == 3
    assert (old["content"], old["meta"]["superseded"]) == (LONG_ANSWER, True)
    assert (new["content"], new["meta"]["superseded"]) == ("short", False)
    assert user["meta"]["superseded"] is False
    assert old["group_id"] == new["group_id"] == user["group_id"]
    assert new["meta"]["status"] == "completed"
    assert new["meta"]["response_id"] == created.response_id
    assert old["meta"]["status"] == "completed"


async def test_regenerate_again_supersedes_every_earlier_answer(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    assert data(await regenerate(api, chat_id, agent_id, stream=False)) == "short"
    await republish(api, agent_id, [{"text": "third"}])
    assert data(await regenerate(api, chat_id, agent_id, stream=False)) == "third"
    rows = await api.messages(chat_id)
    assert [(m["role"], m["content"], m["meta"]["superseded"]) for m in rows] == [
        ("user", "question", False),
        ("assistant", LONG_ANSWER, True),
        ("assistant", "short", True),
        ("assistant", "third", False),
    ]
    assert len({m["group_id"] for m in rows}) == 1


async def test_next_turn_context_leaves_out_the_superseded_answer(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    assert data(await regenerate(api, chat_id, agent_id, stream=False)) == "short"

    stream = await api.stream(chat_id, "next", agent_id=agent_id)
    # The scripted model counts the prompt it was given: the long first answer is not in it.
    seen = sum(map(estimate_tokens, ("question", "short", "next")))
    assert stream.completed.usage.total_prompt_tokens == seen
    assert stream.completed.usage.total_calls == 1
    rows = await api.messages(chat_id)
    assert [(m["role"], m["content"], m["meta"]["superseded"]) for m in rows] == [
        ("user", "question", False),
        ("assistant", LONG_ANSWER, True),
        ("assistant", "short", False),
        ("user", "next", False),
        ("assistant", "short", False),
    ]
    assert rows[3]["group_id"] != rows[0]["group_id"]


async def test_regenerate_an_earlier_turn_is_the_last_one(api: Api) -> None:
    # Regenerate answers the last user message, keeping earlier turns as context.
    chat_id, agent_id = await answered_chat(api)
    assert data(await api.send(chat_id, "follow-up", agent_id=agent_id, stream=False)) == "short"
    stream = parse_stream((await regenerate(api, chat_id, agent_id)).content)
    rows = await api.messages(chat_id)
    created = stream.events[0]
    assert isinstance(created, ResponseCreated)
    assert created.user_conversation_id == rows[2]["id"]
    seen = sum(map(estimate_tokens, ("question", LONG_ANSWER, "follow-up")))
    assert stream.completed.usage.total_prompt_tokens == seen
    assert [m["meta"]["superseded"] for m in rows] == [False, False, False, True, False]


async def test_regenerate_with_stream_false_returns_the_text(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    reply = await regenerate(api, chat_id, agent_id, stream=False)
    assert reply.headers["content-type"] == "application/json"
    assert data(reply) == "short"
    assert (await api.messages(chat_id))[-1]["content"] == "short"


async def test_regenerate_does_not_retitle_the_chat(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "answer"}], title="First title")
    chat = await api.create_chat(agent_id)
    first = await api.stream(chat["id"], "question", agent_id=agent_id)
    assert "response.chat.title.updated" in first.types
    await republish(api, agent_id, [{"text": "again"}])

    stream = parse_stream((await regenerate(api, chat["id"], agent_id)).content)
    assert "response.chat.title.updated" not in stream.types
    assert stream.completed.usage.total_calls == 1  # no title generated
    chats = data(await api.get("/api/v1/chats"))
    assert [c["name"] for c in chats if c["id"] == chat["id"]] == ["First title"]


async def test_regenerate_on_a_chat_without_messages_is_400(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "answer"}])
    chat = await api.create_chat(agent_id)
    for stream in (True, False):
        reply = await regenerate(api, chat["id"], agent_id, stream=stream)
        assert "no user message" in error(reply, 400, 10006)
    assert await api.messages(chat["id"]) == []


async def test_regenerate_with_another_agent_is_400(api: Api) -> None:
    chat_id, _ = await answered_chat(api)
    before = await api.counts()
    reply = await regenerate(api, chat_id, api.demo_agent_id)
    assert "History agent mismatch" in error(reply, 400, 10006)
    assert await api.counts() == before
    assert [m["meta"]["superseded"] for m in await api.messages(chat_id)] == [False, False]


async def test_regenerate_on_an_unknown_chat_is_404(api: Api) -> None:
    error(await regenerate(api, 10**9, api.demo_agent_id), 404, 10003)


async def test_regenerate_with_a_bad_body_is_400(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    error(await api.post(regenerate_url(chat_id), json={}), 400, 10006)
    error(await regenerate(api, chat_id, "not-a-uuid"), 400, 10006)
    error(await regenerate(api, chat_id, agent_id, if_busy="later"), 400, 10006)


async def test_regenerate_while_a_response_runs_is_409(api: Api) -> None:
    chat_id, agent_id = await answered_chat(api)
    await republish(api, agent_id, [{"text": "slow "}, *[{"delay": 0.5}] * 6])
    send = asyncio.create_task(api.send(chat_id, "second", agent_id=agent_id))
    for _ in range(500):
        rows = await api.messages(chat_id)
        if rows[-1]["meta"]["status"] == "in_progress":
            break
        await asyncio.sleep(0.01)
    response_id = rows[-1]["meta"]["response_id"]
    before = await api.counts()

    reply = await regenerate(api, chat_id, agent_id)
    assert "already running" in error(reply, 409, 10004)
    assert await api.counts() == before
    assert not any(m["meta"]["superseded"] for m in await api.messages(chat_id))

    data(await api.post(f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel"))
    assert parse_stream((await send).content).completed.status == "cancelled"


async def test_regenerate_finds_the_question_behind_many_answers(api: Api) -> None:
    # More answers than the model's history window, after the question: it is still found,
    # and the turns before it are still the context.
    chat_id, agent_id = await answered_chat(api)
    data(await api.send(chat_id, "follow-up", agent_id=agent_id, stream=False))
    question = (await api.messages(chat_id))[2]
    async with api.store() as session:
        for n in range(HISTORY_MESSAGES):
            await messages.insert_message(
                session,
                chat_id=chat_id,
                group_id=question["group_id"],
                role="assistant",
                content=f"answer {n}",
                status="completed",
                meta={},
            )

    stream = parse_stream((await regenerate(api, chat_id, agent_id)).content)
    created = stream.events[0]
    assert isinstance(created, ResponseCreated)
    assert created.user_conversation_id == question["id"]
    seen = sum(map(estimate_tokens, ("question", LONG_ANSWER, "follow-up")))
    assert stream.completed.usage.total_prompt_tokens == seen
    rows = await api.messages(chat_id)
    assert len(rows) == 4 + HISTORY_MESSAGES + 1
    assert [m["meta"]["superseded"] for m in rows[3:]] == [True] * (HISTORY_MESSAGES + 1) + [False]
