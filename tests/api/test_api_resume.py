"""Resume: replay and follow a response's events by cursor, with the key or a resume token;
the stored outcome once the events have expired; the status endpoint for polling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from api_support import DONE, Api, data, error, parse_stream

from kaiwa.protocol import OutputTextCompleted, ResponseCreated, ResponseError, SSEDecoder
from kaiwa.store.db import new_id, now
from kaiwa.store.keys import create_key
from kaiwa.store.models import Response as ResponseRecord
from kaiwa.store.models import Workspace

MakeApi = Callable[..., Awaitable[Api]]
Frame = tuple[int, str, str]
"""One event as sent: its id, its `event:` name, its `data:` JSON."""

ANSWER: list[dict[str, Any]] = [{"text": "one "}, {"text": "two "}, {"text": "three"}]
SLOW_ANSWER: list[dict[str, Any]] = [
    {"text": "one "},
    {"delay": 0.3},
    {"text": "two "},
    {"delay": 0.2},
    {"text": "three"},
]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7}


def frames(body: bytes) -> list[Frame]:
    """The events of an SSE body that ends with one `[DONE]`; ids need not start at 1."""
    assert body.endswith(DONE), body[-200:]
    decoder = SSEDecoder()
    items = decoder.decode(body)
    decoder.flush()
    assert items
    assert items[-1].data == "[DONE]", body[-200:]
    assert [item.data for item in items].count("[DONE]") == 1
    out: list[Frame] = []
    for item in items[:-1]:
        assert item.id is not None
        assert json.loads(item.data)["type"] == item.event
        out.append((int(item.id), item.event, item.data))
    return out


def events_url(chat_id: int, response_id: str) -> str:
    return f"/api/v1/chats/{chat_id}/responses/{response_id}/events"


def status_url(chat_id: int, response_id: str) -> str:
    return f"/api/v1/chats/{chat_id}/responses/{response_id}"


async def finished_turn(
    api: Api, answer: list[dict[str, Any]] | None = None, **script: Any
) -> tuple[int, str, httpx.Response]:
    """A chat with one streamed turn of a scripted agent: chat id, response id, the reply."""
    agent_id = await api.scripted_agent(ANSWER if answer is None else answer, **script)
    chat = await api.create_chat(agent_id)
    reply = await api.send(chat["id"], "hi", agent_id=agent_id)
    assert reply.status_code == 200, reply.text
    return chat["id"], reply.headers["x-kaiwa-response-id"], reply


async def running_turn(
    api: Api, answer: list[dict[str, Any]]
) -> tuple[int, str, asyncio.Task[httpx.Response]]:
    """A chat (no auto-title) whose streamed turn is running: chat id, response id, its send."""
    agent_id = await api.scripted_agent(answer)
    chat = await api.create_chat(agent_id)
    # A renamed chat gets no title event, so the ids of the answer's events are known.
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "named by hand"}))
    send = asyncio.create_task(api.send(chat["id"], "hi", agent_id=agent_id))
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat["id"])
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                return chat["id"], rows[-1]["meta"]["response_id"], send
            await asyncio.sleep(0.01)


async def until_text(api: Api, chat_id: int, response_id: str, text: str) -> dict[str, Any]:
    """Poll the status endpoint until the response has produced exactly `text`."""
    async with asyncio.timeout(5):
        while True:
            status: dict[str, Any] = data(await api.get(status_url(chat_id, response_id)))
            if status["final_text"] == text:
                return status
            await asyncio.sleep(0.01)


async def other_workspace_key(api: Api) -> str:
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, key = await create_key(session, other.id, name="other")
    return key


# --- Replay and follow -------------------------------------------------------------------------


async def test_resume_without_cursor_replays_the_whole_stream(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api, title="Numbers", usage=USAGE)
    original = parse_stream(reply.content)
    assert "response.chat.title.updated" in original.types

    replay = await api.get(events_url(chat_id, response_id))
    assert replay.status_code == 200
    assert replay.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert replay.headers["x-kaiwa-response-id"] == response_id
    assert frames(replay.content) == frames(reply.content)
    assert parse_stream(replay.content).completed.final_text == "one two three"


@pytest.mark.parametrize("cursor", [0, 1, 3, 5])
async def test_resume_replays_after_last_event_id(api: Api, cursor: int) -> None:
    chat_id, response_id, reply = await finished_turn(api)
    original = frames(reply.content)
    assert len(original) == 6  # created, three deltas, title, completed

    by_header = await api.get(
        events_url(chat_id, response_id), headers={"Last-Event-ID": str(cursor)}
    )
    by_query = await api.get(events_url(chat_id, response_id), params={"after": cursor})
    expected = [frame for frame in original if frame[0] > cursor]
    assert frames(by_header.content) == expected
    assert frames(by_query.content) == expected


async def test_resume_after_the_last_event_sends_only_done(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    replay = await api.get(events_url(chat_id, response_id), headers={"Last-Event-ID": "6"})
    assert frames(replay.content) == []


async def test_resume_last_event_id_beats_after(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api)
    replay = await api.get(
        events_url(chat_id, response_id), params={"after": 1}, headers={"Last-Event-ID": "4"}
    )
    assert [frame[0] for frame in frames(replay.content)] == [5, 6]
    assert frames(replay.content) == frames(reply.content)[4:]


async def test_resume_while_running_follows_live_until_done(api: Api) -> None:
    chat_id, response_id, send = await running_turn(api, SLOW_ANSWER)
    status = await until_text(api, chat_id, response_id, "one ")
    assert status["status"] == "in_progress"
    assert not send.done()

    resumed = await api.get(events_url(chat_id, response_id), headers={"Last-Event-ID": "2"})
    original = frames((await send).content)
    followed = frames(resumed.content)
    assert [frame[0] for frame in followed] == list(range(3, len(original) + 1))
    assert followed == original[2:]
    assert [frame[1] for frame in followed] == [
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.completed",
    ]
    completed = OutputTextCompleted.model_validate_json(followed[-1][2])
    assert completed.final_text == "one two three"


async def test_two_readers_of_a_running_response_get_the_same_events(api: Api) -> None:
    chat_id, response_id, send = await running_turn(api, SLOW_ANSWER)
    readers = [asyncio.create_task(api.get(events_url(chat_id, response_id))) for _ in range(2)]
    original = frames((await send).content)
    for reader in readers:
        assert frames((await reader).content) == original


# b"\xb2" is "²" in Latin-1, the headers' encoding: a digit to `str.isdigit`, not to `int`.
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", " 3 4", "9" * 30, b"\xb2"])
async def test_resume_with_a_bad_last_event_id_is_400(api: Api, value: str | bytes) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    raw = value if isinstance(value, bytes) else value.encode()
    headers = [(b"x-api-key", api.key.encode()), (b"last-event-id", raw)]
    reply = await api.client.get(events_url(chat_id, response_id), headers=headers)
    assert "Last-Event-ID" in error(reply, 400, 10006)


async def test_resume_with_a_bad_after_is_400(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    for value in ("-1", "abc"):
        reply = await api.get(events_url(chat_id, response_id), params={"after": value})
        assert "after" in error(reply, 400, 10006)


async def test_resume_of_an_unknown_or_foreign_response_is_404(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    other_chat = await api.create_chat()
    other_key = await other_workspace_key(api)
    not_found = [
        await api.get(events_url(chat_id, new_id())),
        await api.get(events_url(other_chat["id"], response_id)),
        await api.get(events_url(10**9, response_id)),
        await api.get(events_url(chat_id, response_id), key=other_key),
    ]
    for reply in not_found:
        error(reply, 404, 10003)


async def test_resume_with_a_malformed_response_id_is_400(api: Api) -> None:
    chat_id, _, _ = await finished_turn(api)
    reply = await api.get(events_url(chat_id, "not-a-uuid"))
    error(reply, 400, 10006)


async def test_resume_without_key_or_token_is_401(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    error(await api.client.get(events_url(chat_id, response_id)), 401, 10001)
    error(await api.get(events_url(chat_id, response_id), key="kw_not-a-key"), 401, 10001)


# --- Resume tokens ----------------------------------------------------------------------------


def resume_token(reply: httpx.Response) -> str:
    created = parse_stream(reply.content).events[0]
    assert isinstance(created, ResponseCreated)
    assert created.resume_token
    return created.resume_token


async def test_resume_token_reads_the_events_without_a_key(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api)
    token = resume_token(reply)
    url = events_url(chat_id, response_id)

    replay = await api.client.get(url, params={"token": token})
    assert replay.status_code == 200
    assert frames(replay.content) == frames(reply.content)
    after = await api.client.get(url, params={"token": token}, headers={"Last-Event-ID": "4"})
    assert frames(after.content) == frames(reply.content)[4:]


async def test_resume_token_is_refused_for_another_response_or_chat(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api)
    token = resume_token(reply)
    other_chat_id, other_response_id, _ = await finished_turn(api)
    refused = [
        await api.client.get(events_url(other_chat_id, other_response_id), params={"token": token}),
        await api.client.get(events_url(chat_id, other_response_id), params={"token": token}),
        await api.client.get(events_url(other_chat_id, response_id), params={"token": token}),
    ]
    for reply in refused:
        assert "resume token" in error(reply, 401, 10001)


async def test_tampered_resume_token_is_refused(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api)
    token = resume_token(reply)
    payload, _, signature = token.partition(".")
    flipped = "A" if signature[0] != "A" else "B"
    tampered = [
        f"{payload}.{flipped}{signature[1:]}",
        f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{signature}",
        payload,
        "",
        "not.a-token",
    ]
    for value in tampered:
        reply = await api.client.get(events_url(chat_id, response_id), params={"token": value})
        error(reply, 401, 10001)


async def test_resume_token_expires_after_its_ttl(make_api: MakeApi) -> None:
    api = await make_api(resume_token_ttl=0.5)
    chat_id, response_id, reply = await finished_turn(api)
    token = resume_token(reply)
    url = events_url(chat_id, response_id)
    # Within its lifetime (not cut short to a whole second)…
    assert (await api.client.get(url, params={"token": token})).status_code == 200
    await asyncio.sleep(0.6)
    # …and not after it.
    reply = await api.client.get(url, params={"token": token})
    assert "expired" in error(reply, 401, 10001)
    # The key still reads the events.
    assert (await api.get(url)).status_code == 200


async def test_resume_token_stays_valid_across_a_restart(make_api: MakeApi) -> None:
    first = await make_api()
    chat_id, response_id, reply = await finished_turn(first, usage=USAGE)
    token = resume_token(reply)

    # A second app on the same database: a new process, a new (empty) event log.
    second = await make_api()
    url = events_url(chat_id, response_id)
    replay = await second.client.get(url, params={"token": token})
    assert replay.status_code == 200
    # The stored outcome, as the stream ended.
    assert frames(replay.content) == frames(reply.content)[-1:]
    forged = await second.client.get(url, params={"token": token[:-2] + "AA"})
    error(forged, 401, 10001)


# --- After the events have expired -------------------------------------------------------------


async def until_expired(api: Api, response_id: str) -> None:
    """Wait until the app's event log no longer holds the response's events."""
    for _ in range(250):
        if await api.app.state.services.log.read(response_id, 0, wait=0) is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the events of {response_id} never expired")


async def test_expired_log_ends_with_the_stored_outcome(make_api: MakeApi) -> None:
    api = await make_api(log_retention=0.05)
    chat_id, response_id, reply = await finished_turn(api, usage=USAGE)
    original = frames(reply.content)
    await until_expired(api, response_id)

    replay = await api.get(events_url(chat_id, response_id), headers={"Last-Event-ID": "3"})
    assert replay.status_code == 200
    assert replay.headers["content-type"] == "text/event-stream; charset=utf-8"
    (only,) = frames(replay.content)
    # The terminal event again, with its own id: a client's cursor stays monotonic.
    assert only == original[-1]
    assert only[:2] == (6, "response.output_text.completed")
    ending = OutputTextCompleted.model_validate_json(only[2])
    assert (ending.response_id, ending.chat_id) == (response_id, chat_id)
    assert ending.final_text == "one two three"
    assert ending.usage.total_calls == 2  # the answer and the title
    assert ending.usage.total_completion_tokens >= USAGE["completion_tokens"]
    assert ending.status == "completed"


async def test_expired_log_after_its_end_sends_only_done(make_api: MakeApi) -> None:
    api = await make_api(log_retention=0.05)
    chat_id, response_id, _ = await finished_turn(api)
    await until_expired(api, response_id)
    for cursor in ("6", "7"):
        replay = await api.get(events_url(chat_id, response_id), headers={"Last-Event-ID": cursor})
        assert frames(replay.content) == []


async def test_expired_log_without_a_stored_end_id_numbers_after_the_cursor(
    make_api: MakeApi,
) -> None:
    # Responses stored before the end id was kept: the ending follows the client's cursor.
    api = await make_api(log_retention=0.05)
    chat_id, response_id, reply = await finished_turn(api)
    await until_expired(api, response_id)
    async with api.store() as session:
        record = await session.get(ResponseRecord, response_id)
        assert record is not None
        record.last_event_id = None

    replay = await api.get(events_url(chat_id, response_id), headers={"Last-Event-ID": "3"})
    (only,) = frames(replay.content)
    assert only == (4, *frames(reply.content)[-1][1:])


async def test_expired_log_of_a_failed_response_ends_with_its_error(make_api: MakeApi) -> None:
    api = await make_api(log_retention=0.05)
    chat_id, response_id, reply = await finished_turn(
        api, [{"text": "half"}, {"fail": "upstream exploded"}]
    )
    original = frames(reply.content)
    await until_expired(api, response_id)

    replay = await api.get(events_url(chat_id, response_id), params={"after": 2})
    (only,) = frames(replay.content)
    assert only == original[-1]
    assert only[:2] == (len(original), "response.error")
    ending = ResponseError.model_validate_json(only[2])
    assert ending.code == 10009
    assert "upstream exploded" in ending.message


async def test_expired_log_of_another_chat_is_still_404(make_api: MakeApi) -> None:
    api = await make_api(log_retention=0.05)
    _, response_id, _ = await finished_turn(api)
    other_chat = await api.create_chat()
    await until_expired(api, response_id)
    error(await api.get(events_url(other_chat["id"], response_id)), 404, 10003)


# --- Status -----------------------------------------------------------------------------------


async def test_status_while_running_shows_the_text_so_far(api: Api) -> None:
    chat_id, response_id, send = await running_turn(api, SLOW_ANSWER)
    status = await until_text(api, chat_id, response_id, "one ")
    assert status["status"] == "in_progress"
    assert status["id"] == response_id
    assert status["chat_id"] == chat_id
    assert status["error"] is None
    assert status["finished_at"] is None
    parse_stream((await send).content)


async def test_status_after_completion(api: Api) -> None:
    chat_id, response_id, reply = await finished_turn(api, usage=USAGE)
    completed = parse_stream(reply.content).completed
    status = data(await api.get(status_url(chat_id, response_id)))
    user, assistant = await api.messages(chat_id)
    assert status["status"] == "completed"
    assert status["final_text"] == completed.final_text == "one two three"
    assert status["usage"] == completed.usage.model_dump()
    assert status["user_message_id"] == user["id"]
    assert status["assistant_message_id"] == assistant["id"]
    assert status["model"] == "scripted/test"
    assert status["error"] is None
    assert status["finished_at"] is not None


async def test_status_of_a_failed_response_carries_its_error(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api, [{"text": "half"}, {"fail": "boom"}])
    status = data(await api.get(status_url(chat_id, response_id)))
    assert status["status"] == "failed"
    assert status["final_text"] == "half"
    assert status["error"]["code"] == 10009
    assert "boom" in status["error"]["message"]


async def test_status_of_an_unknown_or_foreign_response_is_404(api: Api) -> None:
    chat_id, response_id, _ = await finished_turn(api)
    other_key = await other_workspace_key(api)
    error(await api.get(status_url(chat_id, new_id())), 404, 10003)
    error(await api.get(status_url(chat_id, response_id), key=other_key), 404, 10003)
    error(await api.client.get(status_url(chat_id, response_id)), 401, 10001)
