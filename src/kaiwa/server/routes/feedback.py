"""Feedback: an end user's verdict on an answer, one per message and end user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.deps import CallerDep, KeyFirstRoute, SessionDep, check_end_user
from kaiwa.server.envelope import ok
from kaiwa.server.routes.params import ChatId
from kaiwa.server.schemas import GiveFeedback, feedback_out
from kaiwa.store import chats, feedback

router = APIRouter(
    prefix="/api/v1/chats/{chat_id}/messages/{message_id}",
    tags=["feedback"],
    route_class=KeyFirstRoute,
)

# Like chat ids, message ids are 64-bit in the database.
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("/feedbacks")
async def give_feedback(
    chat_id: ChatId,
    message_id: MessageId,
    body: GiveFeedback,
    caller: CallerDep,
    session: SessionDep,
) -> JSONResponse:
    chat = await chats.get_chat(session, caller.workspace_id, chat_id)
    if chat is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    await check_end_user(session, caller, chat.external_user_id, required=False)
    await check_end_user(session, caller, body.external_user_id, required=False)
    given = await feedback.give_feedback(
        session,
        chat,
        message_id,
        end_user=body.external_user_id or "",
        type=body.type,
        content=body.content or "",
    )
    await session.commit()
    return ok(feedback_out(given))
