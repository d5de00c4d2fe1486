"""[ext] `/healthz`: the process is up. `/readyz`: it can take requests — the database (and
Redis, when configured) answer, and it is not shutting down. A load balancer stops sending new
requests to a replica whose readiness fails, before it exits."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kaiwa.protocol import ErrorCode
from kaiwa.server.deps import ReadSessionDep, ServicesDep
from kaiwa.server.envelope import ok
from kaiwa.server.errors import error_response

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT = 2.0
"""Seconds each dependency has to answer."""


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return ok({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request, session: ReadSessionDep, services: ServicesDep) -> JSONResponse:
    if services.runtime.draining or getattr(request.app.state, "leaving", False):
        return error_response(503, int(ErrorCode.SERVER_ERROR), "The server is shutting down")
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await session.execute(text("SELECT 1"))
    except Exception:
        return error_response(503, int(ErrorCode.SERVER_ERROR), "The database is not reachable")
    redis = services.bus.redis
    if redis is not None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                await redis.ping()
        except Exception:
            return error_response(503, int(ErrorCode.SERVER_ERROR), "Redis is not reachable")
    return ok({"status": "ready"})
