"""The database: engine, sessions and migrations, for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and a transaction that may write starts with
`BEGIN IMMEDIATE`: a deferred transaction that later writes cannot wait for the lock and fails at
once with "database is locked", so taking the write lock up front is what makes the busy timeout
work. Read-only sessions (`session_factory(engine, read_only=True)`, e.g. every key lookup) begin
deferred instead: in WAL mode readers neither wait for the writer nor hold it up.

On SQLite, `transaction` also queues its writers in this process, first come first served, before
they ask for the lock: SQLite's busy handler polls with sleeps growing to 100 ms, so under a burst
of new turns writers slept far longer than any of them held the lock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Select, event, func, select, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from kaiwa.store import inline_sqlite

T = TypeVar("T")
logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "kaiwa_read_only"
_BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for SQLite's write lock before failing with "database is locked"."""
_MIGRATION_LOCK = 0x6B61697761  # "kaiwa": one replica migrates at a time on PostgreSQL

Db = AsyncSession | AsyncConnection
"""What a function that only runs Core statements takes: a session, or on a hot path its
connection (`await session.connection()`, the same transaction), which skips the ORM's work per
statement — about half of a short statement's cost. A connection does not flush the session's
pending changes first: pass one only where the statement cannot read them."""


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with `Z`, as the API writes every timestamp."""
    if value is None:
        return None
    return utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


def create_engine(
    url: str, *, offload: bool = False, pool_size: int = 10, max_overflow: int = 20
) -> AsyncEngine:
    """The engine for `url`. On SQLite, statements run on the event loop's thread (they are
    short: see `kaiwa.store.inline_sqlite`) unless `offload`, for queries that may run long
    (knowledge search, indexing), which then run on aiosqlite's worker threads. `pool_size`
    and `max_overflow` size the pool of other databases."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, offload=offload)
    return create_async_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow
    )


def offloaded(engine: AsyncEngine) -> AsyncEngine:
    """The engine for queries that may run long: on SQLite a second one whose statements run
    on aiosqlite's threads, off the event loop; on other databases `engine` itself."""
    if engine.dialect.name != "sqlite":
        return engine
    return create_engine(engine.url.render_as_string(hide_password=False), offload=True)


def _sqlite_engine(url: str, *, offload: bool) -> AsyncEngine:
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # Writers queue on SQLite's one write lock, each holding a pooled connection meanwhile: the
    # pool must outlast a burst of new turns instead of failing them with a pool timeout.
    pool: dict[str, Any] = {"pool_size": 20, "max_overflow": 80, "pool_timeout": 60}
    if offload:
        engine = create_async_engine(url, connect_args={"timeout": _BUSY_TIMEOUT}, **pool)
    else:
        connect = inline_sqlite.connector(database, busy_timeout=_BUSY_TIMEOUT)
        engine = create_async_engine(url, async_creator=connect, **pool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see `_on_begin`).
        if dbapi_connection.isolation_level is not None:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if offload:
            cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def session_factory(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`; `read_only` ones must not write (on SQLite they begin deferred)."""
    if read_only:
        engine = engine.execution_options(**{_READ_ONLY: True})
    return async_sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine `sessions` are bound to (with its execution options, e.g. read-only): for a
    statement or two that need no session."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One short unit of work: commits on success, rolls back on error.

    Never hold one open across a model or tool await.
    """
    gate = _write_gate(sessions)
    if gate is None:
        async with sessions() as session, session.begin():
            yield session
        return
    async with gate, sessions() as session, session.begin():
        yield session


# Per event loop, per SQLite database: the writers of `transaction` wait here in turn.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _write_gate(sessions: async_sessionmaker[AsyncSession]) -> asyncio.Lock | None:
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return None
    if bind.get_execution_options().get(_READ_ONLY, False):
        return None
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(str(bind.url), asyncio.Lock())


async def checkpoint_forever(engine: AsyncEngine, interval: float = 1.0) -> None:
    """SQLite: copy the write-ahead log into the database every `interval` seconds, when
    anything was written since the last time.

    Inline connections never do it on commit (it writes and syncs the database file, which
    would stall the event loop); `engine` should be an offloaded one (`create_engine(url,
    offload=True)`), whose worker thread does the writing. PASSIVE: it never waits for, or
    holds up, readers and writers. Does nothing on other databases.
    """
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    wal = Path(f"{database}-wal") if database and database != ":memory:" else None
    copied: tuple[int, int] | None = None
    skipped = 0
    while True:
        await asyncio.sleep(interval)
        # An idle server skips it: nothing was written since a checkpoint that copied it all
        # (the log's size and time of change as they were then). Once a minute it goes ahead
        # anyway, for a write within the same tick of the file system's clock.
        seen = _stamp(wal)
        if seen is not None and seen == copied and skipped < 60:
            skipped += 1
            continue
        skipped = 0
        try:
            async with engine.connect() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                if raw is not None:
                    cursor = await raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    busy, frames, done = await cursor.fetchone()
                    copied = seen if not busy and frames == done else None
        except Exception as exc:  # the next round tries again
            logger.warning("WAL checkpoint failed: %s", exc)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """A file's size and time of last change; None without one."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


async def migrate(engine: AsyncEngine) -> None:
    """Create or upgrade the schema to the newest migration."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def paginate(
    session: AsyncSession, query: Select[T], *, limit: int, offset: int
) -> tuple[list[T], int]:
    """One page of `query` and the total count of rows it matches."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = await session.scalars(query.limit(limit).offset(offset))
    return list(rows), int(total or 0)
