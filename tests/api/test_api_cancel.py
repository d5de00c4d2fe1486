"""Stopping a response: the cancel endpoint, and `if_busy` (reject, or interrupt what runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from api_support import DONE, Api, data, error, parse_stream

from kaiwa.protocol import ResponseError
from kaiwa.protocol.sse import PING

# Long enough that a test always stops it first; a stopped answer never waits it out.
PARTIAL_THEN_WAIT: list[dict[str, Any]] = [
    {"text": "partial "},
    *[{"delay": 0.5}] * 6,
    {"text": "never"},
]


def cancel_url(chat_id: int, response_id: str) -> str:
    return f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel"


async def running_turn(
    api: Api, answer: list[dict[str, Any]]
) -> tuple[int, str, str, asyncio.Task[httpx.Response]]:
    """A renamed chat (no title event) whose streamed turn has produced its first text.

    Returns the chat id, the agent id, the response id, and the task of the send.
    """
    agent_id = await api.scripted_agent(answer)
    chat = await api.create_chat(agent_id)
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "named by hand"}))
    send = asyncio.create_task(api.send(chat["id"], "hi", agent_id=agent_id))
    response_id = await until_partial(api, chat["id"])
    return chat["id"], agent_id, response_id, send


async def republish(api: Api, agent_id: str, answer: list[dict[str, Any]]) -> None:
    """Publish a new version of a scripted agent: the chat's next turn follows `answer`."""
    meta = {"model_settings": {"script": {"answer": answer}}}
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"meta": meta}))
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))


async def until_partial(api: Api, chat_id: int) -> str:
    """The id of the chat's running response, once it has produced some text."""
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat_id)
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                response_id: str = rows[-1]["meta"]["response_id"]
                url = f"/api/v1/chats/{chat_id}/responses/{response_id}"
                if data(await api.get(url))["final_text"]:
                    return response_id
            await asyncio.sleep(0.01)


async def test_cancel_ends_the_stream_with_completed_cancelled_and_keeps_the_text(
    api: Api,
) -> None:
    chat_id, _, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    loop = asyncio.get_running_loop()
    started = loop.time()

    reply = data(await api.post(cancel_url(chat_id, response_id)))
    assert loop.time() - started < 1.0
    assert reply["status"] == "cancelled"
    assert reply["final_text"] == "partial "
    assert reply["finished_at"] is not None

    stream = parse_stream((await send).content)
    completed = stream.completed
    assert completed.status == "cancelled"
    assert completed.final_text == stream.deltas == "partial "
    # The model call that was stopped counts, with the tokens it reported (none).
    assert completed.usage.total_calls == 1
    assert reply["usage"] == completed.usage.model_dump()
    _, assistant = await api.messages(chat_id)
    assert assistant["meta"]["status"] == "cancelled"
    assert assistant["content"] == "partial "
    assert assistant["meta"]["token_usage"] == completed.usage.model_dump()


async def test_cancel_ends_every_reader_of_the_response(api: Api) -> None:
    chat_id, _, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    events = f"/api/v1/chats/{chat_id}/responses/{response_id}/events"
    reader = asyncio.create_task(api.get(events, headers={"Last-Event-ID": "1"}))
    await asyncio.sleep(0.05)
    data(await api.post(cancel_url(chat_id, response_id)))

    original = parse_stream((await send).content)
    resumed = (await reader).content
    assert original.completed.status == "cancelled"
    assert original.raw.endswith(resumed.removeprefix(PING))
    assert b'"status":"cancelled"' in resumed


async def test_cancel_is_idempotent(api: Api) -> None:
    chat_id, _, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    replies = await asyncio.gather(
        api.post(cancel_url(chat_id, response_id)), api.post(cancel_url(chat_id, response_id))
    )
    again = await api.post(cancel_url(chat_id, response_id))
    first = data(replies[0])
    assert first["status"] == "cancelled"
    for reply in (*replies[1:], again):
        assert data(reply) == first
    stream = parse_stream((await send).content)
    assert stream.of("response.output_text.completed") == [stream.completed]


async def test_cancel_of_a_finished_response_leaves_it_completed(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "done"}])
    chat = await api.create_chat(agent_id)
    reply = await api.send(chat["id"], "hi", agent_id=agent_id)
    response_id = reply.headers["x-kaiwa-response-id"]
    cancelled = data(await api.post(cancel_url(chat["id"], response_id)))
    assert cancelled["status"] == "completed"
    assert cancelled["final_text"] == "done"
    assert (await api.messages(chat["id"]))[-1]["meta"]["status"] == "completed"


