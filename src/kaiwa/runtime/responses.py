"""The lifecycle of a response: start, produce, finish; persistence at fixed checkpoints.

`start` stores the user message and an in-progress assistant message in one short transaction,
under this replica's id as its owner, appends `response.created` and schedules the producer.
The producer runs the agent beside title generation, appends events to the log, and stores the
outcome once at the end — only if the answer is still its own (see `runtime.sweeper`: another
replica ends the answers of a replica presumed dead). No transaction is ever held across a
model await. Stops for answers produced elsewhere go through `runtime.stops`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa import log_context
from kaiwa.bus import EventLog, EventLogError, LogFinished, LogFull
from kaiwa.config import Settings
from kaiwa.llm import ChatMessage, ChatModel, ModelError, ModelRegistry, ModelRequest
from kaiwa.llm.text import detect_language
from kaiwa.protocol import (
    ApiError,
    ChatTitleUpdated,
    ErrorCode,
    OutputTextCompleted,
    ResponseCreated,
    ResponseError,
    ResponseState,
    TokenUsage,
)
from kaiwa.protocol.events import ResponseStatus, StepEnd
from kaiwa.runtime.agent import AgentRun, FormPause, run_agent
from kaiwa.runtime.checkpoints import Checkpointer
from kaiwa.runtime.emitter import Emitter
from kaiwa.runtime.forms import FormSubmission, store_pause, store_submission
from kaiwa.runtime.observe import NO_OBSERVER, NO_WATCH, AnswerInfo, AnswerWatch, Observer
from kaiwa.runtime.stops import CancelReason, Stops
from kaiwa.runtime.titles import generate_title
from kaiwa.runtime.tokens import TokenSigner
from kaiwa.runtime.tools.base import ToolContext
from kaiwa.runtime.tools.toolbox import Toolbox, ToolConfigError
from kaiwa.runtime.turns import ChatBusy, Turn, TurnRequest, store_turn
from kaiwa.runtime.usage import UsageMeter
from kaiwa.store import chats, messages, responses
from kaiwa.store.db import transaction

logger = logging.getLogger(__name__)

INTERRUPT_WAIT = 10.0
"""Seconds `if_busy=interrupt` waits for the running response to end before giving up (409)."""


@dataclass(frozen=True, slots=True)
class StartedResponse:
    response_id: str
    chat_id: int


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[ResponseState]
    emitter: Emitter
    watch: AnswerWatch = NO_WATCH
    reason: CancelReason | None = None
    started: bool = False
    """The producer has begun: a task cancelled before that never runs its own clean-up."""
    finishing: bool = False
    """Past the point of no return: storing the outcome and ending the log."""


class _Superseded(Exception):
    """The answer is no longer this replica's: another one ended it."""


