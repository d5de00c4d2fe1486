"""Batches and their items: stored whole, run as jobs, ended once.

Each item runs as a `batch_item` job (`kaiwa.store.jobs`), queued in the transaction that
stores it, keyed by the item's id so it is one job whatever happens. Items that continue the
same chat (`history_id`) run one after another, in batch order: only the first is queued with
the batch, and each one that ends queues the next.

Every change that ends an item locks its batch row first (`FOR UPDATE` on PostgreSQL; SQLite
serialises writers anyway), so the counters stay exact and exactly one transaction sees the last
item end: the one that settles the batch and queues its webhook (a `webhook` job keyed by the
batch's id: one delivery, retried, with one delivery id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kaiwa.protocol import ErrorCode
from kaiwa.store import jobs
from kaiwa.store.db import new_id, now, paginate
from kaiwa.store.models import Batch, BatchItem

__all__ = [
    "CANCELLED",
    "ENDED",
    "ITEM_JOB",
    "WEBHOOK_JOB",
    "Cancelled",
    "ItemOutcome",
    "NewItem",
    "WebhookEvent",
    "add_batch",
    "attach_chat",
    "attach_response",
    "cancel",
    "finish_item",
    "get_batch",
    "is_cancelled",
    "list_batches",
    "list_items",
    "lock_batch",
    "record_webhook",
    "requeue",
    "take_item",
    "webhook_event",
]

ITEM_JOB = "batch_item"
"""The job kind that answers one item; payload `{"item_id"}`."""
WEBHOOK_JOB = "webhook"
"""The job kind that delivers an ended batch's webhook; payload `{"batch_id"}`."""

WebhookEvent = Literal["completed", "failed", "cancelled"]
_EVENTS: dict[str, WebhookEvent] = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
ENDED: frozenset[str] = frozenset(_EVENTS)
"""Statuses a batch (or an item) never leaves."""
_OPEN = ("pending", "running")
CANCELLED_CODE = int(ErrorCode.CANCELLED)
CANCELLED_MESSAGE = "The batch was cancelled"


@dataclass(frozen=True, slots=True)
class NewItem:
    custom_id: str
    message: str
    agent_id: str
    external_user_id: str | None = None
    name: str | None = None
    attached_file_uuids: tuple[str, ...] = ()
    history_id: int | None = None


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    status: Literal["completed", "failed", "cancelled"]
    final_text: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    usage: dict[str, int] | None = None


CANCELLED = ItemOutcome(
    status="cancelled", error_code=CANCELLED_CODE, error_message=CANCELLED_MESSAGE
)
"""The outcome of an item that never ran because its batch was cancelled."""


async def add_batch(
    session: AsyncSession,
    *,
    workspace_id: str,
    agent_id: str,
    items: Sequence[NewItem],
    webhook_url: str | None = None,
    webhook_events: Sequence[WebhookEvent] = (),
    webhook_secret: str | None = None,
) -> Batch:
    batch = Batch(
        id=new_id(),
        workspace_id=workspace_id,
        agent_id=agent_id,
        status="pending",
        total_requests=len(items),
        completed_requests=0,
        failed_requests=0,
        cancelled_requests=0,
        webhook_url=webhook_url,
        webhook_events=list(webhook_events) if webhook_url else [],
        webhook_secret=webhook_secret if webhook_url else None,
        webhook_attempts=0,
        created_at=now(),
    )
    session.add(batch)
    session.add_all(
        BatchItem(
            batch_id=batch.id,
            position=position,
            custom_id=item.custom_id,
            message=item.message,
            agent_id=item.agent_id,
            external_user_id=item.external_user_id,
            name=item.name,
            attached_file_uuids=list(item.attached_file_uuids),
            history_id=item.history_id,
            chat_id=item.history_id,
            status="pending",
            attempts=0,
        )
        for position, item in enumerate(items)
    )
    await session.flush()
    heads = await session.scalars(
        select(BatchItem.id).where(BatchItem.batch_id == batch.id, ~_waits_for_earlier())
    )
    for item_id in heads:
        await _queue_item(session, item_id)
    return batch


