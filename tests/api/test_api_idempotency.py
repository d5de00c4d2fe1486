"""Repeated requests answer once: `Idempotency-Key` on send, regenerate, form submit and batch
create, and a retried send that carries `Last-Event-ID` without a key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from api_support import Api, data, error, parse_stream
from sqlalchemy import func, select
from test_api_resume import SLOW_ANSWER, frames, other_workspace_key, until_text
from test_api_tool_loop import FORM_SCHEMA, agent, call

from kaiwa.store import idempotency
from kaiwa.store.db import now
from kaiwa.store.models import Batch, IdempotencyKey, Response

MakeApi = Callable[..., Awaitable[Api]]
ANSWER: list[dict[str, Any]] = [{"text": "one "}, {"text": "two "}, {"text": "three"}]


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


async def send(api: Api, chat_id: int, agent_id: str, headers: dict[str, Any], **body: Any) -> Any:
    body = {"message": "hi", "agent_id": agent_id, **body}
    return await api.post(f"/api/v1/chats/{chat_id}/messages", json=body, headers=headers)


async def stored_responses(api: Api) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(Response)) or 0)


async def scripted_chat(api: Api, answer: list[dict[str, Any]] | None = None) -> tuple[str, int]:
    agent_id = await api.scripted_agent(answer or ANSWER)
    chat = await api.create_chat(agent_id)
    return agent_id, chat["id"]


# --- Idempotency-Key on send -------------------------------------------------------------------


async def test_a_repeated_send_replays_the_same_answer(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    first = await send(api, chat_id, agent_id, keyed("k-1"))
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = await send(api, chat_id, agent_id, keyed("k-1"))
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-kaiwa-response-id"] == first.headers["x-kaiwa-response-id"]
    assert frames(again.content) == frames(first.content)
    assert len(await api.messages(chat_id)) == 2
    assert await stored_responses(api) == 1

    # With Last-Event-ID, the replay starts after it.
    after = await send(api, chat_id, agent_id, keyed("k-1", **{"Last-Event-ID": "3"}))
    assert [f[0] for f in frames(after.content)] == [f[0] for f in frames(first.content)][3:]
    # A new key is a new turn.
    other = await send(api, chat_id, agent_id, keyed("k-2"))
    assert other.headers["x-kaiwa-response-id"] != first.headers["x-kaiwa-response-id"]
    assert len(await api.messages(chat_id)) == 4


async def test_a_repeat_while_the_answer_runs_follows_it_live(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api, SLOW_ANSWER)
    first = asyncio.create_task(send(api, chat_id, agent_id, keyed("live")))
    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while not rows:
            rows = [m for m in await api.messages(chat_id) if m["role"] == "assistant"]
    await until_text(api, chat_id, rows[0]["meta"]["response_id"], "one ")
    again = await send(api, chat_id, agent_id, keyed("live"))
    original = await first
    assert again.headers["idempotent-replayed"] == "true"
    assert frames(again.content) == frames(original.content)
    assert parse_stream(again.content).completed.final_text == "one two three"
    assert await stored_responses(api) == 1


async def test_a_repeat_without_streaming_gets_the_stored_text(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api, SLOW_ANSWER)
    first, again = await asyncio.gather(
        send(api, chat_id, agent_id, keyed("quiet"), stream=False),
        send(api, chat_id, agent_id, keyed("quiet"), stream=False),
    )
    assert data(first) == data(again) == "one two three"
    replayed = [r.headers.get("idempotent-replayed") for r in (first, again)]
    assert sorted(replayed, key=str) == [None, "true"]
    assert await stored_responses(api) == 1
    later = await send(api, chat_id, agent_id, keyed("quiet"), stream=False)
    assert data(later) == "one two three"
    assert await stored_responses(api) == 1


async def test_racing_repeats_start_one_answer(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api, SLOW_ANSWER)
    replies = await asyncio.gather(*(send(api, chat_id, agent_id, keyed("race")) for _ in range(4)))
    assert {r.status_code for r in replies} == {200}
    assert len({r.headers["x-kaiwa-response-id"] for r in replies}) == 1
    assert [r.headers.get("idempotent-replayed") for r in replies].count(None) == 1
    assert len({tuple(frames(r.content)) for r in replies}) == 1
    assert len(await api.messages(chat_id)) == 2


async def test_the_same_key_with_another_request_is_refused(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    assert (await send(api, chat_id, agent_id, keyed("once"))).status_code == 200
    message = error(await send(api, chat_id, agent_id, keyed("once"), message="else"), 409, 10004)
    assert "different request" in message
    regenerate = await api.post(
        f"/api/v1/chats/{chat_id}/regenerate", json={"agent_id": agent_id}, headers=keyed("once")
    )
    error(regenerate, 409, 10004)
    other_chat = await api.create_chat(agent_id)
    error(await send(api, other_chat["id"], agent_id, keyed("once")), 409, 10004)
    assert len(await api.messages(chat_id)) == 2
    assert await api.messages(other_chat["id"]) == []


async def test_a_refused_request_does_not_use_up_its_key(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    refused = await send(api, chat_id, api.demo_agent_id, keyed("fix-and-retry"))
    error(refused, 400, 10006)
    assert (await send(api, chat_id, agent_id, keyed("fix-and-retry"))).status_code == 200
    assert await stored_responses(api) == 1


async def test_bad_keys_are_refused(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    for bad in ["x" * 256, "  ", "ключ".encode()]:
        message = error(await send(api, chat_id, agent_id, {"Idempotency-Key": bad}), 400, 10006)
        assert "Idempotency-Key" in message
    assert await api.messages(chat_id) == []


async def test_a_key_expires(make_api: MakeApi) -> None:
    api = await make_api(idempotency_ttl=0.3)
    agent_id, chat_id = await scripted_chat(api)
    first = await send(api, chat_id, agent_id, keyed("short"))
    await asyncio.sleep(0.4)
    second = await send(api, chat_id, agent_id, keyed("short"))
    assert "idempotent-replayed" not in second.headers
    assert second.headers["x-kaiwa-response-id"] != first.headers["x-kaiwa-response-id"]
    assert await stored_responses(api) == 2


async def test_keys_belong_to_a_workspace(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    assert (await send(api, chat_id, agent_id, keyed("mine"))).status_code == 200
    async with api.store() as session:
        row = await session.get(IdempotencyKey, (api.workspace_id, "mine"))
        assert row is not None
        assert row.chat_id == chat_id


async def test_expired_keys_are_purged(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    await send(api, chat_id, agent_id, keyed("old"))
    await send(api, chat_id, agent_id, keyed("new"))
    async with api.store() as session:
        old = await session.get(IdempotencyKey, (api.workspace_id, "old"))
        assert old is not None
        old.created_at = now() - timedelta(days=2)
    async with api.store() as session:
        assert await idempotency.purge(session, before=now() - timedelta(days=1)) == 1
    async with api.store() as session:
        keys = await session.scalars(select(IdempotencyKey.key))
        assert list(keys) == ["new"]


# --- Regenerate, forms, batches ----------------------------------------------------------------


async def test_a_repeated_regenerate_answers_once(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    assert (await send(api, chat_id, agent_id, {})).status_code == 200
    url = f"/api/v1/chats/{chat_id}/regenerate"
    first = await api.post(url, json={"agent_id": agent_id}, headers=keyed("regen"))
    again = await api.post(url, json={"agent_id": agent_id}, headers=keyed("regen"))
    assert again.headers["idempotent-replayed"] == "true"
    assert frames(again.content) == frames(first.content)
    assert await stored_responses(api) == 2
    assert len(await api.messages(chat_id)) == 3


async def test_a_repeated_form_submit_replays_the_turn_instead_of_409(api: Api) -> None:
    agent_id = await agent(
        api,
        tools=[{"type": "request_form", "custom_form_schema": FORM_SCHEMA}],
        rounds=[[{"text": "先にフォームを。"}, call("request_form")], [{"text": "どうも。"}]],
    )
    chat = await api.create_chat(agent_id)
    paused = await api.stream(chat["id"], "申し込みたいです", agent_id=agent_id)
    start = next(e for e in paused.events if e.type == "response.reasoning_step.start")
    form_id = start.step.args["form_request_id"]  # type: ignore[attr-defined]
    url = f"/api/v1/chats/{chat['id']}/form-requests/{form_id}/submit"
    body = {"values": {"name": "山田", "age": 42, "plan": "pro"}}
    first = await api.post(url, json=body, headers=keyed("form"))
    again = await api.post(url, json=body, headers=keyed("form"))
    assert again.status_code == 200, again.text
    assert frames(again.content) == frames(first.content)
    assert parse_stream(again.content).completed.final_text == "どうも。"
    # Without the key, a second submit is still refused.
    error(await api.post(url, json=body), 409, 10004)


async def test_a_repeated_batch_create_returns_the_same_batch(api: Api) -> None:
    agent_id = await api.scripted_agent(ANSWER)
    body = {"agent_id": agent_id, "requests": [{"custom_id": "a", "message": "hi"}]}
    first, again = await asyncio.gather(
        api.post("/api/v1/batches", json=body, headers=keyed("batch")),
        api.post("/api/v1/batches", json=body, headers=keyed("batch")),
    )
    assert data(first)["id"] == data(again)["id"]
    later = await api.post("/api/v1/batches", json=body, headers=keyed("batch"))
    assert data(later)["id"] == data(first)["id"]
    assert later.headers["idempotent-replayed"] == "true"
    changed = {**body, "requests": [{"custom_id": "b", "message": "hi"}]}
    error(await api.post("/api/v1/batches", json=changed, headers=keyed("batch")), 409, 10004)
    async with api.store() as session:
        assert await session.scalar(select(func.count()).select_from(Batch)) == 1


# --- A retried send with Last-Event-ID and no key ----------------------------------------------


async def test_a_retried_send_with_last_event_id_resumes_the_latest_turn(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    first = await send(api, chat_id, agent_id, {})
    retried = await send(api, chat_id, agent_id, {"Last-Event-ID": "2"})
    assert retried.status_code == 200, retried.text
    assert retried.headers["x-kaiwa-response-id"] == first.headers["x-kaiwa-response-id"]
    assert frames(retried.content) == frames(first.content)[2:]
    assert len(await api.messages(chat_id)) == 2

    # Another message, or the same one without the header, is a new turn.
    other = await send(api, chat_id, agent_id, {"Last-Event-ID": "2"}, message="next")
    assert other.headers["x-kaiwa-response-id"] != first.headers["x-kaiwa-response-id"]
    plain = await send(api, chat_id, agent_id, {}, message="next")
    assert plain.headers["x-kaiwa-response-id"] != other.headers["x-kaiwa-response-id"]
    assert await stored_responses(api) == 3


async def test_a_retried_send_whose_events_are_gone_starts_anew(make_api: MakeApi) -> None:
    api = await make_api(log_retention=0)
    agent_id, chat_id = await scripted_chat(api)
    first = await send(api, chat_id, agent_id, {})
    log = api.app.state.services.log
    async with asyncio.timeout(5):
        while await log.read(first.headers["x-kaiwa-response-id"], 0, wait=0):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    retried = await send(api, chat_id, agent_id, {"Last-Event-ID": "2"})
    assert retried.headers["x-kaiwa-response-id"] != first.headers["x-kaiwa-response-id"]
    assert parse_stream(retried.content).completed.final_text == "one two three"
    assert await stored_responses(api) == 2


async def test_a_retried_send_in_another_workspace_gets_nothing(api: Api) -> None:
    agent_id, chat_id = await scripted_chat(api)
    await send(api, chat_id, agent_id, {})
    reply = await api.post(
        f"/api/v1/chats/{chat_id}/messages",
        key=await other_workspace_key(api),
        json={"message": "hi", "agent_id": agent_id},
        headers={"Last-Event-ID": "2"},
    )
    error(reply, 404, 10003)
