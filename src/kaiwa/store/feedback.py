"""Feedback on answers: one per message and end user; giving it again replaces it.

The end user is the `external_user_id` that gave the feedback, or "" when none was given, so the
unique constraint on `(message_id, end_user)` also holds for anonymous feedback (a NULL would not
collide with another NULL).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store.db import now
from kaiwa.store.models import Chat, Feedback, Message

FeedbackType = Literal["sys_helpful", "sys_improve"]


async def give_feedback(
    session: AsyncSession,
    chat: Chat,
    message_id: int,
    *,
    end_user: str,
    type: FeedbackType,
    content: str,
) -> Feedback:
    """Store `end_user`'s feedback on an answer of `chat`, replacing the one they gave before.

    >>> await give_feedback(session, chat, 42, end_user="alice", type="sys_helpful", content="")

    Raises 404 when the message is not one of the chat's, 400 when it is not an answer.
    """
    message = await session.get(Message, message_id)
    if message is None or message.chat_id != chat.id:
        raise ApiError(ErrorCode.NOT_FOUND, f"Message {message_id} not found in chat {chat.id}")
    if message.role != "assistant":
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"Message {message_id} is a {message.role} message: "
            "feedback is for assistant messages only",
        )
    return await _upsert(session, message, end_user=end_user, type=type, content=content)


async def _upsert(
    session: AsyncSession, message: Message, *, end_user: str, type: FeedbackType, content: str
) -> Feedback:
    # One INSERT … ON CONFLICT DO UPDATE on both databases: two concurrent first feedbacks
    # cannot both insert, and the loser updates the winner's row instead of failing.
    stamp = now()
    values = {
        "message_id": message.id,
        "chat_id": message.chat_id,
        "end_user": end_user,
        "type": type,
        "content": content,
        "created_at": stamp,
        "updated_at": stamp,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    upsert = insert(Feedback).values(values)
    statement = upsert.on_conflict_do_update(
        index_elements=[Feedback.message_id, Feedback.end_user],
        set_={"type": type, "content": content, "updated_at": stamp},
    ).returning(Feedback)
    # The row may already be in the session from an earlier call: refresh it from RETURNING.
    rows = await session.scalars(statement, execution_options={"populate_existing": True})
    return rows.one()
