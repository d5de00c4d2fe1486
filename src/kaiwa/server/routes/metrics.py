"""[ext] `GET /metrics`: Prometheus metrics, in its text format (`KAIWA_METRICS_ENABLED`).

With `KAIWA_METRICS_TOKEN` set, a scrape sends `Authorization: Bearer <token>` (401 without it,
from anywhere); without a token, only a client on loopback is answered (403 for any other).
Behind a reverse proxy on the same host every client looks like loopback: set a token there,
or do not route `/metrics` through the proxy.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.metrics import CONTENT_TYPE, Metrics, Queues
from kaiwa.store import jobs
from kaiwa.store.models import BatchItem, KbDocument

router = APIRouter(tags=["metrics"])

_QUEUE_TIMEOUT = 2.0
"""Seconds the queue depths have to be read; past it the scrape goes on without them."""


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings = request.app.state.services.settings
    _check_access(request, settings.metrics_token)
    collected: Metrics = request.app.state.metrics
    queues = await _queues(request.app.state.read_sessions, collected)
    return Response(collected.exposition(queues), media_type=CONTENT_TYPE)


def _check_access(request: Request, token: str | None) -> None:
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise ApiError(
                ErrorCode.PERMISSION_DENIED,
                "Metrics need `Authorization: Bearer <KAIWA_METRICS_TOKEN>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return
    host = request.client.host if request.client is not None else ""
    if not _loopback(host):
        raise ApiError(
            ErrorCode.PERMISSION_DENIED,
            "Metrics are served to loopback clients only, unless KAIWA_METRICS_TOKEN is set",
            status=403,
        )


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def _queues(sessions: async_sessionmaker[AsyncSession], metrics: Metrics) -> Queues | None:
    """Batch items and documents waiting, cluster-wide; None when the database does not say."""
    try:
        async with asyncio.timeout(_QUEUE_TIMEOUT), sessions() as session:
            rows = await session.execute(
                select(BatchItem.status, func.count())
                .where(BatchItem.status.in_(("pending", "running")))
                .group_by(BatchItem.status)
            )
            items: dict[str, int] = {status: count for status, count in rows}
            processing = KbDocument.status == "processing"
            documents = await session.scalar(
                select(func.count()).select_from(KbDocument).where(processing)
            )
            job_stats = await jobs.stats(session)
    except (SQLAlchemyError, TimeoutError) as exc:
        metrics.database_error(exc)
        return None
    return Queues(
        batch_pending=items.get("pending", 0),
        batch_running=items.get("running", 0),
        documents_processing=documents or 0,
        jobs=job_stats,
    )
