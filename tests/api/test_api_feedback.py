"""Feedback on answers: stored per message and end user, a repeat replaces it; bad input is 4xx."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from api_support import Api, data, error
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store import chats, feedback, workspaces
from kaiwa.store.db import new_id, now, transaction
from kaiwa.store.keys import create_key
from kaiwa.store.models import Feedback, Workspace

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def _turn(api: Api, **chat_fields: Any) -> tuple[int, int, int]:
    """A chat with one answered turn: the chat id, the user message id, the answer's id."""
    chat = await api.create_chat(**chat_fields)
    reply = await api.send(
        chat["id"], "hello", stream=False, external_user_id=chat_fields.get("external_user_id")
    )
    assert isinstance(data(reply), str)
    user, answer = await api.messages(chat["id"])
    assert (user["role"], answer["role"]) == ("user", "assistant")
    return chat["id"], user["id"], answer["id"]


def _url(chat_id: int | str, message_id: int | str) -> str:
    return f"/api/v1/chats/{chat_id}/messages/{message_id}/feedbacks"


async def _rows(api: Api) -> list[tuple[int, int, str, str, str]]:
    """Every stored feedback: (id, message_id, end_user, type, content)."""
    async with api.store() as session:
        rows = await session.execute(
            select(
                Feedback.id, Feedback.message_id, Feedback.end_user, Feedback.type, Feedback.content
            ).order_by(Feedback.id)
        )
        return [tuple(row) for row in rows]


async def _whitelist(api: Api, *allowed: str) -> None:
    async with api.store() as session:
        workspace = await session.get(Workspace, api.workspace_id)
        assert workspace is not None
        workspace.whitelist_mode = True
        for user in allowed:
            await workspaces.allow(session, api.workspace_id, user)


