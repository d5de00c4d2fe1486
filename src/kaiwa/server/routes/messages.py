"""Messages: list a chat's messages, send one, regenerate the last answer (streamed or not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime import StartedResponse, TurnRequest
from kaiwa.server.deps import (
    Caller,
    CallerDep,
    KeyFirstRoute,
    ReadSessionDep,
    ReadSessionsDep,
    Services,
    ServicesDep,
    check_end_user,
)
from kaiwa.server.envelope import ok
from kaiwa.server.idempotency import IdempotencyKeyHeader, claim_of, find_earlier
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.replay import answer_outcome, parse_cursor, stream_answer
from kaiwa.server.routes.files import file_url
from kaiwa.server.routes.params import ChatId
from kaiwa.server.schemas import (
    Regenerate,
    ReplyOptions,
    SendMessage,
    attached_file_out,
    message_out,
)
from kaiwa.server.sse import follow, sse_response
from kaiwa.store import chats, files, messages, responses
from kaiwa.store.idempotency import Claim, KeyTaken
from kaiwa.store.models import Message
from kaiwa.store.models import Response as ResponseRecord

router = APIRouter(prefix="/api/v1/chats/{chat_id}", tags=["messages"], route_class=KeyFirstRoute)

LastEventIdHeader = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Sent by SSE clients that retry a send: with the chat's latest turn again, "
        "its answer resumes after this event instead of a new one starting.",
    ),
]


@router.get("/messages")
async def list_messages(
    request: Request, chat_id: ChatId, caller: CallerDep, session: ReadSessionDep, page: PageDep
) -> JSONResponse:
    chat = await chats.get_chat(session, caller.workspace_id, chat_id)
    if chat is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    await check_end_user(session, caller, chat.external_user_id, required=False)
    rows, total = await messages.list_messages(
        session, chat_id, limit=page.limit, offset=page.offset
    )
    attached = await files.files_of_messages(session, [m.id for m in rows])
    out = [
        message_out(m, [attached_file_out(f, file_url(request, f)) for f in attached[m.id]])
        for m in rows
    ]
    return ok(out, pagination(request, page, total))


@router.post("/messages")
async def send_message(
    chat_id: ChatId,
    body: SendMessage,
    caller: CallerDep,
    services: ServicesDep,
    read_sessions: ReadSessionsDep,
    idempotency_key: IdempotencyKeyHeader = None,
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """Store the message and answer it. A retry of this very request — the same
    `Idempotency-Key`, or without one a `Last-Event-ID` and the chat's latest turn again —
    gets that answer instead of a new one."""
    settings = services.settings
    if not body.message.strip():
        raise ApiError(ErrorCode.BAD_REQUEST, "message: must not be empty")
    if len(body.message) > settings.max_message_chars:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"message: must be at most {settings.max_message_chars} characters, "
            f"got {len(body.message)}",
        )
    if len(body.attached_file_uuids) > settings.max_attachments:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"attached_file_uuids: at most {settings.max_attachments} attachments, "
            f"got {len(body.attached_file_uuids)}",
        )
    # The runtime loads the chat, checks it, and stores the turn in one short transaction.
    request = TurnRequest(
        workspace_id=caller.workspace_id,
        chat_id=chat_id,
        agent_id=str(body.agent_id),
        message=body.message,
        external_user_id=body.external_user_id,
        whitelist_mode=caller.whitelist_mode,
        if_busy=body.if_busy,
        attached_file_uuids=tuple(str(file_uuid) for file_uuid in body.attached_file_uuids),
        include_tool_tags=body.include_tool_tags,
        idempotency=claim_of(idempotency_key, "send", chat_id, body, settings.idempotency_ttl),
    )
    async with read_sessions() as session:
        if request.idempotency is None and last_event_id is not None:
            repeated = await _repeated_turn(session, services, caller, chat_id, body)
            if repeated is not None:
                return await again(services, session, repeated, chat_id, last_event_id, body)
        start = partial(services.runtime.start, request)
        return await reply_once(
            services, caller, session, request.idempotency, start, body, last_event_id
        )


@router.post("/regenerate")
async def regenerate(
    chat_id: ChatId,
    body: Regenerate,
    caller: CallerDep,
    services: ServicesDep,
    read_sessions: ReadSessionsDep,
    idempotency_key: IdempotencyKeyHeader = None,
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """A new answer to the chat's last user message; the previous one is kept, superseded."""
    request = TurnRequest(
        workspace_id=caller.workspace_id,
        chat_id=chat_id,
        agent_id=str(body.agent_id),
        regenerate=True,
        external_user_id=body.external_user_id,
        whitelist_mode=caller.whitelist_mode,
        if_busy=body.if_busy,
        include_tool_tags=body.include_tool_tags,
        idempotency=claim_of(
            idempotency_key, "regenerate", chat_id, body, services.settings.idempotency_ttl
        ),
    )
    start = partial(services.runtime.start, request)
    async with read_sessions() as session:
        return await reply_once(
            services, caller, session, request.idempotency, start, body, last_event_id
        )


