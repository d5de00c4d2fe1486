"""[ext] `/healthz`: the process is up. `/readyz`: the database answers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kaiwa.protocol import ErrorCode
from kaiwa.server.deps import ReadSessionDep
from kaiwa.server.envelope import ok
from kaiwa.server.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return ok({"status": "ok"})


@router.get("/readyz")
async def readyz(session: ReadSessionDep) -> JSONResponse:
    try:
        await session.execute(text("SELECT 1"))
    except Exception:
        return error_response(503, int(ErrorCode.SERVER_ERROR), "The database is not reachable")
    return ok({"status": "ready"})