class Runtime:
    """Starts responses and runs their producers in this process."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        log: EventLog,
        models: ModelRegistry,
        settings: Settings,
        signer: TokenSigner,
        toolbox: Toolbox,
        owner: str,
        stops: Stops,
        checkpoint_sessions: async_sessionmaker[AsyncSession] | None = None,
        observer: Observer = NO_OBSERVER,
        on_cancel: Callable[[CancelReason], None] | None = None,
        trace_context: Callable[[str], str | None] | None = None,
    ) -> None:
        """`owner`: this replica's id, recorded on every response it produces. `stops`: how
        answers produced elsewhere are stopped. `checkpoint_sessions`: where the periodic
        checkpoints of every running answer are written (one large write; on SQLite, an
        offloaded engine keeps it off the event loop); `sessions` by default. `observer`: who
        watches each answer (metrics, traces). `on_cancel`: told the reason once for each
        answer running here that is asked to stop (the metrics count cancels by reason).
        `trace_context(response_id)`: called as an answer starts, before it is stored; what it
        returns (a W3C traceparent, with traces on) is stored with the response."""
        self._sessions = sessions
        self._trace_context = trace_context
        self._observer = observer
        self._on_cancel = on_cancel
        self._owner = owner
        self._stops = stops
        self._toolbox = toolbox
        self._log = log
        self._models = models
        self._settings = settings
        self._idle_deadlines = Emitter.idle_deadlines(settings.idle_timeout)
        self._signer = signer
        self._running: dict[str, _Running] = {}
        self._draining = False
        self._checkpoints = Checkpointer(
            checkpoint_sessions or sessions, settings.checkpoint_interval
        )

    async def start(self, request: TurnRequest) -> StartedResponse:
        """Validate and store the turn, announce it, and begin producing the answer.

        Raises `ApiError` (unknown chat, agent mismatch, unpublished agent, busy chat) before
        anything is stored. With `if_busy="interrupt"` a running response is cancelled first.
        """
        self._check_open()
        response_id = await self._open_log()
        trace = self._trace_context(response_id) if self._trace_context is not None else None
        try:
            try:
                turn, created = await self._store(request, response_id, trace)
            except ChatBusy as busy:
                if request.if_busy != "interrupt":
                    raise ApiError(ErrorCode.CONFLICT, str(busy)) from None
                # Try again even when it was not stopped: it may have ended meanwhile.
                await self._interrupt(busy.response_id)
                try:
                    turn, created = await self._store(request, response_id, trace)
                except ChatBusy as again:
                    raise ApiError(ErrorCode.CONFLICT, str(again)) from None
        except BaseException:
            await self._log.abandon(response_id)
            raise
        return await self._launch(turn, created)

    async def submit_form(self, submission: FormSubmission) -> StartedResponse:
        """Check and store a form's values, then go on with the turn that asked for it.

        Raises `ApiError`: 404 for an unknown form, 400 naming a bad value, 409 when it was
        submitted already or a response runs on the chat.
        """
        self._check_open()
        response_id = await self._open_log()
        trace = self._trace_context(response_id) if self._trace_context is not None else None
        try:
            async with transaction(self._sessions) as session:
                turn, created = await store_submission(
                    session,
                    submission,
                    response_id=response_id,
                    owner=self._owner,
                    resume_token=self._signer.sign,
                    check_tools=self._check_tools,
                    trace_context=trace,
                )
        except ChatBusy as busy:
            await self._log.abandon(response_id)
            raise ApiError(ErrorCode.CONFLICT, str(busy)) from None
        except BaseException:
            await self._log.abandon(response_id)
            raise
        return await self._launch(turn, created)

    @property
    def draining(self) -> bool:
        """Shutting down: no new response starts here."""
        return self._draining

    def _check_open(self) -> None:
        if self._draining:
            raise ApiError(
                ErrorCode.SERVER_ERROR, "The server is shutting down; retry shortly", status=503
            )

    async def _open_log(self) -> str:
        """A new response's id, its log opened first: when it cannot be (Redis is down, a
        `BusUnavailable`: 503), nothing of the turn is stored."""
        response_id = str(uuid.uuid4())
        await self._log.create(response_id)
        return response_id

    async def _launch(self, turn: Turn, created: ResponseCreated) -> StartedResponse:
        turn.started_at = asyncio.get_running_loop().time()
        emitter = Emitter(self._log, turn.response_id, turn.chat_id)
        watch = self._observer.answer(
            AnswerInfo(
                response_id=turn.response_id,
                chat_id=turn.chat_id,
                workspace_id=turn.workspace_id,
                agent_id=turn.agent_id,
                llm_model=turn.llm_model,
                continued=turn.resumed is not None,
                message=turn.message,
                state=emitter.state,
            )
        )
        try:
            await emitter.emit(created)
        except BaseException:
            watch.finished("failed", int(ErrorCode.SERVER_ERROR), TokenUsage())
            raise
        watch.created()
        # The producer's log lines name its answer (and the request that started it, if any).
        context = contextvars.copy_context()
        context.run(
            log_context.bind,
            workspace_id=turn.workspace_id,
            chat_id=turn.chat_id,
            response_id=turn.response_id,
        )
        task = asyncio.create_task(
            self._produce(turn, emitter), name=f"response-{turn.response_id}", context=context
        )
        self._running[turn.response_id] = _Running(task=task, emitter=emitter, watch=watch)
        task.add_done_callback(lambda _: self._running.pop(turn.response_id, None))
        return StartedResponse(response_id=turn.response_id, chat_id=turn.chat_id)

    async def _store(
        self, request: TurnRequest, response_id: str, trace_context: str | None
    ) -> tuple[Turn, ResponseCreated]:
        async with transaction(self._sessions) as session:
            return await store_turn(
                session,
                request,
                response_id=response_id,
                owner=self._owner,
                resume_token=self._signer.sign,
                check_tools=self._check_tools,
                trace_context=trace_context,
            )

    def _check_tools(self, unified_tools: list[dict[str, Any]]) -> None:
        try:
            self._toolbox.check(unified_tools)
        except ToolConfigError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, f"The agent cannot run here: {exc}") from None

    async def _interrupt(self, response_id: str) -> None:
        """Cancel a running response, here or elsewhere, and wait (a while) for it to end."""
        if response_id not in self._running:
            await self._stops.stop_elsewhere(response_id, "interrupt", wait=INTERRUPT_WAIT)
            return
        try:
            async with asyncio.timeout(INTERRUPT_WAIT):
                await self.cancel(response_id, "interrupt")
        except TimeoutError:
            logger.warning(
                "response %s did not end within %ss of its interrupt", response_id, INTERRUPT_WAIT
            )

    def request_cancel(self, response_id: str, reason: CancelReason) -> bool:
        """Ask a response running here to stop; returns at once. False if it is not running."""
        running = self._running.get(response_id)
        if running is None or running.finishing:
            return running is not None
        if running.reason is None:
            running.reason = reason
            if self._on_cancel is not None:
                self._on_cancel(reason)
            if running.started:
                running.task.cancel()
        return True

    async def cancel(self, response_id: str, reason: CancelReason) -> ResponseState | None:
        """Stop a response and return its final state when it ran here; None otherwise (when
        another replica produces it, this returns once its log ended, or after a while).

        Idempotent: cancelling a response that is already ending just waits for its end.
        """
        running = self._running.get(response_id)
        if running is None:
            await self._stops.stop_elsewhere(response_id, reason, wait=INTERRUPT_WAIT)
            return None
        self.request_cancel(response_id, reason)
        return await asyncio.shield(running.task)

    def state(self, response_id: str) -> ResponseState | None:
        """What a response running here has produced so far."""
        running = self._running.get(response_id)
        return running.emitter.state if running is not None else None

    async def wait(self, response_id: str) -> ResponseState:
        """The final state of a response running in this process."""
        running = self._running.get(response_id)
        if running is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} is not running here")
        return await asyncio.shield(running.task)

    async def drain(self, grace: float) -> None:
        """Stop starting responses; give running ones `grace` seconds, then cancel the rest.

        A cancelled producer still ends its log (`completed`, status `cancelled`) and stores its
        partial answer, so every open stream ends with `[DONE]`.
        """
        self._draining = True
        tasks = [running.task for running in self._running.values()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for response_id in list(self._running):
            self.request_cancel(response_id, "shutdown")
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._checkpoints.close()

    async def _produce(self, turn: Turn, emitter: Emitter) -> ResponseState:
        meter = UsageMeter()
        title_meter = UsageMeter()
        error: tuple[ErrorCode, str] | None = None
        status: ResponseStatus = "completed"
        pause: FormPause | None = None
        title_task: asyncio.Task[None] | None = None
        running = self._running[turn.response_id]
        running.started = True
        try:
            if running.reason is not None:
                raise asyncio.CancelledError  # cancelled before it began
            model = self._models.get(turn.llm_model)
            idle = self._settings.idle_timeout
            async with asyncio.timeout(idle) as deadline:
                with emitter.watching_idle(deadline, self._idle_deadlines):
                    if turn.wants_title:
                        title_task = asyncio.create_task(
                            self._title(turn, emitter, title_meter, running.watch)
                        )
                    self._checkpoints.watch(turn.assistant_message_id, emitter.state)
                    pause = await self._run_agent(turn, model, emitter, meter, running.watch)
                    if pause is not None:
                        status = "awaiting_form"
            if title_task is not None:
                # The answer is whole: a slow title is given up, it never fails the answer.
                await self._finish_title(title_task)
        except ToolConfigError as exc:
            error = (ErrorCode.BAD_REQUEST, f"The agent cannot run here: {exc}")
        except ModelError as exc:
            logger.warning("response %s: model failed: %s", turn.response_id, exc.message)
            error = (ErrorCode.UPSTREAM_ERROR, exc.message)
        except LogFinished:
            # Sealed by another replica, which presumed this one dead: nothing more is ours.
            logger.warning("response %s was ended by another replica", turn.response_id)
            error = (ErrorCode.SERVER_ERROR, "The answer was ended by another replica")
        except LogFull as exc:
            logger.warning("response %s: %s", turn.response_id, exc)
            error = (
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"The answer is over the limit of {exc.limit} bytes of events per response",
            )
        except TimeoutError:
            seconds = self._settings.idle_timeout
            error = (ErrorCode.TIMEOUT, f"No event for {seconds:g} s: the response timed out")
        except asyncio.CancelledError:
            status = "cancelled"
            if running.reason == "interrupt":
                error = (ErrorCode.CANCELLED, "Interrupted: a new message was sent to this chat")
        except Exception:
            logger.exception("response %s failed", turn.response_id)
            error = (ErrorCode.SERVER_ERROR, "Internal server error while producing the answer")
        finally:
            self._checkpoints.forget(turn.assistant_message_id)
            if title_task is not None and not title_task.done():
                title_task.cancel()
                # Wait for it, so no title event can come after the terminal one.
                await asyncio.gather(title_task, return_exceptions=True)
        meter.merge(title_meter)
        if error is not None and status != "cancelled":
            status = "failed"
        running.finishing = True
        try:
            await self._finish(turn, emitter, status, meter, error, pause)
        finally:
            code = int(error[0]) if error is not None else None
            running.watch.finished(status, code, meter.total())
        return emitter.state

    async def _run_agent(
        self, turn: Turn, model: ChatModel, emitter: Emitter, meter: UsageMeter, watch: AnswerWatch
    ) -> FormPause | None:
        context = ToolContext(
            workspace_id=turn.workspace_id,
            chat_id=turn.chat_id,
            agent_id=turn.agent_id,
            message=turn.message,
            language=detect_language(turn.message),
            user_message_id=turn.user_message_id,
            attachments=turn.attachments,
            agent_path=(turn.agent_id,),
            watch=watch,
        )
        tools = await self._toolbox.tools_for(turn.unified_tools, context)
        limits = self._toolbox.limits
        run = AgentRun(
            model=model,
            request=ModelRequest(
                messages=[*turn.history, ChatMessage("user", turn.message)],
                system=turn.system_prompt or None,
                settings=turn.model_settings,
            ),
            tools=tools,
            context=context,
            sink=emitter,
            meter=meter,
            max_rounds=limits.max_rounds,
            tool_timeout=limits.tool_timeout,
            include_tool_tags=turn.include_tool_tags,
            watch=watch,
        )
        resumed = turn.resumed
        if resumed is None:
            return await run_agent(run)
        await emitter.step_end(StepEnd.model_validate(resumed.step_end))
        return await run_agent(run, turn=resumed.messages, first_round=resumed.round + 1)

    async def _title(
        self, turn: Turn, emitter: Emitter, meter: UsageMeter, watch: AnswerWatch
    ) -> None:
        try:
            model = self._models.get(turn.llm_model)
            provider, _, name = model.name.partition("/")
            with watch.model_call(provider, name) as call:
                title = await generate_title(model, turn.message, turn.model_settings, meter)
                call.usage(meter.prompt, meter.completion)
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
        turn: Turn,
        emitter: Emitter,
        status: ResponseStatus,
        meter: UsageMeter,
        error: tuple[ErrorCode, str] | None,
        pause: FormPause | None,
    ) -> None:
        """Store the outcome, then end the log. The log ends even when storing fails."""
        usage = meter.total()
        elapsed_ms = int((asyncio.get_running_loop().time() - turn.started_at) * 1000)
        text = emitter.state.text
        try:
            await self._store_outcome(
                turn, status, text, usage.model_dump(), emitter, elapsed_ms, error, pause
            )
        except _Superseded:
            logger.warning(
                "response %s was ended by another replica; its outcome here is dropped",
                turn.response_id,
            )
            return
        except Exception:
            logger.exception("could not store the outcome of response %s", turn.response_id)
        try:
            await self._emit_ending(turn, emitter, status, usage, error)
        except EventLogError as exc:
            logger.warning("response %s: its log could not be ended: %s", turn.response_id, exc)

    async def _emit_ending(
        self,
        turn: Turn,
        emitter: Emitter,
        status: ResponseStatus,
        usage: TokenUsage,
        error: tuple[ErrorCode, str] | None,
    ) -> None:
        text = emitter.state.text
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
                    status=status if status in ("cancelled", "awaiting_form") else "completed",
                )
            )

    async def _store_outcome(
        self,
        turn: Turn,
        status: ResponseStatus,
        text: str,
        usage: dict[str, int],
        emitter: Emitter,
        elapsed_ms: int,
        error: tuple[ErrorCode, str] | None,
        pause: FormPause | None,
    ) -> None:
        for attempt in range(5):
            try:
                async with transaction(self._sessions) as session:
                    # Core statements on the connection: they read nothing left pending.
                    connection = await session.connection()
                    # First, and only if the answer is still ours: never over another's ending.
                    if not await responses.finish(
                        connection,
                        turn.response_id,
                        owner=self._owner,
                        status=status,
                        # Nothing else emits now: the terminal event comes next, with this id.
                        last_event_id=emitter.next_id,
                        error=None if error is None else (int(error[0]), error[1]),
                    ):
                        raise _Superseded
                    meta = await messages.meta_of(connection, turn.assistant_message_id)
                    if meta is None:
                        return
                    meta |= {
                        "reasoning_steps": emitter.state.steps or None,
                        "token_usage": usage,
                        "response_time_ms": elapsed_ms,
                    }
                    if pause is not None and status == "awaiting_form":
                        store_pause(session, turn, pause)
                        meta["form_request"] = {
                            "id": pause.step.args["form_request_id"],
                            "status": "pending",
                        }
                    await messages.store_answer(
                        connection,
                        turn.assistant_message_id,
                        content=text,
                        status=status,
                        meta=meta,
                    )
                return
            except OperationalError:
                # SQLite busy beyond its timeout: wait and try again rather than lose the answer.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