async def reply_once(
    services: Services,
    caller: Caller,
    session: AsyncSession,
    claim: Claim | None,
    start: Callable[[], Awaitable[StartedResponse]],
    options: ReplyOptions,
    last_event_id: str | None,
) -> Response:
    """`reply`, unless the request's idempotency key started an answer already: then that one,
    given `again`. A repeat that races the first request waits for it to be stored."""
    if claim is not None:
        earlier = await find_earlier(session, caller, claim)
        if earlier is not None and earlier.response_id is not None:
            return await again(
                services, session, earlier.response_id, earlier.chat_id, last_event_id, options
            )
    try:
        return await reply(services, caller, start, options)
    except KeyTaken:
        assert claim is not None
        earlier = await find_earlier(session, caller, claim)
        if earlier is None or earlier.response_id is None:
            raise ApiError(
                ErrorCode.CONFLICT, "A request with this Idempotency-Key is in progress; retry"
            ) from None
        return await again(
            services, session, earlier.response_id, earlier.chat_id, last_event_id, options
        )


async def again(
    services: Services,
    session: AsyncSession,
    response_id: str,
    chat_id: int | None,
    last_event_id: str | None,
    options: ReplyOptions,
) -> Response:
    """An answer already started, given again: its stream after `Last-Event-ID`, or with
    `stream: false` its outcome once it ends. Marked `Idempotent-Replayed: true`."""
    if options.stream:
        cursor = parse_cursor(last_event_id)
        record = await session.get(ResponseRecord, response_id)
        if record is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} not found")
        response = await stream_answer(
            services, session, response_id, chat_id or record.chat_id, cursor, record
        )
    else:
        response = await answer_outcome(services, session, response_id)
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _repeated_turn(
    session: AsyncSession, services: Services, caller: Caller, chat_id: int, body: SendMessage
) -> str | None:
    """The answer a retried send (one carrying `Last-Event-ID`) asks for again: that of the
    chat's latest turn, when the message, agent and attachments are the same and its events
    are still there to replay; else None, and the send is a new turn."""
    chat = await chats.get_chat(session, caller.workspace_id, chat_id)
    latest = await responses.latest_on_chat(session, chat_id) if chat is not None else None
    if chat is None or latest is None or chat.agent_id != str(body.agent_id):
        await session.commit()
        return None
    await check_end_user(session, caller, chat.external_user_id, required=False)
    question = await session.get(Message, latest.user_message_id)
    attached = await files.files_of_messages(session, [latest.user_message_id])
    await session.commit()
    same = (
        question is not None
        and question.content == body.message
        and [f.uuid for f in attached[latest.user_message_id]]
        == [str(u) for u in body.attached_file_uuids]
    )
    if not same:
        return None
    if latest.status != "in_progress" and await services.log.read(latest.id, 0, wait=0) is None:
        return None
    return latest.id


async def reply(
    services: Services,
    caller: Caller,
    start: Callable[[], Awaitable[StartedResponse]],
    options: ReplyOptions,
) -> Response:
    """Start a response; answer with its stream, or with its final text once it ends."""
    runtime = services.runtime
    slot = await services.limiter.acquire_stream(caller.key_id)
    try:
        started = await start()
    except BaseException:
        await slot.release()
        raise
    if not options.stream:
        try:
            state = await runtime.wait(started.response_id)
        finally:
            await slot.release()
        if state.error is not None:
            raise ApiError(ErrorCode(state.error.code), state.error.message)
        return ok(state.text)

    def cancel_on_disconnect() -> None:
        runtime.request_cancel(started.response_id, "disconnect")

    settings = services.settings
    body = follow(
        services.log,
        started.response_id,
        started.chat_id,
        ping_interval=settings.ping_interval,
        idle_timeout=settings.idle_timeout,
        on_disconnect=cancel_on_disconnect if options.on_disconnect == "cancel" else None,
        open_streams=services.metrics.live_streams,
    )
    return sse_response(body, started.response_id, release=slot.release)
