"""Response records: one run of the agent that fills one assistant message.

A running response names its owner, the replica producing it. Its end is stored with a
compare-and-set on (status, owner): the owner stores its outcome only while the row is still
in progress and still its own, and a replica that ends the answer of a dead owner does so only
if the row still is in progress under that owner. Whichever comes first wins; the other changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import Db, now
from kaiwa.store.models import Message, Response

# Statements of every turn, built once.
_responses = cast(Table, Response.__table__)
_INSERT = _responses.insert()
_RUNNING = (
    select(_responses.c.id)
    .where(_responses.c.chat_id == bindparam("chat_id"), _responses.c.status == "in_progress")
    .limit(1)
)
_FINISH = (
    _responses.update()
    .where(
        _responses.c.id == bindparam("response_id"),
        _responses.c.status == "in_progress",
        _responses.c.owner == bindparam("expected_owner"),
    )
    .values(
        status=bindparam("new_status", type_=_responses.c.status.type),
        finished_at=bindparam("new_finished_at", type_=_responses.c.finished_at.type),
        last_event_id=bindparam("new_last_event_id", type_=_responses.c.last_event_id.type),
        error_code=bindparam("new_error_code", type_=_responses.c.error_code.type),
        error_message=bindparam("new_error_message", type_=_responses.c.error_message.type),
    )
)


async def get_response(
    session: AsyncSession, workspace_id: str, chat_id: int, response_id: str
) -> Response | None:
    """The response, if it belongs to that chat of that workspace."""
    response = await session.get(Response, response_id)
    if response is None or response.workspace_id != workspace_id or response.chat_id != chat_id:
        return None
    return response


async def insert_response(
    session: Db,
    *,
    response_id: str,
    chat_id: int,
    workspace_id: str,
    agent_id: str,
    model: str,
    user_message_id: int,
    assistant_message_id: int,
    owner: str,
    trace_context: str | None = None,
) -> None:
    """Store a new response, in progress, produced by the replica `owner` (under the trace
    `trace_context`, a W3C traceparent, when it is traced)."""
    values = {
        "id": response_id,
        "chat_id": chat_id,
        "workspace_id": workspace_id,
        "agent_id": agent_id,
        "model": model,
        "user_message_id": user_message_id,
        "assistant_message_id": assistant_message_id,
        "status": "in_progress",
        "owner": owner,
        "trace_context": trace_context,
        "created_at": now(),
    }
    await session.execute(_INSERT, values)


async def running_on_chat(session: Db, chat_id: int) -> str | None:
    """The id of the response in progress on the chat, if any."""
    return (await session.execute(_RUNNING, {"chat_id": chat_id})).scalar()


async def latest_on_chat(session: AsyncSession, chat_id: int) -> Response | None:
    """The chat's most recent response, whatever its status."""
    latest = (
        select(Response)
        .where(Response.chat_id == chat_id)
        .order_by(Response.created_at.desc())
        .limit(1)
    )
    return (await session.scalars(latest)).first()


async def finish(
    session: Db,
    response_id: str,
    *,
    owner: str,
    status: str,
    last_event_id: int,
    error: tuple[int, str] | None,
) -> bool:
    """Store a response's end, if it is still in progress and still `owner`'s.

    False when it is not: another replica ended it, having presumed `owner` dead.
    """
    code, message = error if error is not None else (None, None)
    values = {
        "response_id": response_id,
        "expected_owner": owner,
        "new_status": status,
        "new_finished_at": now(),
        "new_last_event_id": last_event_id,
        "new_error_code": code,
        "new_error_message": message,
    }
    result = cast(CursorResult[object], await session.execute(_FINISH, values))
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Running:
    id: str
    owner: str | None
    chat_id: int


async def running(session: AsyncSession) -> list[Running]:
    """Every response in progress, with its owner."""
    rows = await session.execute(
        select(Response.id, Response.owner, Response.chat_id).where(
            Response.status == "in_progress"
        )
    )
    return [Running(id=id_, owner=owner, chat_id=chat_id) for id_, owner, chat_id in rows]


async def fail_orphan(
    session: AsyncSession, response_id: str, owner: str | None, *, code: int, message: str
) -> bool:
    """Mark a response of the dead replica `owner` failed, with its message (which keeps the
    text of its last checkpoint); False, changing nothing, if it is no longer in progress under
    that owner."""
    owned = Response.owner.is_(None) if owner is None else Response.owner == owner
    result = cast(
        CursorResult[object],
        await session.execute(
            update(Response)
            .where(Response.id == response_id, Response.status == "in_progress", owned)
            .values(status="failed", error_code=code, error_message=message, finished_at=now())
        ),
    )
    if result.rowcount != 1:
        return False
    await session.execute(
        update(Message)
        .where(Message.response_id == response_id, Message.status == "in_progress")
        .values(status="failed")
    )
    return True


async def set_last_event_id(session: AsyncSession, response_id: str, last_event_id: int) -> None:
    await session.execute(
        update(Response).where(Response.id == response_id).values(last_event_id=last_event_id)
    )


async def is_running(session: AsyncSession, response_id: str) -> bool:
    status = await session.scalar(select(Response.status).where(Response.id == response_id))
    return status == "in_progress"


async def ask_to_cancel(session: AsyncSession, response_id: str, reason: str) -> str | None:
    """Flag a response in progress for its owner to stop; return the owner, or None when it is
    not in progress. The first reason asked stays."""
    await session.execute(
        update(Response)
        .where(
            Response.id == response_id,
            Response.status == "in_progress",
            Response.cancel_reason.is_(None),
        )
        .values(cancel_reason=reason)
    )
    return (
        await session.execute(
            select(Response.owner).where(
                Response.id == response_id, Response.status == "in_progress"
            )
        )
    ).scalar()


async def cancels_for(session: AsyncSession, owner: str) -> list[tuple[str, str]]:
    """(response id, reason) of the responses in progress under `owner` flagged to stop."""
    rows = await session.execute(
        select(Response.id, Response.cancel_reason).where(
            Response.owner == owner,
            Response.status == "in_progress",
            Response.cancel_reason.is_not(None),
        )
    )
    return [(id_, str(reason)) for id_, reason in rows]
