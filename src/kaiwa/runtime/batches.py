"""Batch items as jobs: each is answered as an ordinary response, by whichever replica claims it.

    items = BatchItems(sessions=..., read_sessions=..., runtime=runtime, settings=settings,
                       notify=worker.notify)
    worker.register(items)  # kind `batch_item`, `batch_concurrency` at once here
    items.stop()            # shutdown begins: items cut short go back to the queue

Each item gets its own chat (named by its `name`, else its `custom_id`, and never auto-titled)
or continues its `history_id` chat, then `Runtime.start` and `Runtime.wait`: its events are those
of any response, readable through the resume endpoint.

Deliberate choices:

- A chat busy with another response (409) is retried `batch_busy_retries` times with backoff,
  then the item fails with that reason.
- An item whose replica died is run again by another (its job's lease lapses), once: if its
  question was already stored, the retry regenerates the answer instead of asking twice, and if
  its answer had been stored in full, that answer is the item's outcome. A second death fails it.
- A response cut short by shutdown puts its item (and its job) back, not `cancelled`.
- Storing an item's outcome, or putting it back, is a compare-and-set on its status and attempt:
  an item is answered once, and a replica that was presumed dead (paused) and wakes up after
  another took its item over changes nothing of it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.config import Settings
from kaiwa.net.redact import shown_url
from kaiwa.protocol import ApiError, ErrorCode, ResponseState
from kaiwa.runtime.jobs import Notify, Release
from kaiwa.runtime.responses import Runtime, StartedResponse
from kaiwa.runtime.turns import TurnRequest
from kaiwa.store import batches, chats, messages
from kaiwa.store.batches import ItemOutcome
from kaiwa.store.db import iso, transaction
from kaiwa.store.models import Batch, BatchItem, Job, Message, Response, Workspace

__all__ = ["BatchItems", "batch_object", "item_result"]

logger = logging.getLogger(__name__)

DIED_TWICE = "The server stopped twice while this item was running"


def batch_object(batch: Batch) -> dict[str, Any]:
    """A batch as the API and the webhook show it; the webhook's secret never appears, nor
    the credentials its URL may carry (userinfo and query values are masked: `shown_url`)."""
    webhook = None
    if batch.webhook_url:
        webhook = {"url": shown_url(batch.webhook_url), "events": list(batch.webhook_events)}
    return {
        "id": batch.id,
        "status": batch.status,
        "agent_id": batch.agent_id,
        "total_requests": batch.total_requests,
        "completed_requests": batch.completed_requests,
        "failed_requests": batch.failed_requests,
        "cancelled_requests": batch.cancelled_requests,
        "webhook": webhook,
        "webhook_delivered_at": iso(batch.webhook_delivered_at),
        "webhook_error": batch.webhook_error,
        "webhook_attempts": batch.webhook_attempts,
        "created_at": iso(batch.created_at),
        "started_at": iso(batch.started_at),
        "completed_at": iso(batch.completed_at),
        "cancelled_at": iso(batch.cancelled_at),
    }


def item_result(item: BatchItem) -> dict[str, Any]:
    """One item as `GET /batches/{id}/results` shows it."""
    error = None
    if item.error_code is not None:
        error = {"code": item.error_code, "message": item.error_message}
    return {
        "custom_id": item.custom_id,
        "status": item.status,
        "chat_id": item.chat_id,
        "response_id": item.response_id,
        "response": item.final_text,
        "error": error,
        "usage": item.usage,
        "agent_id": item.agent_id,
        "started_at": iso(item.started_at),
        "finished_at": iso(item.finished_at),
    }


class _Requeue(Exception):
    """The item could not run because this process is stopping: it goes back to `pending`."""


class BatchItems:
    kind = batches.ITEM_JOB
    max_attempts = 2
    """A second attempt only after the replica running the first died (see above)."""
    backoff = 1.0

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession],
        runtime: Runtime,
        settings: Settings,
        notify: Notify,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._runtime = runtime
        self._settings = settings
        self._notify = notify
        self.concurrency = settings.batch_concurrency
        self._stopping = False

    def stop(self) -> None:
        """Shutdown begins: responses cut short from now on put their item back."""
        self._stopping = True

    async def run(self, job: Job) -> None:
        item_id = int(job.payload["item_id"])
        async with transaction(self._sessions) as session:
            item = await batches.take_item(session, item_id)
        if item is None:
            return
        attempt = item.attempts
        try:
            outcome = await self._answer(item)
        except _Requeue:
            await self._requeue(item.id, attempt)
            raise Release from None
        except asyncio.CancelledError:
            # Stopping: the item goes back for another replica. Otherwise this replica lost its
            # job to another (it looked dead): the item is that one's now, left untouched.
            if self._stopping:
                await asyncio.shield(self._requeue(item.id, attempt))
            raise
        except Exception:
            logger.exception("batch item %s failed", item.id)
            outcome = _failed(
                int(ErrorCode.SERVER_ERROR), "Internal server error while running this item"
            )
        await self._finish(item.id, outcome, attempt)

    async def give_up(self, job: Job, error: str) -> None:
        item_id = int(job.payload["item_id"])
        await self._finish(item_id, _failed(int(ErrorCode.SERVER_ERROR), DIED_TWICE))

    async def _finish(self, item_id: int, outcome: ItemOutcome, attempt: int | None = None) -> None:
        async with transaction(self._sessions) as session:
            ended = await batches.finish_item(session, item_id, outcome, attempt=attempt)
        # The next item of the same chat, or the batch's webhook, may have been queued.
        await self._notify(batches.ITEM_JOB)
        if ended is not None:
            await self._notify(batches.WEBHOOK_JOB)

    async def _requeue(self, item_id: int, attempt: int) -> None:
        async with transaction(self._sessions) as session:
            await batches.requeue(session, item_id, attempt=attempt)

    # -- answering one item ------------------------------------------------------------------------

    async def _answer(self, item: BatchItem) -> ItemOutcome:
        async with self._read_sessions() as session:
            batch = await session.get(Batch, item.batch_id)
            workspace = await session.get(Workspace, batch.workspace_id) if batch else None
        if batch is None or workspace is None or batch.status == "cancelled":
            return batches.CANCELLED
        chat_id = await self._chat_for(item, workspace.id)
        earlier = await self._earlier_attempt(item, chat_id)
        if isinstance(earlier, ItemOutcome):
            return earlier
        request = TurnRequest(
            workspace_id=workspace.id,
            chat_id=chat_id,
            agent_id=item.agent_id,
            message=item.message,
            regenerate=earlier,
            external_user_id=item.external_user_id,
            whitelist_mode=workspace.whitelist_mode,
            attached_file_uuids=tuple(item.attached_file_uuids),
            batch_item_id=item.id,
        )
        started = await self._start(item, request)
        if isinstance(started, ItemOutcome):
            return started
        response_id = started.response_id
        # Taken at once: a response that ended is no longer the runtime's to wait for.
        waiting = asyncio.ensure_future(self._runtime.wait(response_id))
        try:
            async with transaction(self._sessions) as session:
                cancelled = await batches.attach_response(session, item.id, response_id)
            if cancelled:
                self._runtime.request_cancel(response_id, "stop")
            state = await waiting
        except ApiError:
            # It ended before it could be waited for: its outcome is stored.
            stored = await self._stored_outcome(response_id)
            if stored is None:
                return _failed(int(ErrorCode.SERVER_ERROR), "The response's outcome was lost")
            if stored.status == "cancelled" and self._stopping:
                raise _Requeue from None
            return stored
        finally:
            waiting.cancel()
        return self._outcome(state)

    async def _chat_for(self, item: BatchItem, workspace_id: str) -> int:
        if item.chat_id is not None:
            return item.chat_id
        async with transaction(self._sessions) as session:
            chat = await chats.create_chat(
                session,
                workspace_id,
                name=item.name or item.custom_id,
                agent_id=item.agent_id,
                external_user_id=item.external_user_id,
            )
            # The caller named it (or its custom_id does): no generated title replaces that.
            chat.auto_title = False
            await batches.attach_chat(session, item.id, chat.id)
        item.chat_id = chat.id
        return chat.id

    async def _earlier_attempt(self, item: BatchItem, chat_id: int) -> ItemOutcome | bool:
        """What an attempt of a process that died left: the outcome, when its answer was stored
        whole; True when its question is the chat's last (answer it again); else False."""
        if item.response_id is None:
            return False
        stored = await self._stored_outcome(item.response_id)
        if stored is not None and stored.status == "completed":
            return stored
        async with self._read_sessions() as session:
            response = await session.get(Response, item.response_id)
            last = await messages.last_user_message(session, chat_id)
        return response is not None and last is not None and last.id == response.user_message_id

    async def _start(self, item: BatchItem, request: TurnRequest) -> StartedResponse | ItemOutcome:
        retries = self._settings.batch_busy_retries
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self._settings.batch_busy_backoff * 2 ** (attempt - 1))
                async with self._read_sessions() as session:
                    if await batches.is_cancelled(session, item.id):
                        return batches.CANCELLED
            if self._stopping:
                raise _Requeue
            try:
                return await self._runtime.start(request)
            except ApiError as exc:
                if exc.status == 503:  # the runtime is draining
                    raise _Requeue from None
                if exc.code != ErrorCode.CONFLICT:
                    return _failed(int(exc.code), exc.message)
                if attempt == retries:
                    tries = "once" if retries == 0 else f"{retries + 1} times"
                    return _failed(int(exc.code), f"{exc.message} (tried {tries})")
        raise AssertionError("unreachable")

    def _outcome(self, state: ResponseState) -> ItemOutcome:
        usage = state.usage.model_dump()
        if state.status == "cancelled":
            if self._stopping:
                raise _Requeue
            return ItemOutcome(
                status="cancelled",
                final_text=state.text,
                usage=usage,
                error_code=int(ErrorCode.CANCELLED),
                error_message="The response was cancelled",
            )
        if state.error is not None:
            return _failed(state.error.code, state.error.message)
        # An answer that waits for a form has ended too: the form can be answered in its chat.
        return ItemOutcome(status="completed", final_text=state.text, usage=usage)

    async def _stored_outcome(self, response_id: str) -> ItemOutcome | None:
        """The outcome of an ended response, read from the database."""
        async with self._read_sessions() as session:
            response = await session.get(Response, response_id)
            answer = await session.get(Message, response.assistant_message_id) if response else None
        if response is None or answer is None or response.status == "in_progress":
            return None
        usage = (answer.meta or {}).get("token_usage")
        if response.status in ("completed", "awaiting_form"):
            return ItemOutcome(status="completed", final_text=answer.content, usage=usage)
        if response.status == "cancelled":
            return ItemOutcome(
                status="cancelled",
                final_text=answer.content,
                usage=usage,
                error_code=int(ErrorCode.CANCELLED),
                error_message="The response was cancelled",
            )
        return _failed(
            response.error_code or int(ErrorCode.SERVER_ERROR),
            response.error_message or "The response failed",
        )


def _failed(code: int, message: str) -> ItemOutcome:
    return ItemOutcome(status="failed", error_code=code, error_message=message)
