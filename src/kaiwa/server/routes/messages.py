"""Messages: list a chat's messages, send one, regenerate the last answer (streamed or not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime import StartedResponse, TurnRequest
from kaiwa.server.deps import (
    Caller,
    CallerDep,
    ReadSessionDep,
    Services,
    ServicesDep,
    check_end_user,
)
from kaiwa.server.envelope import ok
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.ratelimit import holding
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
from kaiwa.store import chats, files, messages

router = APIRouter(prefix="/api/v1/chats/{chat_id}", tags=["messages"])


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
) -> Response:
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
    )
    return await reply(services, caller, lambda: services.runtime.start(request), body)


@router.post("/regenerate")
async def regenerate(
    chat_id: ChatId, body: Regenerate, caller: CallerDep, services: ServicesDep
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
    )
    return await reply(services, caller, lambda: services.runtime.start(request), body)


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
    )
    return sse_response(holding(slot, body), started.response_id)
