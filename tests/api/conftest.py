"""Fixtures of the in-process API suite: every test runs once on SQLite and once on PostgreSQL.

SQLite is a fresh file per test. PostgreSQL is one database created for the session on
127.0.0.1:5432 (user `postgres`, trust auth; `KAIWA_TEST_POSTGRES` overrides the admin DSN) and
emptied before each test. When no PostgreSQL server answers, its half of the suite is skipped,
unless `KAIWA_TEST_REQUIRE_POSTGRES=1`, when it fails instead.

The app always starts through its lifespan, so real Alembic migrations build the schema.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from api_support import Api

from kaiwa.config import Settings
from kaiwa.server import create_app
from kaiwa.store.bootstrap import ensure_demo
from kaiwa.store.db import create_engine, migrate, transaction
from kaiwa.store.keys import create_key

T = TypeVar("T")
ADMIN_DSNS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://postgres@127.0.0.1:5432/test",
)

MakeApi = Callable[..., Awaitable[Api]]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a private loop in a worker thread.

    Session set-up happens outside the tests' event loops; a thread keeps its loop from touching
    the loop pytest-asyncio manages in the main thread.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin_connect() -> tuple[asyncpg.Connection, str]:
    """A connection to a maintenance database, and the DSN that reached it."""
    override = os.environ.get("KAIWA_TEST_POSTGRES")
    failures = []
    for dsn in (override,) if override else ADMIN_DSNS:
        try:
            return await asyncpg.connect(dsn, timeout=5), dsn
        except (OSError, asyncpg.PostgresError) as exc:
            failures.append(f"{dsn}: {exc}")
    raise ConnectionError("; ".join(failures))


async def _create_database(name: str) -> str:
    admin, dsn = await _admin_connect()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    server = dsn.removeprefix("postgresql://").rsplit("/", 1)[0]
    url = f"postgresql+asyncpg://{server}/{name}"
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


async def _drop_database(name: str) -> None:
    admin, _ = await _admin_connect()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated database of its own for this test session, dropped at its end."""
    name = f"kaiwa_api_{secrets.token_hex(6)}"
    try:
        url = _run(_create_database(name))
    except ConnectionError as exc:
        if os.environ.get("KAIWA_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield url
    finally:
        _run(_drop_database(name))


async def _empty(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        if names:
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'kaiwa.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _run(_empty(url))
    return url


@pytest.fixture
async def make_api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeApi]:
    """`await make_api(idle_timeout=0.5)`: an app with these settings, started, bootstrapped.

    Defaults are generous (no ping, no timeout within a test) unless a test asks otherwise.
    `app_kwargs` go to `create_app` itself (`tracer_provider=…`).
    """
    # No kaiwa.toml of the working directory leaks into the settings.
    monkeypatch.setenv("KAIWA_CONFIG", str(tmp_path / "absent.toml"))
    async with AsyncExitStack() as stack:

        async def make(*, app_kwargs: dict[str, Any] | None = None, **overrides: Any) -> Api:
            values: dict[str, Any] = {
                "database_url": database_url,
                "data_dir": tmp_path,
                "ping_interval": 30.0,
                "idle_timeout": 30.0,
                # Retries come due between rings: looked for often enough for a test's pace.
                "job_poll_interval": 0.2,
                **overrides,
            }
            app = create_app(Settings(**values), **(app_kwargs or {}))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                )
            )
            async with transaction(app.state.sessions) as session:
                workspace, agent = await ensure_demo(session)
                _, key = await create_key(session, workspace.id, name="test")
                _, chat_key = await create_key(session, workspace.id, name="chat", scope="chat")
            return Api(
                app=app,
                client=client,
                key=key,
                chat_key=chat_key,
                workspace_id=workspace.id,
                demo_agent_id=agent.id,
            )

        yield make


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()
