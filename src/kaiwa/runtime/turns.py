"""Storing the start of a turn: checks, the user message, the in-progress answer, the record.

All in the caller's one short transaction. A new turn stores the user's message; a regenerated
turn answers the chat's last user message again, and marks the answers it already had as
superseded (they are kept, never deleted).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.llm import ChatMessage, ToolCall
from kaiwa.protocol import ApiError, ErrorCode, ResponseCreated
from kaiwa.store import agents, batches, chats, files, messages, responses, workspaces
from kaiwa.store import idempotency as idempotency_keys
from kaiwa.store.agents import AgentRef
from kaiwa.store.chats import TurnChat
from kaiwa.store.idempotency import Claim
from kaiwa.store.messages import Earlier
from kaiwa.store.models import FormRequest, Message

HISTORY_MESSAGES = 40
"""How many earlier messages of the chat the model sees."""

BusyPolicy = Literal["reject", "interrupt"]


@dataclass(frozen=True, slots=True)
class TurnRequest:
    workspace_id: str
    chat_id: int
    agent_id: str
    message: str = ""
    """The user's message; empty when regenerating."""
    regenerate: bool = False
    """Answer the chat's last user message again instead of storing a new one."""
    external_user_id: str | None = None
    whitelist_mode: bool = False
    """The workspace admits only whitelisted end users (both the chat's and the sender)."""
    if_busy: BusyPolicy = "reject"
    """When a response already runs on the chat: refuse (409), or interrupt it first."""
    attached_file_uuids: tuple[str, ...] = ()
    include_tool_tags: bool = False
    idempotency: Claim | None = None
    """Its `Idempotency-Key`: recorded with the turn; `KeyTaken` when a repeat raced it."""
    batch_item_id: int | None = None
    """The batch item this turn answers: the response is recorded on the item in the turn's
    own transaction, so a replica that takes the item over after a crash always knows whether
    its question was already asked."""


@dataclass(slots=True)
class Turn:
    """Everything the producer needs, read in the turn's transaction."""

    response_id: str
    chat_id: int
    workspace_id: str
    agent_id: str
    llm_model: str
    system_prompt: str
    model_settings: dict[str, Any]
    unified_tools: list[dict[str, Any]]
    history: list[ChatMessage]
    message: str
    user_message_id: int
    group_id: str
    assistant_message_id: int
    wants_title: bool
    attachments: tuple[str, ...] = ()
    include_tool_tags: bool = False
    resumed: Resumed | None = None
    """Set when the turn goes on after a form was submitted."""
    started_at: float = field(default=0.0)


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where a turn paused on a form picks up: its rounds so far, and the form's answer."""

    form_request_id: str
    messages: list[ChatMessage]
    """The turn's model messages after the user's, ending with the form's result."""
    round: int
    step_end: dict[str, Any]
    """The form step's end, emitted first by the resumed response."""


@dataclass(frozen=True, slots=True)
class Question:
    """The user message a turn answers."""

    id: int
    group_id: str
    content: str

    @classmethod
    def of(cls, message: Message) -> Question:
        return cls(message.id, message.group_id, message.content)


class ChatBusy(Exception):
    """A response is already running on the chat."""

    def __init__(self, chat_id: int, response_id: str) -> None:
        super().__init__(f"A response is already running on chat {chat_id}")
        self.chat_id = chat_id
        self.response_id = response_id