async def test_helpful_feedback_on_an_answer_is_stored_and_returned(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    body = {"type": "sys_helpful", "content": "とても役に立ちました"}
    given = data(await api.post(_url(chat_id, answer_id), json=body))
    assert isinstance(given["id"], int)
    assert given == {
        "id": given["id"],
        "chat_id": chat_id,
        "message_id": answer_id,
        "type": "sys_helpful",
        "content": "とても役に立ちました",
        "external_user_id": None,
        "created_at": given["created_at"],
        "updated_at": given["created_at"],
    }
    assert ISO_Z.match(given["created_at"])
    assert await _rows(api) == [(given["id"], answer_id, "", "sys_helpful", "とても役に立ちました")]


async def test_content_defaults_to_empty_and_a_chat_key_may_give_feedback(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    given = data(
        await api.post(_url(chat_id, answer_id), key=api.chat_key, json={"type": "sys_improve"})
    )
    assert (given["type"], given["content"]) == ("sys_improve", "")
    assert await _rows(api) == [(given["id"], answer_id, "", "sys_improve", "")]


async def test_a_repeat_by_the_same_end_user_replaces_the_feedback(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api, external_user_id="alice")
    url = _url(chat_id, answer_id)
    first = data(await api.post(url, json={"type": "sys_helpful", "external_user_id": "alice"}))
    second = data(
        await api.post(
            url, json={"type": "sys_improve", "content": "too short", "external_user_id": "alice"}
        )
    )
    assert second["id"] == first["id"]
    assert (second["type"], second["content"]) == ("sys_improve", "too short")
    assert second["external_user_id"] == "alice"
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert await _rows(api) == [(first["id"], answer_id, "alice", "sys_improve", "too short")]


async def test_anonymous_repeats_replace_each_other_too(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    url = _url(chat_id, answer_id)
    first = data(await api.post(url, json={"type": "sys_helpful", "content": "x"}))
    second = data(await api.post(url, json={"type": "sys_helpful", "content": None}))
    assert second["id"] == first["id"]
    assert second["content"] == ""
    assert await _rows(api) == [(first["id"], answer_id, "", "sys_helpful", "")]


async def test_a_feedback_racing_a_first_one_replaces_it_instead_of_failing(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    sessions = api.app.state.sessions

    async def give(session: AsyncSession, content: str) -> int:
        chat = await chats.get_chat(session, api.workspace_id, chat_id)
        assert chat is not None
        given = await feedback.give_feedback(
            session, chat, answer_id, end_user="alice", type="sys_improve", content=content
        )
        return given.id

    async def give_alone(content: str) -> int:
        async with transaction(sessions) as session:
            return await give(session, content)

    async with transaction(sessions) as session:
        first = await give(session, "first")
        # Neither sees the other's row: PostgreSQL holds the second on the unique index, SQLite
        # on the write lock, until the first commits.
        racing = asyncio.create_task(give_alone("second"))
        await asyncio.sleep(0.3)
        assert not racing.done()
    assert await racing == first
    assert await _rows(api) == [(first, answer_id, "alice", "sys_improve", "second")]


async def test_different_end_users_get_separate_feedback(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    url = _url(chat_id, answer_id)
    anonymous = data(await api.post(url, json={"type": "sys_helpful"}))
    alice = data(await api.post(url, json={"type": "sys_improve", "external_user_id": "alice"}))
    bob = data(await api.post(url, json={"type": "sys_helpful", "external_user_id": "bob"}))
    assert len({anonymous["id"], alice["id"], bob["id"]}) == 3
    assert [anonymous["external_user_id"], alice["external_user_id"], bob["external_user_id"]] == [
        None,
        "alice",
        "bob",
    ]
    assert await _rows(api) == [
        (anonymous["id"], answer_id, "", "sys_helpful", ""),
        (alice["id"], answer_id, "alice", "sys_improve", ""),
        (bob["id"], answer_id, "bob", "sys_helpful", ""),
    ]


async def test_feedback_on_a_user_message_is_400(api: Api) -> None:
    chat_id, user_id, _ = await _turn(api)
    response = await api.post(_url(chat_id, user_id), json={"type": "sys_helpful"})
    assert "assistant messages" in error(response, 400, 10006)
    assert await _rows(api) == []


async def test_a_message_of_another_chat_is_404_naming_the_message(api: Api) -> None:
    _, _, answer_id = await _turn(api)
    other = await api.create_chat(name="other")
    response = await api.post(_url(other["id"], answer_id), json={"type": "sys_helpful"})
    assert f"Message {answer_id}" in error(response, 404, 10003)
    assert await _rows(api) == []


async def test_unknown_chat_or_message_is_404_naming_it(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    body = {"type": "sys_helpful"}
    unknown_chat = await api.post(_url(chat_id + 1000, answer_id), json=body)
    assert f"Chat {chat_id + 1000}" in error(unknown_chat, 404, 10003)
    unknown_message = await api.post(_url(chat_id, 2**63 - 1), json=body)
    assert f"Message {2**63 - 1}" in error(unknown_message, 404, 10003)
    assert await _rows(api) == []


@pytest.mark.parametrize("bad", ["abc", str(2**70), str(2**63), "0", "-1", "1.5"])
async def test_malformed_ids_are_400_not_500(api: Api, bad: str) -> None:
    chat_id, _, answer_id = await _turn(api)
    body = {"type": "sys_helpful"}
    assert "message_id" in error(await api.post(_url(chat_id, bad), json=body), 400, 10006)
    assert "chat_id" in error(await api.post(_url(bad, answer_id), json=body), 400, 10006)
    assert await _rows(api) == []


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"type": "sys_great"}, ["type", "sys_helpful", "sys_improve"]),
        ({"type": "SYS_HELPFUL"}, ["type", "sys_helpful", "sys_improve"]),
        ({"type": 1}, ["type"]),
        ({"type": None}, ["type"]),
        ({}, ["type"]),
        ({"type": "sys_helpful", "content": "x" * 4_001}, ["content", "4000", "characters"]),
        ({"type": "sys_helpful", "content": 123}, ["content"]),
        ({"type": "sys_helpful", "content": ["good"]}, ["content"]),
        ({"type": "sys_helpful", "content": "nul\x00byte"}, ["content"]),
        ({"type": "sys_helpful", "external_user_id": 7}, ["external_user_id"]),
        ({"type": "sys_helpful", "external_user_id": "u" * 257}, ["external_user_id"]),
    ],
)
async def test_invalid_body_is_400_naming_the_field_and_stores_nothing(
    api: Api, body: dict[str, Any], names: list[str]
) -> None:
    chat_id, _, answer_id = await _turn(api)
    message = error(await api.post(_url(chat_id, answer_id), json=body), 400, 10006)
    for name in names:
        assert name in message
    assert await _rows(api) == []


@pytest.mark.parametrize("content", [b"null", b'["sys_helpful"]', b'{"type": "sys_helpful",'])
async def test_a_body_that_is_not_an_object_is_400(api: Api, content: bytes) -> None:
    chat_id, _, answer_id = await _turn(api)
    response = await api.post(
        _url(chat_id, answer_id), content=content, headers={"content-type": "application/json"}
    )
    error(response, 400, 10006)
    assert await _rows(api) == []


async def test_content_of_4000_characters_is_accepted(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    body = {"type": "sys_improve", "content": "改" * 4_000}
    given = data(await api.post(_url(chat_id, answer_id), json=body))
    assert given["content"] == "改" * 4_000


async def test_the_chat_of_another_workspace_is_404(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api)
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, other_key = await create_key(session, other.id, name="other")
    response = await api.post(_url(chat_id, answer_id), key=other_key, json={"type": "sys_helpful"})
    assert f"Chat {chat_id}" in error(response, 404, 10003)
    assert await _rows(api) == []


async def test_whitelist_mode_rejects_an_unlisted_end_user(api: Api) -> None:
    chat_id, _, answer_id = await _turn(api, external_user_id="alice")
    await _whitelist(api, "alice")
    url = _url(chat_id, answer_id)
    unlisted = await api.post(url, json={"type": "sys_helpful", "external_user_id": "mallory"})
    assert "mallory" in error(unlisted, 403, 14103)
    assert await _rows(api) == []

    given = data(await api.post(url, json={"type": "sys_helpful", "external_user_id": "alice"}))
    assert given["external_user_id"] == "alice"

    # Once the chat's own user is off the list, nobody gives feedback on it.
    async with api.store() as session:
        await workspaces.disallow(session, api.workspace_id, "alice")
    removed = await api.post(url, json={"type": "sys_improve", "external_user_id": "alice"})
    assert "alice" in error(removed, 403, 14103)
    anonymous = await api.post(url, json={"type": "sys_improve"})
    assert "alice" in error(anonymous, 403, 14103)
    assert await _rows(api) == [(given["id"], answer_id, "alice", "sys_helpful", "")]
