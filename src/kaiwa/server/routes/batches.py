"""Batches: create (everything checked before anything is stored), list, get, results, cancel.

The items run in the background, as jobs any replica may claim (`kaiwa.runtime.batches`). Any
key of the workspace may use these endpoints, chat keys included.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime.batches import batch_object, item_result
from kaiwa.server.batch_requests import CreateBatch, check_batch
from kaiwa.server.deps import (
    CallerDep,
    KeyFirstRoute,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
)
from kaiwa.server.envelope import ok
from kaiwa.server.idempotency import IdempotencyKeyHeader, claim_of, find_earlier
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.store import batches, idempotency
from kaiwa.store.idempotency import KeyTaken
from kaiwa.store.models import Batch

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], route_class=KeyFirstRoute)


async def _batch(session: AsyncSession, workspace_id: str, batch_id: UUID) -> Batch:
    batch = await batches.get_batch(session, workspace_id, str(batch_id))
    if batch is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Batch {batch_id} not found")
    return batch


@router.post("")
async def create_batch(
    body: CreateBatch,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    settings = services.settings
    claim = claim_of(idempotency_key, "create_batch", "", body, settings.idempotency_ttl)
    if claim is not None:
        earlier = await find_earlier(session, caller, claim)
        if earlier is not None and earlier.batch_id is not None:
            return await _same_batch(session, caller.workspace_id, earlier.batch_id)
    checked = await check_batch(session, caller, body, settings)
    batch = await batches.add_batch(
        session,
        workspace_id=caller.workspace_id,
        agent_id=str(body.agent_id),
        items=checked.items,
        webhook_url=checked.webhook_url,
        webhook_events=checked.webhook_events,
        webhook_secret=checked.webhook_secret,
    )
    if claim is not None:
        try:
            await idempotency.claim(session, claim, caller.workspace_id, batch_id=batch.id)
        except KeyTaken:
            await session.rollback()
            earlier = await find_earlier(session, caller, claim)
            if earlier is None or earlier.batch_id is None:
                raise ApiError(
                    ErrorCode.CONFLICT, "A request with this Idempotency-Key is in progress; retry"
                ) from None
            return await _same_batch(session, caller.workspace_id, earlier.batch_id)
    await session.commit()
    await services.jobs.notify(batches.ITEM_JOB)
    return ok(batch_object(batch))


async def _same_batch(session: AsyncSession, workspace_id: str, batch_id: str) -> JSONResponse:
    """The batch a request with the same `Idempotency-Key` created, as it is now."""
    response = ok(batch_object(await _batch(session, workspace_id, UUID(batch_id))))
    await session.commit()
    response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("")
async def list_batches(
    request: Request, caller: CallerDep, session: ReadSessionDep, page: PageDep
) -> JSONResponse:
    """Newest first."""
    rows, total = await batches.list_batches(
        session, caller.workspace_id, limit=page.limit, offset=page.offset
    )
    return ok([batch_object(batch) for batch in rows], pagination(request, page, total))


@router.get("/{batch_id}")
async def get_batch(batch_id: UUID, caller: CallerDep, session: ReadSessionDep) -> JSONResponse:
    return ok(batch_object(await _batch(session, caller.workspace_id, batch_id)))


@router.get("/{batch_id}/results")
async def batch_results(
    request: Request, batch_id: UUID, caller: CallerDep, session: ReadSessionDep, page: PageDep
) -> JSONResponse:
    """Every item, in the order of `requests`, whatever its status."""
    batch = await _batch(session, caller.workspace_id, batch_id)
    rows, total = await batches.list_items(session, batch.id, limit=page.limit, offset=page.offset)
    return ok([item_result(item) for item in rows], pagination(request, page, total))


@router.post("/{batch_id}/cancel")
async def cancel_batch(
    batch_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    """Pending items end `cancelled` now; running ones are stopped and end `cancelled` soon."""
    batch = await batches.lock_batch(session, caller.workspace_id, str(batch_id))
    if batch is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Batch {batch_id} not found")
    if batch.status in batches.ENDED:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"Batch {batch_id} has already ended ({batch.status}): only a pending or processing "
            "batch can be cancelled",
        )
    cancelled = await batches.cancel(session, batch)
    await session.commit()
    for response_id in cancelled.running_responses:
        services.runtime.request_cancel(response_id, "stop")
    if cancelled.settled:
        await services.jobs.notify(batches.WEBHOOK_JOB)
    return ok(batch_object(batch))