async def store_turn(
    session: AsyncSession,
    request: TurnRequest,
    *,
    response_id: str,
    owner: str,
    resume_token: Callable[[str, int], str],
    check_tools: Callable[[list[dict[str, Any]]], None] = lambda tools: None,
    trace_context: str | None = None,
) -> tuple[Turn, ResponseCreated]:
    """Check the request against the chat and its agent, store the turn, build its first event.

    `response_id` names the new response; `owner` is the replica that will produce the answer;
    `resume_token(response_id, chat_id) -> str` signs the token carried by `response.created`;
    `check_tools(unified_tools)` raises `ApiError` when the agent's tools cannot run here;
    `trace_context` (a W3C traceparent) is stored with the response when it is traced.
    Raises `ApiError`, `ChatBusy` or `KeyTaken` with nothing stored.
    """
    await claim_key(
        session, request.idempotency, request.workspace_id, response_id, request.chat_id
    )
    if request.batch_item_id is not None:
        await batches.attach_response(session, request.batch_item_id, response_id)
    opened = await open_chat(
        session,
        workspace_id=request.workspace_id,
        chat_id=request.chat_id,
        agent_id=request.agent_id,
        external_user_id=request.external_user_id,
        whitelist_mode=request.whitelist_mode,
        check_tools=check_tools,
    )
    chat = opened.chat
    attached = await files.check_attachable(
        session, request.workspace_id, request.attached_file_uuids
    )
    await expire_forms(session, chat.id)
    if request.regenerate:
        # Found by its own query: its answers, however many, never push it out of the history.
        last = await messages.last_user_message(session, chat.id)
        if last is None:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"Chat {chat.id} has no user message to regenerate an answer for",
            )
        for message in await messages.answers_in_group(session, chat.id, last.group_id):
            message.meta = {**message.meta, "superseded": True}
        earlier = await messages.history(session, chat.id, limit=HISTORY_MESSAGES, before=last.id)
        attached = (await files.files_of_messages(session, [last.id])).get(last.id, [])
        question = Question.of(last)
    else:
        earlier = await messages.history(session, chat.id, limit=HISTORY_MESSAGES)
        group_id = f"cvg-{uuid.uuid4()}"
        message_id = await messages.insert_message(
            await session.connection(),
            chat_id=chat.id,
            group_id=group_id,
            role="user",
            content=request.message,
            status="completed",
            meta={},
            response_id=response_id,
        )
        if attached:
            files.link(session, chat_id=chat.id, message_id=message_id, files=attached)
        question = Question(message_id, group_id, request.message)
    return await start_answer(
        session,
        opened,
        question,
        response_id=response_id,
        earlier=earlier,
        attachments=tuple(file.uuid for file in attached),
        include_tool_tags=request.include_tool_tags,
        owner=owner,
        resume_token=resume_token,
        trace_context=trace_context,
    )


async def claim_key(
    session: AsyncSession, claim: Claim | None, workspace_id: str, response_id: str, chat_id: int
) -> None:
    """Record the request's idempotency key first: a repeat racing it waits here, then gets
    `KeyTaken` — not a busy chat — and answers with what the first one started."""
    if claim is not None:
        await idempotency_keys.claim(
            session, claim, workspace_id, response_id=response_id, chat_id=chat_id
        )


_PENDING = (FormRequest.chat_id == bindparam("chat_id"), FormRequest.status == "pending")
_ANY_PENDING = select(FormRequest.id).where(*_PENDING).limit(1)
_PENDING_FORMS = select(FormRequest).where(*_PENDING)


async def expire_forms(session: AsyncSession, chat_id: int) -> None:
    """A new turn moves the chat on: forms still waiting for values can no longer be answered."""
    connection = await session.connection()  # most turns have none: no entities to load
    if (await connection.execute(_ANY_PENDING, {"chat_id": chat_id})).first() is None:
        return
    for form in await session.scalars(_PENDING_FORMS, {"chat_id": chat_id}):
        form.status = "expired"
        asked = await session.get(Message, form.message_id)
        if asked is not None:
            asked.meta = {**asked.meta, "form_request": {"id": form.id, "status": "expired"}}


@dataclass(frozen=True, slots=True)
class OpenedChat:
    chat: TurnChat
    agent: AgentRef
    snapshot: dict[str, Any]
    """The agent's published version: what the turn runs."""