def _waits_for_earlier() -> Any:
    """The item continues a chat that an earlier, unfinished item of its batch continues."""
    earlier = aliased(BatchItem)
    return and_(
        BatchItem.history_id.is_not(None),
        exists().where(
            earlier.batch_id == BatchItem.batch_id,
            earlier.history_id == BatchItem.history_id,
            earlier.position < BatchItem.position,
            earlier.status.in_(_OPEN),
        ),
    )


async def _queue_item(session: AsyncSession, item_id: int) -> None:
    await jobs.enqueue(session, ITEM_JOB, {"item_id": item_id}, key=f"item:{item_id}")


async def get_batch(session: AsyncSession, workspace_id: str, batch_id: str) -> Batch | None:
    batch = await session.get(Batch, batch_id)
    if batch is None or batch.workspace_id != workspace_id:
        return None
    return batch


async def lock_batch(session: AsyncSession, workspace_id: str, batch_id: str) -> Batch | None:
    """`get_batch`, holding the row until the transaction ends."""
    batch = await session.get(Batch, batch_id, with_for_update=True, populate_existing=True)
    if batch is None or batch.workspace_id != workspace_id:
        return None
    return batch


async def list_batches(
    session: AsyncSession, workspace_id: str, *, limit: int, offset: int
) -> tuple[list[Batch], int]:
    query = (
        select(Batch)
        .where(Batch.workspace_id == workspace_id)
        .order_by(Batch.created_at.desc(), Batch.id.desc())
    )
    return await paginate(session, query, limit=limit, offset=offset)


async def list_items(
    session: AsyncSession, batch_id: str, *, limit: int, offset: int
) -> tuple[list[BatchItem], int]:
    query = select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.position)
    return await paginate(session, query, limit=limit, offset=offset)


async def take_item(session: AsyncSession, item_id: int) -> BatchItem | None:
    """Mark an item running for its job; None when it has ended (its batch was cancelled, or an
    earlier attempt finished it). An item already `running` was left by a replica that died:
    it is taken again (`attempts` says how often)."""
    item = await session.get(BatchItem, item_id, with_for_update=True, populate_existing=True)
    if item is None or item.status not in _OPEN:
        return None
    stamp = now()
    item.status = "running"
    item.attempts += 1
    item.started_at = stamp
    await session.execute(
        update(Batch)
        .where(Batch.id == item.batch_id, Batch.status == "pending")
        .values(status="processing", started_at=stamp)
    )
    await session.flush()
    return item


async def finish_item(
    session: AsyncSession, item_id: int, outcome: ItemOutcome, *, attempt: int | None = None
) -> Batch | None:
    """Store an item's outcome, if it has none yet (running, or still pending when its job gave
    up before it could start) and, with `attempt`, only if it is still that attempt (`take_item`
    counted it): one a later attempt took over is not this caller's. The batch when this settled
    it (its last item ended)."""
    item = await session.get(BatchItem, item_id)
    if item is None:
        return None
    batch = await session.get(Batch, item.batch_id, with_for_update=True, populate_existing=True)
    await session.refresh(item)
    if batch is None or item.status not in _OPEN:
        return None
    if attempt is not None and item.attempts != attempt:
        return None
    item.status = outcome.status
    item.final_text = outcome.final_text
    item.error_code = outcome.error_code
    item.error_message = outcome.error_message
    item.usage = outcome.usage
    item.finished_at = now()
    _count(batch, outcome.status, 1)
    await session.flush()
    if item.history_id is not None:
        following = await session.scalar(
            select(BatchItem.id)
            .where(
                BatchItem.batch_id == batch.id,
                BatchItem.history_id == item.history_id,
                BatchItem.position > item.position,
                BatchItem.status == "pending",
            )
            .order_by(BatchItem.position)
            .limit(1)
        )
        if following is not None:
            await _queue_item(session, following)
    return batch if await _settle(session, batch) else None


async def requeue(session: AsyncSession, item_id: int, *, attempt: int) -> None:
    """Put a running item back, as if this attempt had never been made (this process is
    stopping), unless a later attempt has taken it over."""
    await session.execute(
        update(BatchItem)
        .where(
            BatchItem.id == item_id,
            BatchItem.status == "running",
            BatchItem.attempts == attempt,
        )
        .values(status="pending", attempts=BatchItem.attempts - 1)
    )


