"""[ext] One response: follow its events (resume), read its state, stop it.

The events endpoint takes the API key, or the response's own `resume_token` as `?token=` for a
browser's `EventSource`. A cursor comes as `Last-Event-ID` (what `EventSource` sends when it
reconnects) or `?after=`; without one the events replay from the start.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode, ResponseState
from kaiwa.server.deps import (
    CallerDep,
    KeyFirstRoute,
    ReadSessionDep,
    ReadSessionsDep,
    ServicesDep,
    SessionDep,
    authenticate,
)
from kaiwa.server.envelope import ok
from kaiwa.server.metrics import Metrics
from kaiwa.server.replay import MAX_CURSOR, parse_cursor, stream_answer
from kaiwa.server.routes.params import ChatId
from kaiwa.store import responses
from kaiwa.store.db import engine_of, iso
from kaiwa.store.models import Message
from kaiwa.store.models import Response as ResponseRecord

router = APIRouter(
    prefix="/api/v1/chats/{chat_id}/responses/{response_id}",
    tags=["responses"],
    route_class=KeyFirstRoute,
)


@router.get("/events")
async def events(
    chat_id: ChatId,
    response_id: UUID,
    read_sessions: ReadSessionsDep,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR)] = None,
    token: Annotated[str | None, Query()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    rid = str(response_id)
    cursor = parse_cursor(last_event_id, after)
    async with read_sessions() as session:
        if token is not None:
            claims = services.signer.verify(token)
            if claims is None or claims.response_id != rid or claims.chat_id != chat_id:
                raise ApiError(
                    ErrorCode.PERMISSION_DENIED,
                    "Invalid or expired resume token for this response",
                )
            record = None
        else:
            caller = await authenticate(engine_of(read_sessions), x_api_key)
            await services.limiter.check_request(caller.key_id)
            record = await _record(session, caller.workspace_id, chat_id, rid, services.metrics)
        return await stream_answer(services, session, rid, chat_id, cursor, record)


@router.get("")
async def status(
    chat_id: ChatId,
    response_id: UUID,
    caller: CallerDep,
    session: ReadSessionDep,
    services: ServicesDep,
) -> JSONResponse:
    """Status, text so far (or final), usage and steps: for clients that prefer polling."""
    record = await _record(session, caller.workspace_id, chat_id, str(response_id))
    message = await session.get(Message, record.assistant_message_id)
    await session.commit()
    return ok(_status_out(record, message, services.runtime.state(record.id)))


@router.post("/cancel")
async def cancel(
    chat_id: ChatId,
    response_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    """Stop the response; idempotent. Its streams end with `completed`, status `cancelled`."""
    record = await _record(session, caller.workspace_id, chat_id, str(response_id))
    await session.commit()
    await services.runtime.cancel(record.id, "stop")
    await session.refresh(record)
    message = await session.get(Message, record.assistant_message_id)
    await session.commit()
    return ok(_status_out(record, message, None))


async def _record(
    session: AsyncSession,
    workspace_id: str,
    chat_id: int,
    response_id: str,
    resumes: Metrics | None = None,
) -> ResponseRecord:
    """The response, or 404; `resumes`: the metrics to count a resume of an unknown one in."""
    record = await responses.get_response(session, workspace_id, chat_id, response_id)
    if record is None:
        if resumes is not None:
            resumes.resumed("not_found")
        raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} not found in chat {chat_id}")
    return record


def _status_out(
    record: ResponseRecord, message: Message | None, live: ResponseState | None
) -> dict[str, Any]:
    meta = (message.meta if message is not None else None) or {}
    usage: dict[str, Any] | None
    if live is not None:
        text, usage, steps = live.text, live.usage.model_dump(), live.steps
    else:
        text = message.content if message is not None else ""
        usage, steps = meta.get("token_usage"), meta.get("reasoning_steps") or []
    error = None
    if record.error_code is not None:
        error = {"code": record.error_code, "message": record.error_message}
    return {
        "id": record.id,
        "chat_id": record.chat_id,
        "status": record.status,
        "model": record.model,
        "final_text": text,
        "usage": usage,
        "steps": steps,
        "error": error,
        "user_message_id": record.user_message_id,
        "assistant_message_id": record.assistant_message_id,
        "created_at": iso(record.created_at),
        "finished_at": iso(record.finished_at),
    }
