"""Sending a message: the SSE stream, `stream: false`, failures, idle timeout and a busy chat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from api_support import DONE, Api, data, envelope, error, parse_stream

from kaiwa.config import Settings
from kaiwa.protocol import (
    OutputTextCompleted,
    OutputTextDelta,
    ResponseCreated,
    ResponseError,
)
from kaiwa.server import create_app
from kaiwa.store.bootstrap import ensure_demo
from kaiwa.store.db import transaction
from kaiwa.store.keys import create_key

SCRIPT_USAGE = {"prompt_tokens": 11, "completion_tokens": 7}
TITLE_USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


async def test_stream_headers_frames_and_event_order(api: Api) -> None:
    agent_id = await api.scripted_agent(
        [{"text": "営業時間は"}, {"text": "9時から"}, {"text": "17時です。"}],
        title="営業時間",
        usage=SCRIPT_USAGE,
        title_usage=TITLE_USAGE,
    )
    chat = await api.create_chat(agent_id)
    response = await api.send(chat["id"], "営業時間は?", agent_id=agent_id)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in response.headers
    body = response.content
    assert body.startswith(b": ping\nid: 1\n")
    stream = parse_stream(body)

    # Every block of the body is a full id/event/data frame or the final [DONE], each perhaps
    # after keep-alive lines: a blank line never follows a ping.
    blocks = body.split(b"\n\n")
    assert blocks[-1] == b""
    assert blocks[-2].removeprefix(b": ping\n") + b"\n\n" == DONE
    frames = [block.replace(b": ping\n", b"") for block in blocks[:-2]]
    assert len(frames) == len(stream.events)
    for number, (frame, event) in enumerate(zip(frames, stream.events, strict=True), 1):
        lines = frame.decode().split("\n")
        assert lines[0] == f"id: {number}"
        assert lines[1] == f"event: {event.type}"
        assert lines[2].startswith("data: {")
        assert len(lines) == 3

    response_id = response.headers["x-kaiwa-response-id"]
    assert {event.response_id for event in stream.events} == {response_id}
    assert {event.chat_id for event in stream.events} == {chat["id"]}
    assert stream.types == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.chat.title.updated",
        "response.output_text.completed",
    ]
    created = stream.events[0]
    assert isinstance(created, ResponseCreated)
    assert created.agent_id == agent_id
    assert created.model == "scripted/test"
    assert created.conversation_group_id.startswith("cvg-")

    completed = stream.completed
    assert completed.final_text == stream.deltas == "営業時間は9時から17時です。"
    assert completed.status == "completed"
    usage = completed.usage
    assert usage.total_calls == 2
    assert usage.total_prompt_tokens == 11 + 3
    assert usage.total_completion_tokens == 7 + 2
    assert usage.total_tokens == 23

    user, assistant = await api.messages(chat["id"])
    assert user["id"] == created.user_conversation_id
    assert user["role"] == "user"
    assert user["content"] == "営業時間は?"
    assert user["group_id"] == assistant["group_id"] == created.conversation_group_id
    assert assistant["role"] == "assistant"
    assert assistant["id"] > user["id"]
    assert assistant["content"] == completed.final_text
    assert assistant["meta"]["status"] == "completed"
    assert assistant["meta"]["token_usage"] == usage.model_dump()
    assert assistant["meta"]["agent_profile"]["id"] == agent_id
    assert isinstance(assistant["meta"]["response_time_ms"], int)


async def test_builtin_model_stream_is_whole_characters_and_matches_storage(api: Api) -> None:
    chat = await api.create_chat()
    stream = await api.stream(chat["id"], "こんにちは、何ができますか?")
    deltas = stream.of("response.output_text.delta")
    assert len(deltas) > 3
    assert all(isinstance(d, OutputTextDelta) and d.delta for d in deltas)
    assert "\ufffd" not in stream.deltas
    assert stream.completed.final_text == stream.deltas
    assert stream.types[0] == "response.created"
    assert stream.types[-2:] == ["response.chat.title.updated", "response.output_text.completed"]
    assistant = (await api.messages(chat["id"]))[-1]
    assert assistant["content"] == stream.deltas
    assert assistant["meta"]["token_usage"] == stream.completed.usage.model_dump()


async def test_pings_keep_a_silent_stream_alive(make_api: Callable[..., Awaitable[Api]]) -> None:
    api = await make_api(ping_interval=0.05)
    agent_id = await api.scripted_agent([{"text": "a"}, {"delay": 0.4}, {"text": "b"}])
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "hi", agent_id=agent_id)
    assert stream.raw.startswith(b": ping\n")
    assert stream.raw.count(b": ping\n") >= 4
    assert b": ping\n\n" not in stream.raw
    assert stream.completed.final_text == "ab"


async def test_stream_false_returns_the_final_text(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "Hello"}, {"text": ", world"}])
    chat = await api.create_chat(agent_id)
    response = await api.send(chat["id"], "hi", agent_id=agent_id, stream=False)
    assert response.headers["content-type"] == "application/json"
    body = envelope(response)
    assert response.status_code == 200
    assert body == {"data": "Hello, world", "message": None, "error_code": 0, "pagination": None}
    user, assistant = await api.messages(chat["id"])
    assert (user["content"], assistant["content"]) == ("hi", "Hello, world")
    assert assistant["meta"]["status"] == "completed"


async def test_stream_false_answer_that_ends_after_a_silence_returns_its_text(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    # The final event comes after the idle deadline's scope has ended, long enough after the
    # last event that the deadline would be pushed again: it must not be.
    api = await make_api(idle_timeout=1.0)
    agent_id = await api.scripted_agent([{"text": "slow"}, {"delay": 0.3}])
    chat = await api.create_chat(agent_id)
    assert data(await api.send(chat["id"], "hi", agent_id=agent_id, stream=False)) == "slow"
    assert (await api.messages(chat["id"]))[-1]["meta"]["status"] == "completed"


async def test_stream_false_model_failure_is_502(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "half"}, {"fail": "upstream exploded"}])
    chat = await api.create_chat(agent_id)
    response = await api.send(chat["id"], "hi", agent_id=agent_id, stream=False)
    assert "upstream exploded" in error(response, 502, 10009)
    user, assistant = await api.messages(chat["id"])
    assert user["content"] == "hi"
    assert assistant["meta"]["status"] == "failed"
    assert assistant["content"] == "half"


async def test_model_failure_mid_stream_is_an_error_event_after_the_partial_text(
    api: Api,
) -> None:
    agent_id = await api.scripted_agent(
        [{"text": "Partial "}, {"text": "answer"}, {"fail": "connection reset"}]
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "hi", agent_id=agent_id)
    assert stream.types[0] == "response.created"
    assert stream.deltas == "Partial answer"
    last = stream.events[-1]
    assert isinstance(last, ResponseError)
    assert last.code == 10009
    assert "connection reset" in last.message
    assert not stream.of("response.output_text.completed")
    assistant = (await api.messages(chat["id"]))[-1]
    assert assistant["meta"]["status"] == "failed"
    assert assistant["content"] == "Partial answer"


async def test_idle_timeout_ends_the_stream_with_10008(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(idle_timeout=0.5)
    agent_id = await api.scripted_agent([{"text": "so far"}, {"delay": 3}, {"text": "never"}])
    chat = await api.create_chat(agent_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await api.stream(chat["id"], "hi", agent_id=agent_id)
    elapsed = loop.time() - started
    assert elapsed < 1.5, elapsed
    last = stream.events[-1]
    assert isinstance(last, ResponseError)
    assert last.code == 10008
    assert stream.deltas == "so far"
    assistant = (await api.messages(chat["id"]))[-1]
    assert assistant["meta"]["status"] == "failed"
    assert assistant["content"] == "so far"
    # The chat is free again.
    next_chat_turn = await api.send(chat["id"], "again", agent_id=agent_id, stream=False)
    assert next_chat_turn.status_code == 504


async def _until_running(api: Api, chat_id: int) -> None:
    for _ in range(500):
        rows = await api.messages(chat_id)
        if rows and rows[-1]["meta"]["status"] == "in_progress":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the response never started")


async def test_second_send_while_a_response_runs_is_409_and_stores_nothing(api: Api) -> None:
    agent_id = await api.scripted_agent([{"delay": 0.5}, {"text": "first answer"}])
    chat = await api.create_chat(agent_id)
    first: asyncio.Task[httpx.Response] = asyncio.create_task(
        api.send(chat["id"], "first", agent_id=agent_id)
    )
    await _until_running(api, chat["id"])
    before = await api.counts()
    for streaming in (True, False):
        busy = await api.send(chat["id"], "second", agent_id=agent_id, stream=streaming)
        assert "already running" in error(busy, 409, 10004)
    assert await api.counts() == before

    stream = parse_stream((await first).content)
    assert stream.completed.final_text == "first answer"
    rows = await api.messages(chat["id"])
    assert [(m["role"], m["content"]) for m in rows] == [
        ("user", "first"),
        ("assistant", "first answer"),
    ]
    # Once the first has ended, the chat takes a new message.
    reply = await api.send(chat["id"], "third", agent_id=agent_id, stream=False)
    assert data(reply) == "first answer"


async def test_completed_event_usage_counts_one_call_after_the_first_turn(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "ok"}], usage=SCRIPT_USAGE)
    chat = await api.create_chat(agent_id)
    await api.stream(chat["id"], "one", agent_id=agent_id)
    second = await api.stream(chat["id"], "two", agent_id=agent_id)
    completed = second.events[-1]
    assert isinstance(completed, OutputTextCompleted)
    assert completed.usage.total_calls == 1
    assert completed.usage.total_prompt_tokens == 11
    assert completed.usage.total_completion_tokens == 7
    rows = await api.messages(chat["id"])
    assert len(rows) == 4
    assert len({m["group_id"] for m in rows}) == 2
    assert [m["id"] for m in rows] == sorted(m["id"] for m in rows)


async def test_simultaneous_sends_on_one_chat_start_exactly_one_response(api: Api) -> None:
    agent_id = await api.scripted_agent([{"delay": 0.2}, {"text": "only one"}])
    chat = await api.create_chat(agent_id)
    responses = await asyncio.gather(
        *(api.send(chat["id"], f"message {n}", agent_id=agent_id) for n in range(4))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 409, 409, 409]
    winner = next(response for response in responses if response.status_code == 200)
    assert parse_stream(winner.content).completed.final_text == "only one"
    rows = await api.messages(chat["id"])
    assert [m["role"] for m in rows] == ["user", "assistant"]
    assert rows[1]["meta"]["status"] == "completed"


async def test_messages_are_listed_oldest_first_and_paginated(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "answer"}])
    chat = await api.create_chat(agent_id)
    for n in range(3):
        await api.send(chat["id"], f"question {n}", agent_id=agent_id, stream=False)
    url = f"/api/v1/chats/{chat['id']}/messages"
    body = envelope(await api.get(url, params={"limit": 4}))
    assert [m["content"] for m in body["data"]] == [
        "question 0",
        "answer",
        "question 1",
        "answer",
    ]
    page = body["pagination"]
    assert (page["total_records"], page["total_pages"], page["current_page"]) == (6, 2, 1)
    rest = envelope(await api.client.get(page["next_page"], headers=api.headers()))
    assert [m["content"] for m in rest["data"]] == ["question 2", "answer"]
    assert rest["pagination"]["next_page"] is None
    assert rest["pagination"]["current_page"] == 2
    message = rest["data"][1]
    fields = {"id", "group_id", "role", "content", "created_at", "meta", "attached_files"}
    assert set(message) == fields
    meta = {"agent_profile", "reasoning_steps", "token_usage", "response_time_ms", "status"}
    assert meta <= set(message["meta"])
    # Codeer's fields kaiwa has no value for are there, null.
    codeer_only = ("participant_email", "related_questions", "current_step_index")
    assert [message["meta"][field] for field in codeer_only] == [None, None, None]
    assert message["attached_files"] == []


async def test_shutdown_ends_a_running_response_as_cancelled_and_keeps_its_text(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, ping_interval=30.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with transaction(app.state.sessions) as session:
            workspace, demo = await ensure_demo(session)
            _, key = await create_key(session, workspace.id, name="test")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            api = Api(app, client, key, key, workspace.id, demo.id)
            agent_id = await api.scripted_agent([{"text": "begun"}, {"delay": 30}])
            chat = await api.create_chat(agent_id)
            running = asyncio.create_task(api.send(chat["id"], "hi", agent_id=agent_id))
            await _until_running(api, chat["id"])
            await asyncio.sleep(0.05)
            await app.state.services.runtime.drain(0)
            stream = parse_stream((await running).content)
            assert stream.completed.status == "cancelled"
            assert stream.completed.final_text == "begun"
            assistant = (await api.messages(chat["id"]))[-1]
            assert assistant["meta"]["status"] == "cancelled"
            assert assistant["content"] == "begun"


async def test_minimal_line_based_client_reads_the_answer(api: Api) -> None:
    """The client of the Codeer docs: split on newlines, JSON-parse `data: ` lines, stop at DONE."""
    agent_id = await api.scripted_agent([{"text": "行ごとに"}, {"text": "読める"}])
    chat = await api.create_chat(agent_id)
    response = await api.send(chat["id"], "hi", agent_id=agent_id)
    text, final, done = "", None, False
    for line in response.text.split("\n"):
        if not line.startswith("data: "):
            continue
        payload = line[len("data: ") :]
        if payload == "[DONE]":
            done = True
            break
        event = json.loads(payload)
        if event["type"] == "response.output_text.delta":
            text += event["delta"]
        elif event["type"] == "response.output_text.completed":
            final = event["final_text"]
    assert done
    assert text == final == "行ごとに読める"