@dataclass(frozen=True, slots=True)
class Cancelled:
    batch: Batch
    running_responses: list[str]
    """Responses of items still running: stop them; each item then ends `cancelled`."""
    settled: bool
    """No item is left running: the batch has ended."""


async def cancel(session: AsyncSession, batch: Batch) -> Cancelled:
    """Cancel a locked (`lock_batch`), unfinished batch: its pending items end `cancelled`."""
    stamp = now()
    # An item being taken right now is skipped, not waited for (its taker holds it and waits
    # for this batch's row): the runner finds the batch cancelled and ends it `cancelled`.
    pending = list(
        await session.scalars(
            select(BatchItem.id)
            .where(BatchItem.batch_id == batch.id, BatchItem.status == "pending")
            .with_for_update(skip_locked=True)
        )
    )
    if pending:
        await session.execute(
            update(BatchItem)
            .where(BatchItem.id.in_(pending))
            .values(
                status="cancelled",
                finished_at=stamp,
                error_code=CANCELLED_CODE,
                error_message=CANCELLED_MESSAGE,
            )
            .execution_options(synchronize_session=False)
        )
    _count(batch, "cancelled", len(pending))
    batch.status = "cancelled"
    batch.cancelled_at = stamp
    running = list(
        await session.scalars(
            select(BatchItem.response_id).where(
                BatchItem.batch_id == batch.id,
                BatchItem.status == "running",
                BatchItem.response_id.is_not(None),
            )
        )
    )
    await session.flush()
    settled = await _settle(session, batch)
    return Cancelled(batch=batch, running_responses=[r for r in running if r], settled=settled)


def webhook_event(batch: Batch) -> WebhookEvent | None:
    """The webhook event an ended batch sends, or None when it is not subscribed to it."""
    event = _EVENTS.get(batch.status)
    if not batch.webhook_url or event is None or event not in batch.webhook_events:
        return None
    return event


async def record_webhook(
    session: AsyncSession,
    batch_id: str,
    *,
    attempts: int,
    delivered: bool = False,
    error: str | None = None,
) -> None:
    """After each attempt: how many were made, and whether it was delivered or given up
    (`error`); neither while it is being retried."""
    await session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(
            webhook_attempts=attempts,
            webhook_error=error,
            webhook_delivered_at=now() if delivered else None,
        )
    )


def _count(batch: Batch, status: str, n: int) -> None:
    if status == "completed":
        batch.completed_requests += n
    elif status == "failed":
        batch.failed_requests += n
    elif status == "cancelled":
        batch.cancelled_requests += n


async def _settle(session: AsyncSession, batch: Batch) -> bool:
    """End the batch if no item is left to run: `failed` when every item failed, else
    `completed` (a cancelled batch stays `cancelled`), and queue its webhook if it subscribed
    to that ending. True when it ended just now."""
    remaining = await session.scalar(
        select(func.count())
        .select_from(BatchItem)
        .where(BatchItem.batch_id == batch.id, BatchItem.status.in_(_OPEN))
    )
    if remaining:
        return False
    if batch.status != "cancelled":
        if batch.status in ENDED:
            return False
        failed_all = batch.failed_requests == batch.total_requests
        batch.status = "failed" if failed_all else "completed"
        batch.completed_at = now()
    if webhook_event(batch) is not None:
        await jobs.enqueue(session, WEBHOOK_JOB, {"batch_id": batch.id}, key=batch.id)
    return True


async def attach_chat(session: AsyncSession, item_id: int, chat_id: int) -> None:
    await session.execute(update(BatchItem).where(BatchItem.id == item_id).values(chat_id=chat_id))


async def attach_response(session: AsyncSession, item_id: int, response_id: str) -> bool:
    """Store the item's running response; True when its batch was cancelled meanwhile."""
    await session.execute(
        update(BatchItem).where(BatchItem.id == item_id).values(response_id=response_id)
    )
    return await is_cancelled(session, item_id)


async def is_cancelled(session: AsyncSession, item_id: int) -> bool:
    status = await session.scalar(
        select(Batch.status)
        .join(BatchItem, BatchItem.batch_id == Batch.id)
        .where(BatchItem.id == item_id)
    )
    return status == "cancelled"
