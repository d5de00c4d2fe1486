"""Named dependencies for routes: the database session, the caller's key, the services.

A route that takes the caller (`CallerDep`, `ManagerDep`) is authenticated before its body is
read, when its router uses `KeyFirstRoute`: FastAPI reads and decodes a body before it solves any
dependency, so without it a caller with no key could make the server parse 20 MiB of multipart,
and would be told about a malformed body (400) rather than about the key (401).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kaiwa import log_context
from kaiwa.bus import EventLog
from kaiwa.bus.shared import Bus
from kaiwa.config import Settings
from kaiwa.llm import ModelRegistry
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime import Runtime, TokenSigner
from kaiwa.runtime.jobs import JobWorker
from kaiwa.runtime.tools.toolbox import Toolbox
from kaiwa.server.metrics import Metrics
from kaiwa.server.ratelimit import RateLimiter
from kaiwa.store import workspaces
from kaiwa.store.db import engine_of, now, utc
from kaiwa.store.keys import hash_key
from kaiwa.store.models import ApiKey, Workspace


@dataclass(frozen=True, slots=True)
class Services:
    """What `create_app` builds at start-up, shared by every request."""

    settings: Settings
    runtime: Runtime
    log: EventLog
    bus: Bus
    models: ModelRegistry
    signer: TokenSigner
    limiter: RateLimiter
    toolbox: Toolbox
    metrics: Metrics
    jobs: JobWorker


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated key and its workspace."""

    key_id: str
    workspace_id: str
    scope: str
    whitelist_mode: bool


async def _services(request: Request) -> Services:
    # `async`, like every dependency here: FastAPI runs a plain `def` one on a worker thread.
    services: Services = request.app.state.services
    return services


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


ServicesDep = Annotated[Services, Depends(_services)]
SessionDep = Annotated[AsyncSession, Depends(_session)]


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.read_sessions() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]
"""A session that only reads: on SQLite it never waits for, or holds up, a writer."""


async def _read_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.read_sessions
    return sessions


ReadSessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_read_sessions)]
"""What `ReadSessionDep` comes from, for a route that answers with a stream to open its session
itself: closed when the handler returns, it is not kept (nor is a dependency's clean-up) for
as long as the stream is open."""


async def _caller(request: Request) -> Caller:
    # Left by `KeyFirstRoute`, which authenticated before the body was read.
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        caller = await _authenticate_request(request)
    return caller


async def _authenticate_request(request: Request) -> Caller:
    """The `x-api-key` header's caller, counted against its rate limit; else 401 or 429."""
    services: Services = request.app.state.services
    caller = await authenticate(
        engine_of(request.app.state.read_sessions), request.headers.get("x-api-key")
    )
    log_context.bind(workspace_id=caller.workspace_id)  # for the rest of the request's log lines
    await services.limiter.check_request(caller.key_id)
    return caller


# Every request's statement, built once: columns, not the ORM entity, on a connection of its own
# (no session) — it runs before every authenticated request.
_KEY = (
    select(
        ApiKey.id,
        ApiKey.workspace_id,
        ApiKey.scope,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        Workspace.whitelist_mode,
    )
    .join(Workspace, Workspace.id == ApiKey.workspace_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


async def authenticate(engine: AsyncEngine, x_api_key: str | None) -> Caller:
    """The caller behind an API key, read on a connection of `engine` (a read-only one);
    raises 401/10001 naming what is wrong with the key."""
    if not x_api_key:
        raise ApiError(
            ErrorCode.PERMISSION_DENIED, "Missing API key: send it in the x-api-key header"
        )
    async with engine.connect() as connection:
        row = (await connection.execute(_KEY, {"key_hash": hash_key(x_api_key)})).first()
    if row is None:
        raise ApiError(ErrorCode.PERMISSION_DENIED, "Invalid API key")
    key_id, workspace_id, scope, revoked_at, expires_at, whitelist_mode = row
    if revoked_at is not None:
        raise ApiError(ErrorCode.PERMISSION_DENIED, "This API key has been revoked")
    if expires_at is not None and utc(expires_at) <= now():
        raise ApiError(ErrorCode.PERMISSION_DENIED, "This API key has expired")
    return Caller(
        key_id=key_id, workspace_id=workspace_id, scope=scope, whitelist_mode=whitelist_mode
    )


CallerDep = Annotated[Caller, Depends(_caller)]


async def _manager(caller: CallerDep) -> Caller:
    _check_manager(caller)
    return caller


def _check_manager(caller: Caller) -> None:
    if caller.scope != "management":
        raise ApiError(
            ErrorCode.PERMISSION_DENIED,
            "This API key may only chat; managing agents needs a management key",
            status=403,
        )


ManagerDep = Annotated[Caller, Depends(_manager)]


class KeyFirstRoute(APIRoute):
    """A route that checks the caller's key (and scope) before FastAPI reads the body.

    Routes that take no caller are left as they are. What a route needs is worked out once,
    when its handler is built; per request it costs the key check the route made anyway.

        router = APIRouter(prefix="/api/v1/agents", route_class=KeyFirstRoute)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        calls = _calls(self.dependant)
        if _caller not in calls:
            return handler
        manager = _manager in calls

        async def key_first(request: Request) -> Response:
            caller = await _authenticate_request(request)
            if manager:
                _check_manager(caller)
            request.state.caller = caller
            return await handler(request)

        return key_first


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    """Every dependency a route depends on, however indirectly."""
    found: set[Callable[..., Any]] = set()
    pending = [dependant]
    while pending:
        for sub in pending.pop().dependencies:
            if sub.call is not None:
                found.add(sub.call)
            pending.append(sub)
    return found


async def check_end_user(
    session: AsyncSession, caller: Caller, external_user_id: str | None, *, required: bool
) -> None:
    """In whitelist mode, the end user must be given (when `required`) and on the whitelist."""
    await workspaces.check_end_user(
        session,
        caller.workspace_id,
        external_user_id,
        whitelist_mode=caller.whitelist_mode,
        required=required,
    )
