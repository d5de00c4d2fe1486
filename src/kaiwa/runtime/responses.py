"""The lifecycle of a response: start, produce, finish; persistence at fixed checkpoints.

`start` stores the user message and an in-progress assistant message in one short transaction,
appends `response.created` and schedules the producer. The producer runs the agent beside title
generation, appends events to the log, and stores the outcome once at the end. No transaction is
ever held across a model await.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.bus import EventLog
from kaiwa.config import Settings
from kaiwa.llm import ChatMessage, ModelError, ModelRegistry, ModelRequest
from kaiwa.protocol import (
    ApiError,
    ChatTitleUpdated,
    ErrorCode,
    OutputTextCompleted,
    ResponseCreated,
    ResponseError,
    ResponseState,
)
from kaiwa.protocol.events import ResponseStatus
from kaiwa.runtime.agent import run_agent
from kaiwa.runtime.emitter import Emitter
from kaiwa.runtime.titles import generate_title
from kaiwa.runtime.usage import UsageMeter
from kaiwa.store import agents, chats, messages, responses, workspaces
from kaiwa.store.db import now, transaction
from kaiwa.store.models import Chat, Message, Response

logger = logging.getLogger(__name__)

HISTORY_MESSAGES = 40
"""How many earlier messages of the chat the model sees."""


@dataclass(frozen=True, slots=True)
class TurnRequest:
    workspace_id: str
    chat_id: int
    agent_id: str
    message: str
    external_user_id: str | None = None
    whitelist_mode: bool = False
    """The workspace admits only whitelisted end users (both the chat's and the sender)."""


@dataclass(frozen=True, slots=True)
class StartedResponse:
    response_id: str
    chat_id: int


@dataclass(slots=True)
class _Turn:
    """Everything the producer needs, read in `start`'s transaction."""

    response_id: str
    chat_id: int
    llm_model: str
    system_prompt: str
    model_settings: dict[str, Any]
    history: list[ChatMessage]
    message: str
    assistant_message_id: int
    wants_title: bool
    started_at: float = field(default=0.0)


class Runtime:
    """Starts responses and runs their producers in this process."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        log: EventLog,
        models: ModelRegistry,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._models = models
        self._settings = settings
        self._tasks: dict[str, asyncio.Task[ResponseState]] = {}
        self._draining = False

    async def start(self, request: TurnRequest) -> StartedResponse:
        """Validate and store the turn, announce it, and begin producing the answer.

        Raises `ApiError` (unknown chat, agent mismatch, unpublished agent, busy chat) before
        anything is stored.
        """
        if self._draining:
            raise ApiError(
                ErrorCode.SERVER_ERROR, "The server is shutting down; retry shortly", status=503
            )
        async with transaction(self._sessions) as session:
            turn, created = await self._store_turn(session, request)
        turn.started_at = asyncio.get_running_loop().time()
        await self._log.create(turn.response_id)
        emitter = Emitter(self._log, turn.response_id, turn.chat_id)
        await emitter.emit(created)
        task = asyncio.create_task(
            self._produce(turn, emitter), name=f"response-{turn.response_id}"
        )
        self._tasks[turn.response_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(turn.response_id, None))
        return StartedResponse(response_id=turn.response_id, chat_id=turn.chat_id)

    async def wait(self, response_id: str) -> ResponseState:
        """The final state of a response running in this process."""
        task = self._tasks.get(response_id)
        if task is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} is not running here")
        return await asyncio.shield(task)

    async def recover(self) -> list[str]:
        """At start-up: responses left in progress by a dead process are marked failed."""
        async with transaction(self._sessions) as session:
            return await responses.fail_unfinished(
                session,
                code=int(ErrorCode.SERVER_ERROR),
                message="The server stopped while this response was being produced",
            )

    async def drain(self, grace: float) -> None:
        """Stop starting responses; give running ones `grace` seconds, then cancel the rest.

        A cancelled producer still ends its log (`completed`, status `cancelled`) and stores its
        partial answer, so every open stream ends with `[DONE]`.
        """
        self._draining = True
        tasks = list(self._tasks.values())
        if not tasks:
            return
        if grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _store_turn(
        self, session: AsyncSession, request: TurnRequest
    ) -> tuple[_Turn, ResponseCreated]:
        chat = await session.get(Chat, request.chat_id, with_for_update=True)
        if chat is None or chat.workspace_id != request.workspace_id:
            raise ApiError(ErrorCode.NOT_FOUND, f"Chat {request.chat_id} not found")
        # Removing a user from the whitelist closes their chats to everyone.
        for end_user in dict.fromkeys((chat.external_user_id, request.external_user_id)):
            await workspaces.check_end_user(
                session,
                request.workspace_id,
                end_user,
                whitelist_mode=request.whitelist_mode,
                required=False,
            )
        if chat.agent_id != request.agent_id:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                "History agent mismatch: agent_id must be the agent this chat was created with "
                f"({chat.agent_id})",
            )
        agent = await agents.get_agent(session, request.workspace_id, request.agent_id)
        if agent is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"Agent {request.agent_id} not found")
        version = await agents.published_version(session, agent)
        if version is None:
            raise ApiError(ErrorCode.NOT_FOUND, "Agent version not found: publish the agent first")
        if await responses.running_on_chat(session, chat.id) is not None:
            raise ApiError(ErrorCode.CONFLICT, f"A response is already running on chat {chat.id}")
        earlier = await messages.history(session, chat.id, limit=HISTORY_MESSAGES)
        snapshot = version.snapshot
        response_id = str(uuid.uuid4())
        group_id = f"cvg-{uuid.uuid4()}"
        user_message = messages.add_message(
            session,
            chat_id=chat.id,
            group_id=group_id,
            role="user",
            content=request.message,
            status="completed",
            meta={},
            response_id=response_id,
        )
        assistant_message = messages.add_message(
            session,
            chat_id=chat.id,
            group_id=group_id,
            role="assistant",
            content="",
            status="in_progress",
            meta={"agent_profile": {"id": agent.id, "name": snapshot["name"]}},
            response_id=response_id,
        )
        await session.flush()
        session.add(
            Response(
                id=response_id,
                chat_id=chat.id,
                workspace_id=request.workspace_id,
                agent_id=agent.id,
                model=snapshot["llm_model"],
                user_message_id=user_message.id,
                assistant_message_id=assistant_message.id,
                status="in_progress",
                created_at=now(),
            )
        )
        chat.updated_at = now()
        turn = _Turn(
            response_id=response_id,
            chat_id=chat.id,
            llm_model=snapshot["llm_model"],
            system_prompt=snapshot.get("system_prompt") or "",
            model_settings=dict((snapshot.get("meta") or {}).get("model_settings") or {}),
            history=_context(earlier),
            message=request.message,
            assistant_message_id=assistant_message.id,
            wants_title=chat.auto_title and not earlier,
        )
        created = ResponseCreated(
            response_id=response_id,
            chat_id=chat.id,
            agent_id=agent.id,
            model=snapshot["llm_model"],
            conversation_group_id=group_id,
            user_conversation_id=user_message.id,
        )
        return turn, created

    async def _produce(self, turn: _Turn, emitter: Emitter) -> ResponseState:
        meter = UsageMeter()
        title_meter = UsageMeter()
        error: tuple[ErrorCode, str] | None = None
        status: ResponseStatus = "completed"
        title_task: asyncio.Task[None] | None = None
        try:
            model = self._models.get(turn.llm_model)
            idle = self._settings.idle_timeout
            async with asyncio.timeout(idle) as deadline:
                with emitter.watching_idle(deadline, idle):
                    if turn.wants_title:
                        title_task = asyncio.create_task(self._title(turn, emitter, title_meter))
                    request = ModelRequest(
                        messages=[*turn.history, ChatMessage("user", turn.message)],
                        system=turn.system_prompt or None,
                        settings=turn.model_settings,
                    )
                    await run_agent(model, request, emitter, meter)
            if title_task is not None:
                # The answer is whole: a slow title is given up, it never fails the answer.
                await self._finish_title(title_task)
        except ModelError as exc:
            logger.warning("response %s: model failed: %s", turn.response_id, exc.message)
            error = (ErrorCode.UPSTREAM_ERROR, exc.message)
        except TimeoutError:
            seconds = self._settings.idle_timeout
            error = (ErrorCode.TIMEOUT, f"No event for {seconds:g} s: the response timed out")
        except asyncio.CancelledError:
            status = "cancelled"
        except Exception:
            logger.exception("response %s failed", turn.response_id)
            error = (ErrorCode.SERVER_ERROR, "Internal server error while producing the answer")
        finally:
            if title_task is not None and not title_task.done():
                title_task.cancel()
        meter.merge(title_meter)
        if error is not None:
            status = "failed"
        await self._finish(turn, emitter, status, meter, error)
        return emitter.state

    async def _title(self, turn: _Turn, emitter: Emitter, meter: UsageMeter) -> None:
        try:
            model = self._models.get(turn.llm_model)
            title = await generate_title(model, turn.message, turn.model_settings, meter)
            if title is None:
                return
            title = title[: self._settings.max_name_chars]
            async with transaction(self._sessions) as session:
                stored = await chats.set_generated_title(session, turn.chat_id, title)
        except Exception as exc:
            # A title is a nicety: the answer goes on without one.
            logger.warning("title for chat %s failed: %s", turn.chat_id, exc)
            return
        if stored:
            await emitter.emit(
                ChatTitleUpdated(response_id=turn.response_id, chat_id=turn.chat_id, name=title)
            )

    async def _finish_title(self, task: asyncio.Task[None]) -> None:
        # Never wait longer than the idle timeout: the stream is silent meanwhile.
        limit = min(self._settings.title_timeout, self._settings.idle_timeout)
        try:
            await asyncio.wait_for(task, limit)
        except TimeoutError:
            logger.warning("title generation took longer than %ss; skipped", limit)

    async def _finish(
        self,
        turn: _Turn,
        emitter: Emitter,
        status: ResponseStatus,
        meter: UsageMeter,
        error: tuple[ErrorCode, str] | None,
    ) -> None:
        """Store the outcome, then end the log. The log ends even when storing fails."""
        usage = meter.total()
        elapsed_ms = int((asyncio.get_running_loop().time() - turn.started_at) * 1000)
        text = emitter.state.text
        try:
            await self._store_outcome(
                turn, status, text, usage.model_dump(), emitter, elapsed_ms, error
            )
        except Exception:
            logger.exception("could not store the outcome of response %s", turn.response_id)
        if error is not None:
            code, message = error
            await emitter.emit(
                ResponseError(
                    response_id=turn.response_id,
                    chat_id=turn.chat_id,
                    message=message,
                    code=int(code),
                )
            )
        else:
            await emitter.emit(
                OutputTextCompleted(
                    response_id=turn.response_id,
                    chat_id=turn.chat_id,
                    final_text=text,
                    usage=usage,
                    status="cancelled" if status == "cancelled" else "completed",
                )
            )

    async def _store_outcome(
        self,
        turn: _Turn,
        status: ResponseStatus,
        text: str,
        usage: dict[str, int],
        emitter: Emitter,
        elapsed_ms: int,
        error: tuple[ErrorCode, str] | None,
    ) -> None:
        for attempt in range(5):
            try:
                async with transaction(self._sessions) as session:
                    message = await session.get(Message, turn.assistant_message_id)
                    response = await session.get(Response, turn.response_id)
                    if message is None or response is None:
                        return
                    message.content = text
                    message.status = status
                    message.meta = {
                        **message.meta,
                        "reasoning_steps": emitter.state.steps or None,
                        "token_usage": usage,
                        "response_time_ms": elapsed_ms,
                    }
                    response.status = status
                    response.finished_at = now()
                    if error is not None:
                        response.error_code, response.error_message = int(error[0]), error[1]
                return
            except OperationalError:
                # SQLite busy beyond its timeout: wait and try again rather than lose the answer.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)


def _context(earlier: list[Message]) -> list[ChatMessage]:
    """Earlier turns as model messages: questions, and the answers that were given."""
    context: list[ChatMessage] = []
    for message in earlier:
        if message.role == "user":
            context.append(ChatMessage("user", message.content))
        elif (
            message.role == "assistant"
            and message.content
            and message.status
            in (
                "completed",
                "cancelled",
            )
        ):
            context.append(ChatMessage("assistant", message.content))
    return context