async def open_chat(
    session: AsyncSession,
    *,
    workspace_id: str,
    chat_id: int,
    agent_id: str | None,
    external_user_id: str | None,
    whitelist_mode: bool,
    check_tools: Callable[[list[dict[str, Any]]], None],
) -> OpenedChat:
    """Lock the chat for a new response and check everything a response needs.

    `agent_id`, when given, must be the chat's agent. Raises `ApiError` or `ChatBusy`.
    """
    # Columns on the session's connection: a turn's statements run on the hot path.
    connection = await session.connection()
    chat = await chats.lock_for_turn(connection, chat_id)
    if chat is None or chat.workspace_id != workspace_id:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    # Removing a user from the whitelist closes their chats to everyone.
    for end_user in dict.fromkeys((chat.external_user_id, external_user_id)):
        await workspaces.check_end_user(
            session, workspace_id, end_user, whitelist_mode=whitelist_mode, required=False
        )
    if agent_id is not None and chat.agent_id != agent_id:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            "History agent mismatch: agent_id must be the agent this chat was created with "
            f"({chat.agent_id})",
        )
    agent = await agents.live_agent(connection, workspace_id, chat.agent_id)
    if agent is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Agent {chat.agent_id} not found")
    version = await agents.published_version(session, agent)
    if version is None:
        raise ApiError(ErrorCode.NOT_FOUND, "Agent version not found: publish the agent first")
    check_tools(list(version.snapshot.get("unified_tools") or []))
    running = await responses.running_on_chat(connection, chat.id)
    if running is not None:
        raise ChatBusy(chat.id, running)
    return OpenedChat(chat=chat, agent=agent, snapshot=version.snapshot)


async def start_answer(
    session: AsyncSession,
    opened: OpenedChat,
    question: Question,
    *,
    response_id: str,
    earlier: list[Earlier],
    attachments: tuple[str, ...],
    include_tool_tags: bool,
    owner: str,
    resume_token: Callable[[str, int], str],
    meta: dict[str, Any] | None = None,
    resumed: Resumed | None = None,
    trace_context: str | None = None,
) -> tuple[Turn, ResponseCreated]:
    """Store the in-progress answer to `question` and its response record."""
    chat, agent, snapshot = opened.chat, opened.agent, opened.snapshot
    connection = await session.connection()  # inserts only: nothing pending to flush first
    assistant_message_id = await messages.insert_message(
        connection,
        chat_id=chat.id,
        group_id=question.group_id,
        role="assistant",
        content="",
        status="in_progress",
        meta={"agent_profile": {"id": agent.id, "name": snapshot["name"]}, **(meta or {})},
        response_id=response_id,
    )
    await responses.insert_response(
        connection,
        response_id=response_id,
        chat_id=chat.id,
        workspace_id=chat.workspace_id,
        agent_id=agent.id,
        model=snapshot["llm_model"],
        user_message_id=question.id,
        assistant_message_id=assistant_message_id,
        owner=owner,
        trace_context=trace_context,
    )
    await chats.touch(connection, chat.id)
    turn = Turn(
        response_id=response_id,
        chat_id=chat.id,
        workspace_id=chat.workspace_id,
        agent_id=agent.id,
        llm_model=snapshot["llm_model"],
        system_prompt=snapshot.get("system_prompt") or "",
        model_settings=dict((snapshot.get("meta") or {}).get("model_settings") or {}),
        unified_tools=list(snapshot.get("unified_tools") or []),
        history=context(earlier),
        message=question.content,
        user_message_id=question.id,
        group_id=question.group_id,
        assistant_message_id=assistant_message_id,
        wants_title=chat.auto_title and not earlier and resumed is None,
        attachments=attachments,
        include_tool_tags=include_tool_tags,
        resumed=resumed,
    )
    created = ResponseCreated(
        response_id=response_id,
        chat_id=chat.id,
        agent_id=agent.id,
        model=snapshot["llm_model"],
        conversation_group_id=question.group_id,
        user_conversation_id=question.id,
        resume_token=resume_token(response_id, chat.id),
    )
    return turn, created


def context(earlier: list[Earlier]) -> list[ChatMessage]:
    """Earlier turns as model messages: the questions, and the answers that stand.

    Superseded answers (regenerated since), failed ones and empty ones are left out. A form the
    user submitted stays, as the tool call and result it was, so the model knows the values.
    """
    out: list[ChatMessage] = []
    for message in earlier:
        meta = message.meta or {}
        if message.role == "user":
            out.append(ChatMessage("user", message.content))
            continue
        form = meta.get("form")
        if message.role == "assistant" and form and not meta.get("superseded"):
            call = ToolCall(id=form["call_id"], name="request_form", arguments={})
            out.append(ChatMessage("assistant", "", tool_calls=(call,)))
            out.append(ChatMessage("tool", form["text"], tool_call_id=call.id))
        if (
            message.role == "assistant"
            and message.content
            and message.status in ("completed", "cancelled")
            and not meta.get("superseded")
        ):
            out.append(ChatMessage("assistant", message.content))
    return out
