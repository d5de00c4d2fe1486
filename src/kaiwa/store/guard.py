"""The server's hold on its database: one kaiwa process per database, unless they share Redis.

Without Redis, a server keeps its event logs in memory and takes every other owner of a running
answer for dead, so a second server on the same database would break the first one's answers.
`kaiwa serve` therefore takes a hold before it touches anything (migrations, the first-run
bootstrap, start-up recovery, the port) and keeps it for its whole life::

    try:
        held = await hold(settings.resolved_database_url, shared=settings.redis_url is not None)
    except DatabaseInUse as exc:
        sys.exit(f"kaiwa: {exc}")
    async with held:
        ...  # migrate, serve

A server alone takes it exclusively; replicas that share Redis take it shared, so they start
beside each other but not beside a server alone (nor that one beside them).

- SQLite: `flock` on `<database>.server.lock`, beside the database file, through a descriptor
  held open for the life of the process: the kernel lets go of it when the process dies,
  `kill -9` included. The holder writes its pid into the file, for the message.
- PostgreSQL: a session-level advisory lock on a connection of its own (autocommit, so no
  transaction stays open), released by the server when that connection ends. Advisory locks
  are per database: other databases of the same server are not concerned.
- In-memory SQLite and other databases: nothing to hold.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

__all__ = ["DatabaseInUse", "Hold", "hold"]

_ADVISORY_KEY = 0x6B61697761_5356  # "kaiwa" "SV"; the migrations' lock is another key
_APPLICATION = "kaiwa serve"
"""The guard connection's `application_name`, then `: pid <pid> on <host>`."""


class DatabaseInUse(Exception):
    """Another kaiwa server holds the database; the message says what to do."""


class Hold:
    """What `hold` took; leaving the `async with` lets go of it (once)."""

    def __init__(
        self,
        *,
        fd: int | None = None,
        connection: AsyncConnection | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self._fd = fd
        self._connection = connection
        self._engine = engine

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # the lock goes with the descriptor
        connection, self._connection = self._connection, None
        engine, self._engine = self._engine, None
        try:
            if connection is not None:
                await connection.close()
        finally:
            if engine is not None:
                await engine.dispose()


async def hold(url: str, *, shared: bool) -> Hold:
    """Hold the database at `url` for this server; raise `DatabaseInUse` when another has it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return Hold()
        return Hold(fd=_lock_file(Path(parsed.database), shared=shared))
    if parsed.get_backend_name() == "postgresql":
        return await _advisory_lock(url, shared=shared)
    return Hold()


def _lock_file(database: Path, *, shared: bool) -> int:
    path = database.with_name(f"{database.name}.server.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not inheritable (the default): a worker process must not keep the lock of its parent.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        where = f" (pid {holder})" if holder.isdigit() else ""
        raise DatabaseInUse(_refusal(str(database), where, shared=shared)) from None
    # Only a server alone names itself; replicas clear a pid left by one that has gone.
    os.ftruncate(fd, 0)
    if not shared:
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


async def _advisory_lock(url: str, *, shared: bool) -> Hold:
    name = f"{_APPLICATION}: pid {os.getpid()} on {socket.gethostname()}"[:63]
    engine = create_async_engine(url, poolclass=NullPool, connect_args=_application_name(url, name))
    try:
        connection = await engine.connect()
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            taken = await connection.scalar(text(f"SELECT {take}({_ADVISORY_KEY})"))
            if not taken:
                holders = await _holders(connection)
                where = f" ({', '.join(holders)})" if holders else ""
                database = make_url(url).render_as_string(hide_password=True)
                raise DatabaseInUse(_refusal(database, where, shared=shared))
        except BaseException:
            await connection.close()
            raise
    except BaseException:
        await engine.dispose()
        raise
    return Hold(connection=connection, engine=engine)


def _application_name(url: str, name: str) -> dict[str, object]:
    """The driver's way to name the connection in `pg_stat_activity`."""
    if make_url(url).get_driver_name() == "asyncpg":
        return {"server_settings": {"application_name": name}}
    return {"application_name": name}


async def _holders(connection: AsyncConnection) -> list[str]:
    """Who holds the lock, as `pg_stat_activity` names them (for the message only)."""
    rows = await connection.execute(
        text(
            "SELECT DISTINCT a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
        ),
        {"high": _ADVISORY_KEY >> 32, "low": _ADVISORY_KEY & 0xFFFFFFFF},
    )
    return sorted(name.removeprefix(f"{_APPLICATION}: ") for (name,) in rows if name)


def _refusal(database: str, holder: str, *, shared: bool) -> str:
    if shared:
        return (
            f"a kaiwa server without KAIWA_REDIS_URL is already using {database}{holder}; "
            "replicas sharing Redis can only start once it is stopped (see docs/deploy.md)"
        )
    return (
        f"another kaiwa server is already using {database}{holder}; to run several, "
        "set KAIWA_REDIS_URL (see docs/deploy.md)"
    )
