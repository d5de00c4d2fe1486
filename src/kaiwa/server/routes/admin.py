"""[ext] The admin API: workspaces and their keys, for an operator serving several teams.

    GET    /api/v1/admin/workspaces                       list (`limit`, `offset`)
    POST   /api/v1/admin/workspaces                       {"name"}: a new, empty workspace
    GET    /api/v1/admin/workspaces/{id}                  one, with its row counts (`contents`)
    PATCH  /api/v1/admin/workspaces/{id}                  {"name"}: rename it
    DELETE /api/v1/admin/workspaces/{id}                  it and all it holds, files' bytes too
    GET    /api/v1/admin/workspaces/{id}/keys             its keys (prefixes, never the keys)
    POST   /api/v1/admin/workspaces/{id}/keys             {"name", "scope", "expires_at"}: a key,
                                                          its plaintext `api_key` shown only here
    DELETE /api/v1/admin/workspaces/{id}/keys/{key_id}    revoke it (it stays listed, revoked)

The router is mounted only when `admin_key` is set: otherwise every path here is unknown (404).
A caller sends the admin key as `Authorization: Bearer <key>` or `x-admin-key: <key>`; it is
compared in constant time, before the body is read. A workspace's key is never an admin key.
Deleting a workspace first stops its answers in progress, here or on another replica, so that
none goes on calling a model for a workspace that is gone; the CLI's `kaiwa workspaces delete`
deletes the same way (`kaiwa.runtime.tenants`) but cannot stop them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.files import BlobStore
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime import tenants as deletion
from kaiwa.runtime.deletion import stop_answers
from kaiwa.server.deps import ReadSessionDep, Services, ServicesDep, SessionDep
from kaiwa.server.envelope import ok
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.routes.params import check_name
from kaiwa.server.schemas import ColumnText
from kaiwa.store import keys, tenants, workspaces
from kaiwa.store.keys import Scope
from kaiwa.store.models import ApiKey, Workspace

logger = logging.getLogger(__name__)


def _check_admin(request: Request) -> None:
    """Raises 404 when the admin API is off, 401 without the admin key."""
    services: Services = request.app.state.services
    expected = services.settings.admin_key
    if not expected:
        raise ApiError(ErrorCode.NOT_FOUND, "Not found: no such endpoint")
    given = _admin_key(request)
    if given is None:
        raise ApiError(
            ErrorCode.PERMISSION_DENIED,
            "Missing admin key: send it as `Authorization: Bearer <key>` or in x-admin-key",
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(ErrorCode.PERMISSION_DENIED, "Invalid admin key")


def _admin_key(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-admin-key") or None


class AdminFirstRoute(APIRoute):
    """Checks the admin key before FastAPI reads the body (see `deps.KeyFirstRoute`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def admin_first(request: Request) -> Response:
            _check_admin(request)
            return await handler(request)

        return admin_first


router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=AdminFirstRoute)


class _Body(BaseModel):
    # A typo in an admin's request is an error, not a field silently ignored.
    model_config = ConfigDict(extra="forbid")


class WorkspaceName(_Body):
    name: ColumnText


class CreateKey(_Body):
    name: ColumnText = "admin"
    scope: Scope = "management"
    expires_at: datetime | None = None
    """ISO 8601; without a time zone, UTC. A key past it is refused (401)."""


async def _workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    workspace = await workspaces.get_workspace(session, workspace_id)
    if workspace is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Workspace {workspace_id} not found")
    return workspace


@router.get("/workspaces")
async def list_workspaces(request: Request, session: ReadSessionDep, page: PageDep) -> JSONResponse:
    rows, total = await tenants.workspaces_page(session, limit=page.limit, offset=page.offset)
    listed = [tenants.workspace_out(workspace) for workspace in rows]
    return ok(listed, pagination(request, page, total))


@router.post("/workspaces")
async def create_workspace(
    body: WorkspaceName, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    check_name(body.name, services.settings.max_name_chars)
    workspace = await tenants.create_workspace(session, body.name)
    await session.commit()
    logger.info("workspace %s created", workspace.id)
    return ok(tenants.workspace_out(workspace))


@router.get("/workspaces/{workspace_id}")
async def get_workspace(workspace_id: str, session: ReadSessionDep) -> JSONResponse:
    workspace = await _workspace(session, workspace_id)
    contents = await tenants.contents(session, workspace_id)
    return ok({**tenants.workspace_out(workspace), "contents": contents})


@router.patch("/workspaces/{workspace_id}")
async def rename_workspace(
    workspace_id: str, body: WorkspaceName, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    check_name(body.name, services.settings.max_name_chars)
    workspace = await tenants.rename_workspace(session, workspace_id, body.name)
    if workspace is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Workspace {workspace_id} not found")
    await session.commit()
    logger.info("workspace %s renamed", workspace_id)
    return ok(tenants.workspace_out(workspace))


@router.delete("/workspaces/{workspace_id}")
async def delete_workspace(
    workspace_id: str, request: Request, services: ServicesDep
) -> JSONResponse:
    async with request.app.state.read_sessions() as session:
        await _workspace(session, workspace_id)
        running = await tenants.running_responses(session, workspace_id)
    await stop_answers(services.runtime, running)
    blobs: BlobStore = request.app.state.files
    deleted = await deletion.delete_workspace(request.app.state.sessions, blobs, workspace_id)
    if deleted is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Workspace {workspace_id} not found")
    return ok({"id": workspace_id, "deleted": deleted.rows})


@router.get("/workspaces/{workspace_id}/keys")
async def list_keys(workspace_id: str, session: ReadSessionDep) -> JSONResponse:
    await _workspace(session, workspace_id)
    return ok([tenants.key_out(key) for key in await keys.list_keys(session, workspace_id)])


@router.post("/workspaces/{workspace_id}/keys")
async def create_key(
    workspace_id: str, body: CreateKey, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    check_name(body.name, services.settings.max_name_chars)
    await _workspace(session, workspace_id)
    expires_at = body.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    key, plaintext = await keys.create_key(
        session, workspace_id, name=body.name, scope=body.scope, expires_at=expires_at
    )
    await session.commit()
    logger.info("key %s (%s) created for workspace %s", key.prefix, key.scope, workspace_id)
    return ok({**tenants.key_out(key), "api_key": plaintext})


@router.delete("/workspaces/{workspace_id}/keys/{key_id}")
async def revoke_key(workspace_id: str, key_id: str, session: SessionDep) -> JSONResponse:
    await _workspace(session, workspace_id)
    key: ApiKey | None = await keys.revoke_key(session, key_id, workspace_id)
    if key is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Key {key_id} not found in workspace {workspace_id}")
    await session.commit()
    logger.info("key %s revoked in workspace %s", key.prefix, workspace_id)
    return ok(tenants.key_out(key))
