"""The repository the runtime stores attachments with, and ephemeral expiry, on both databases."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from api_support import Api, data
from sqlalchemy import select
from test_files import other_workspace_key, upload

from kaiwa.files import sweep
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store import files, messages
from kaiwa.store.db import now
from kaiwa.store.models import MessageFile, UploadedFile


async def _upload(api: Api, name: str = "a.txt", *, key: str | None = None, **kw: Any) -> str:
    file = data(await upload(api, name, f"text of {name}".encode(), "text/plain", key=key, **kw))
    file_uuid: str = file["uuid"]
    return file_uuid


async def _user_message(api: Api, chat_id: int, content: str = "hi") -> int:
    async with api.store() as session:
        message_id = await messages.insert_message(
            session,
            chat_id=chat_id,
            group_id=f"cvg-{uuid.uuid4()}",
            role="user",
            content=content,
            status="completed",
            meta={},
        )
        return message_id


async def test_check_attachable_returns_the_files_in_the_order_given(api: Api) -> None:
    first, second, third = [await _upload(api, f"{n}.txt") for n in "abc"]
    async with api.store() as session:
        found = await files.check_attachable(
            session, api.workspace_id, [third, first.upper(), second]
        )
        assert [file.uuid for file in found] == [third, first, second]
        assert await files.check_attachable(session, api.workspace_id, []) == []


async def test_check_attachable_refuses_unknown_foreign_malformed_and_repeated_uuids(
    api: Api,
) -> None:
    mine = await _upload(api)
    theirs = await _upload(api, key=await other_workspace_key(api))
    unknown = str(uuid.uuid4())
    cases = [
        ([mine, unknown], ErrorCode.NOT_FOUND, f"File {unknown} not found"),
        ([theirs], ErrorCode.NOT_FOUND, f"File {theirs} not found"),
        ([mine, "not-a-uuid"], ErrorCode.BAD_REQUEST, "'not-a-uuid' is not a valid UUID"),
        ([mine, mine.upper()], ErrorCode.BAD_REQUEST, "attached twice"),
    ]
    for uuids, code, words in cases:
        async with api.store() as session:
            with pytest.raises(ApiError) as raised:
                await files.check_attachable(session, api.workspace_id, uuids)
        assert raised.value.code == code
        assert words in raised.value.message
        assert raised.value.status == (404 if code == ErrorCode.NOT_FOUND else 400)


async def test_link_and_files_of_messages_keep_attachment_order(api: Api) -> None:
    chat = await api.create_chat()
    first_message = await _user_message(api, chat["id"])
    second_message = await _user_message(api, chat["id"])
    bare_message = await _user_message(api, chat["id"])
    a, b, c = [await _upload(api, f"{n}.txt") for n in "abc"]
    async with api.store() as session:
        attach = await files.check_attachable(session, api.workspace_id, [c, a])
        files.link(session, chat_id=chat["id"], message_id=first_message, files=attach)
        attach = await files.check_attachable(session, api.workspace_id, [b, c])
        files.link(session, chat_id=chat["id"], message_id=second_message, files=attach)
    async with api.store() as session:
        attached = await files.files_of_messages(
            session, [first_message, second_message, bare_message]
        )
        assert {key: [file.uuid for file in value] for key, value in attached.items()} == {
            first_message: [c, a],
            second_message: [b, c],
            bare_message: [],
        }
        assert attached[first_message][0].original_name == "c.txt"
        assert await files.files_of_messages(session, []) == {}
        rows = await session.scalars(
            select(MessageFile).where(MessageFile.message_id == first_message)
        )
        assert sorted((row.position, row.chat_id) for row in rows) == [
            (0, chat["id"]),
            (1, chat["id"]),
        ]

        # Every file of the chat once, in the order first attached.
        chat_files = await files.chat_files(session, chat["id"])
        assert [file.uuid for file in chat_files] == [c, a, b]
        earlier = await files.chat_files(session, chat["id"], before_message_id=second_message)
        assert [file.uuid for file in earlier] == [c, a]


async def test_sweep_removes_only_unattached_ephemeral_files_past_their_time(api: Api) -> None:
    options = '{"scope": "ephemeral"}'
    loose = await _upload(api, "loose.txt", options=options)
    attached = await _upload(api, "attached.txt", options=options)
    persistent = await _upload(api, "persistent.txt")
    chat = await api.create_chat()
    message_id = await _user_message(api, chat["id"])
    async with api.store() as session:
        attach = await files.check_attachable(session, api.workspace_id, [attached])
        files.link(session, chat_id=chat["id"], message_id=message_id, files=attach)
        keys = {file.uuid: file.storage_key for file in await session.scalars(select(UploadedFile))}
    blobs = api.app.state.files
    sessions = api.app.state.sessions

    # Not yet expired: nothing goes.
    assert await sweep(sessions, blobs, ttl=3600.0) == 0
    later = now() + timedelta(hours=2)
    assert await sweep(sessions, blobs, ttl=3600.0, now=later) == 1
    async with api.store() as session:
        remaining = set(await session.scalars(select(UploadedFile.uuid)))
    assert remaining == {attached, persistent}
    assert not blobs.path(keys[loose]).exists()
    assert blobs.path(keys[attached]).exists()
    assert blobs.path(keys[persistent]).exists()
    assert await sweep(sessions, blobs, ttl=3600.0, now=later) == 0
