"""[ext] One response: follow its events (resume), read its state, stop it.

The events endpoint takes the API key, or the response's own `resume_token` as `?token=` for a
browser's `EventSource`. A cursor comes as `Last-Event-ID` (what `EventSource` sends when it
reconnects) or `?after=`; without one the events replay from the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.bus import EventLog
from kaiwa.protocol import (
    ApiError,
    ErrorCode,
    OutputTextCompleted,
    ResponseError,
    ResponseState,
    TokenUsage,
    encode_frame,
)
from kaiwa.protocol.events import CompletedStatus
from kaiwa.protocol.sse import DONE, PING
from kaiwa.server.deps import (
    CallerDep,
    ReadSessionDep,
    Services,
    ServicesDep,
    SessionDep,
    authenticate,
)
from kaiwa.server.envelope import ok
from kaiwa.server.routes.params import ChatId
from kaiwa.server.sse import follow, sse_response
from kaiwa.store import responses
from kaiwa.store.db import iso
from kaiwa.store.models import Message
from kaiwa.store.models import Response as ResponseRecord

router = APIRouter(prefix="/api/v1/chats/{chat_id}/responses/{response_id}", tags=["responses"])

# The largest cursor a client can send: event ids are 1, 2, 3… within a response.
_MAX_CURSOR = 2**53
# How long a running answer's missing log is waited for (see `_reappears`).
_REAPPEAR_POLLS = 30
_REAPPEAR_POLL_INTERVAL = 0.1
# The `completed` status that ended a stream, by the stored status of its response.
_ENDED_AS: dict[str, CompletedStatus] = {"cancelled": "cancelled", "awaiting_form": "awaiting_form"}


@router.get("/events")
async def events(
    chat_id: ChatId,
    response_id: UUID,
    session: ReadSessionDep,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0, le=_MAX_CURSOR)] = None,
    token: Annotated[str | None, Query()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    rid = str(response_id)
    cursor = _cursor(last_event_id, after)
    if token is not None:
        claims = services.signer.verify(token)
        if claims is None or claims.response_id != rid or claims.chat_id != chat_id:
            raise ApiError(
                ErrorCode.PERMISSION_DENIED, "Invalid or expired resume token for this response"
            )
        record = None
    else:
        caller = await authenticate(session, x_api_key)
        await services.limiter.check_request(caller.key_id)
        record = await _record(session, caller.workspace_id, chat_id, rid)
    if await services.log.read(rid, cursor, wait=0) is None:
        # The events are gone (retention passed, or the server restarted): end the stream with
        # the outcome the database kept, under its original id when known (else cursor + 1).
        if record is None:
            record = await session.get(ResponseRecord, rid)
        if record is None or record.chat_id != chat_id:
            raise ApiError(ErrorCode.NOT_FOUND, f"Response {rid} not found")
        if (
            record.status == "in_progress"
            and services.bus.shared
            and await _reappears(services.log, rid, cursor)
        ):
            await session.commit()
            return _follow(services, rid, chat_id, cursor)
        message = await session.get(Message, record.assistant_message_id)
        await session.commit()
        if record.last_event_id is not None and cursor >= record.last_event_id:
            return sse_response(_once(PING + DONE), rid)  # the client saw the end already
        ending = _stored_ending(record, message, record.last_event_id or cursor + 1)
        return sse_response(_once(PING + ending + DONE), rid)
    await session.commit()
    return _follow(services, rid, chat_id, cursor)


def _follow(services: Services, response_id: str, chat_id: int, cursor: int) -> Response:
    settings = services.settings
    body = follow(
        services.log,
        response_id,
        chat_id,
        after=cursor,
        ping_interval=settings.ping_interval,
        idle_timeout=settings.idle_timeout,
    )
    return sse_response(body, response_id)


async def _reappears(log: EventLog, response_id: str, cursor: int) -> bool:
    """Whether the log of a running answer shows up within a few seconds: after Redis restarts
    empty, the replica producing the answer writes its log there again."""
    for _ in range(_REAPPEAR_POLLS):
        await asyncio.sleep(_REAPPEAR_POLL_INTERVAL)
        if await log.read(response_id, cursor, wait=0) is not None:
            return True
    return False


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
    session: AsyncSession, workspace_id: str, chat_id: int, response_id: str
) -> ResponseRecord:
    record = await responses.get_response(session, workspace_id, chat_id, response_id)
    if record is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} not found in chat {chat_id}")
    return record


def _cursor(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        # ASCII only: headers are Latin-1, where "²" is a digit to `isdigit` but not to `int`.
        if not (value.isascii() and value.isdigit()) or int(value) > _MAX_CURSOR:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"Last-Event-ID must be an event id (a whole number ≥ 0), got {value[:40]!r}",
            )
        return int(value)
    return after or 0


def _stored_ending(record: ResponseRecord, message: Message | None, event_id: int) -> bytes:
    if record.status == "in_progress":
        # Its producer is gone without a trace; recovery at start-up will mark it failed.
        code, text = ErrorCode.SERVER_ERROR, "This response's events are no longer available"
        error = ResponseError(
            response_id=record.id, chat_id=record.chat_id, message=text, code=code
        )
        return encode_frame(event_id, error.type, error.model_dump_json())
    # An interrupted response is cancelled with an error (10010): its stream ended with the error.
    if record.status == "failed" or record.error_code is not None:
        error = ResponseError(
            response_id=record.id,
            chat_id=record.chat_id,
            message=record.error_message or "The response failed",
            code=record.error_code or int(ErrorCode.SERVER_ERROR),
        )
        return encode_frame(event_id, error.type, error.model_dump_json())
    meta = message.meta if message is not None else {}
    completed = OutputTextCompleted(
        response_id=record.id,
        chat_id=record.chat_id,
        final_text=message.content if message is not None else "",
        usage=TokenUsage.model_validate(meta.get("token_usage") or {}),
        status=_ENDED_AS.get(record.status, "completed"),
    )
    return encode_frame(event_id, completed.type, completed.model_dump_json())


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


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