async def test_cancel_of_an_unknown_or_foreign_response_is_404(api: Api) -> None:
    chat_id, _, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    other_chat = await api.create_chat()
    error(await api.post(cancel_url(other_chat["id"], response_id)), 404, 10003)
    error(await api.post(cancel_url(chat_id, "4f1c2b8e-0000-4000-8000-000000000000")), 404, 10003)
    error(await api.client.post(cancel_url(chat_id, response_id)), 401, 10001)
    # None of these stopped it.
    assert data(await api.post(cancel_url(chat_id, response_id)))["status"] == "cancelled"
    assert parse_stream((await send).content).completed.status == "cancelled"


async def test_the_chat_takes_a_new_message_after_a_cancel(api: Api) -> None:
    chat_id, agent_id, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    data(await api.post(cancel_url(chat_id, response_id)))
    await send
    # Republished without a script, the scripted model echoes.
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"meta": {}}))
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))
    reply = await api.send(chat_id, "again", agent_id=agent_id, stream=False)
    assert data(reply) == "Echo: again"


# --- if_busy ----------------------------------------------------------------------------------


async def test_busy_chat_rejects_a_second_message_and_stores_nothing(api: Api) -> None:
    chat_id, agent_id, response_id, send = await running_turn(api, PARTIAL_THEN_WAIT)
    before = await api.counts()
    for fields in ({}, {"if_busy": "reject"}, {"stream": False}):
        busy = await api.send(chat_id, "second", agent_id=agent_id, **fields)
        assert "already running" in error(busy, 409, 10004)
    assert await api.counts() == before
    # The running response went on untouched.
    status = data(await api.get(f"/api/v1/chats/{chat_id}/responses/{response_id}"))
    assert status["status"] == "in_progress"
    data(await api.post(cancel_url(chat_id, response_id)))
    await send


async def test_if_busy_interrupt_ends_the_running_response_and_answers(api: Api) -> None:
    chat_id, agent_id, first_id, first = await running_turn(api, PARTIAL_THEN_WAIT)
    # The next turn runs the newly published version: a quick answer.
    await republish(api, agent_id, [{"text": "second answer"}])

    second = await api.send(chat_id, "second", agent_id=agent_id, if_busy="interrupt")
    assert second.status_code == 200, second.text
    assert second.headers["x-kaiwa-response-id"] != first_id
    assert parse_stream(second.content).completed.final_text == "second answer"

    interrupted = parse_stream((await first).content)
    last = interrupted.events[-1]
    assert isinstance(last, ResponseError)
    assert last.code == 10010
    assert interrupted.deltas == "partial "
    assert not interrupted.of("response.output_text.completed")

    rows = await api.messages(chat_id)
    assert [(m["role"], m["content"], m["meta"]["status"]) for m in rows] == [
        ("user", "hi", "completed"),
        ("assistant", "partial ", "cancelled"),
        ("user", "second", "completed"),
        ("assistant", "second answer", "completed"),
    ]
    status = data(await api.get(f"/api/v1/chats/{chat_id}/responses/{first_id}"))
    assert status["status"] == "cancelled"
    assert status["error"]["code"] == 10010


async def test_if_busy_interrupt_on_an_idle_chat_just_sends(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "fine"}])
    chat = await api.create_chat(agent_id)
    reply = await api.send(chat["id"], "hi", agent_id=agent_id, if_busy="interrupt", stream=False)
    assert data(reply) == "fine"


async def test_unknown_turn_options_are_400(api: Api) -> None:
    chat = await api.create_chat()
    before = await api.counts()
    for fields in ({"if_busy": "wait"}, {"on_disconnect": "pause"}):
        reply = await api.send(chat["id"], "hi", **fields)
        assert next(iter(fields)) in error(reply, 400, 10006)
    assert await api.counts() == before


async def test_interrupted_response_ends_with_its_error_after_the_log_expired(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(log_retention=0.05)
    chat_id, agent_id, first_id, first = await running_turn(api, PARTIAL_THEN_WAIT)
    await republish(api, agent_id, [{"text": "second answer"}])
    data(await api.send(chat_id, "second", agent_id=agent_id, if_busy="interrupt", stream=False))
    original = parse_stream((await first).content)
    for _ in range(250):
        if await api.app.state.services.log.read(first_id, 0, wait=0) is None:
            break
        await asyncio.sleep(0.02)

    # The stream ended with error 10010: so does its replay, from what was stored.
    assert isinstance(original.events[-1], ResponseError)
    *_, terminal, done, end = original.raw.split(b"\n\n")
    assert (done + b"\n\n", end) == (DONE, b"")
    while terminal.startswith(PING):  # a keep-alive line may precede the frame
        terminal = terminal.removeprefix(PING)
    events = f"/api/v1/chats/{chat_id}/responses/{first_id}/events"
    replay = await api.get(events, headers={"Last-Event-ID": "1"})
    assert replay.content == PING + terminal + b"\n\n" + DONE
