"""Forms (spec/API.md §3.4): a turn paused on `request_form`, and the submit that goes on with it.

When the agent asks for a form, the response ends `awaiting_form` and the pause is stored: the
form's fields and what the turn needs to go on (its model messages so far). A submit checks the
values, marks the form submitted (a second submit is a conflict), and starts a new response in the
same turn. That response begins with the form step's end, whose data are the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.llm import ChatMessage, ToolCall
from kaiwa.protocol import ApiError, ErrorCode, ResponseCreated, TokenUsage
from kaiwa.protocol.events import StepEnd, StepResult
from kaiwa.runtime.agent import FormPause
from kaiwa.runtime.form_values import FormValuesError, check_values
from kaiwa.runtime.tools.base import timestamp
from kaiwa.runtime.tools.form import render_values
from kaiwa.runtime.turns import (
    HISTORY_MESSAGES,
    Question,
    Resumed,
    Turn,
    claim_key,
    open_chat,
    start_answer,
)
from kaiwa.store import files, messages
from kaiwa.store.db import now
from kaiwa.store.idempotency import Claim
from kaiwa.store.models import FormRequest, Message


@dataclass(frozen=True, slots=True)
class FormSubmission:
    workspace_id: str
    chat_id: int
    form_request_id: str
    values: dict[str, Any]
    agent_id: str | None = None
    """When given, it must be the chat's agent."""
    external_user_id: str | None = None
    whitelist_mode: bool = False
    include_tool_tags: bool = False
    idempotency: Claim | None = None


def store_pause(session: AsyncSession, turn: Turn, pause: FormPause) -> None:
    """Keep what the paused turn needs to go on (in the transaction that stores its outcome)."""
    args = pause.step.args
    session.add(
        FormRequest(
            id=args["form_request_id"],
            chat_id=turn.chat_id,
            response_id=turn.response_id,
            message_id=turn.assistant_message_id,
            step=pause.step.model_dump(mode="json"),
            fields=args["fields"],
            status="pending",
            values=None,
            state={
                "call_id": pause.call.id,
                "round": pause.round,
                "user_message_id": turn.user_message_id,
                "messages": [_dump(message) for message in pause.messages],
            },
            created_at=now(),
        )
    )


async def store_submission(
    session: AsyncSession,
    submission: FormSubmission,
    *,
    response_id: str,
    owner: str,
    resume_token: Callable[[str, int], str],
    check_tools: Callable[[list[dict[str, Any]]], None] = lambda tools: None,
    trace_context: str | None = None,
) -> tuple[Turn, ResponseCreated]:
    """Check and store the values, and the start of the response that goes on with the turn.

    Raises `ApiError` (404 form or chat, 400 naming every bad value, 409 submitted already) or
    `ChatBusy`, with nothing stored.
    """
    await claim_key(
        session, submission.idempotency, submission.workspace_id, response_id, submission.chat_id
    )
    opened = await open_chat(
        session,
        workspace_id=submission.workspace_id,
        chat_id=submission.chat_id,
        agent_id=submission.agent_id,
        external_user_id=submission.external_user_id,
        whitelist_mode=submission.whitelist_mode,
        check_tools=check_tools,
    )
    form = await session.get(FormRequest, submission.form_request_id)
    if form is None or form.chat_id != opened.chat.id:
        raise ApiError(ErrorCode.NOT_FOUND, f"Form request {submission.form_request_id} not found")
    if form.status == "submitted":
        raise ApiError(ErrorCode.CONFLICT, f"Form request {form.id} has already been submitted")
    if form.status != "pending":
        raise ApiError(
            ErrorCode.CONFLICT,
            f"Form request {form.id} has expired: the chat has moved on to a newer message",
        )
    try:
        values = check_values(form.fields, submission.values)
    except FormValuesError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc), errors=exc.errors) from None
    state = form.state
    user_message = await session.get(Message, state["user_message_id"])
    paused = await session.get(Message, form.message_id)
    if user_message is None or paused is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Form request {form.id} not found")
    form.status, form.values, form.submitted_at = "submitted", values, now()
    paused.meta = {**paused.meta, "form_request": {"id": form.id, "status": "submitted"}}

    text = render_values(form.fields, values)
    step = form.step
    end = StepEnd(
        id=step["id"],
        type=step["type"],
        tool_name=step["tool_name"],
        result=StepResult(success=True, data=values),
        timestamp=timestamp(),
        token_usage=TokenUsage(),
    )
    call_id = state["call_id"]
    turn_messages = [_load(message) for message in state["messages"]]
    turn_messages.append(ChatMessage("tool", text, tool_call_id=call_id))
    earlier = await messages.history(
        session, opened.chat.id, limit=HISTORY_MESSAGES, before=user_message.id
    )
    attached = (await files.files_of_messages(session, [user_message.id])).get(user_message.id, [])
    return await start_answer(
        session,
        opened,
        Question.of(user_message),
        response_id=response_id,
        earlier=earlier,
        attachments=tuple(file.uuid for file in attached),
        include_tool_tags=submission.include_tool_tags,
        owner=owner,
        resume_token=resume_token,
        meta={"form": {"form_request_id": form.id, "call_id": call_id, "text": text}},
        resumed=Resumed(
            form_request_id=form.id,
            messages=turn_messages,
            round=int(state["round"]),
            step_end=end.model_dump(mode="json"),
        ),
        trace_context=trace_context,
    )


def _dump(message: ChatMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "is_error": message.is_error,
    }


def _load(data: dict[str, Any]) -> ChatMessage:
    return ChatMessage(
        role=data["role"],
        content=data["content"],
        tool_calls=tuple(ToolCall(**call) for call in data.get("tool_calls") or ()),
        tool_call_id=data.get("tool_call_id"),
        is_error=bool(data.get("is_error", False)),
    )
