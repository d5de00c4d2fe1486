"""SQLite run on the event loop's own thread, for SQLAlchemy's asyncio engine.

aiosqlite runs every call — cursor, execute, fetch, close, commit — on a worker thread and hands
the result back to the loop: a turn's dozen statements cost ~60 thread hops, more CPU than the
SQL itself. An embedded SQLite in WAL mode answers the short statements of the chat path in tens
of microseconds, so this driver runs them in place: its coroutines finish without suspending,
except when the database is locked by another connection. Then, instead of SQLite's busy
handler (which would sleep inside the loop), a statement is retried after an `asyncio.sleep`
with growing pauses, up to `busy_timeout` seconds; a statement refused with SQLITE_BUSY did
nothing, so retrying it is safe.

Queries that may run long (knowledge search, indexing) belong on an aiosqlite engine instead:
`kaiwa.store.db.offloaded(engine)`. Inline connections never checkpoint the WAL
on commit (`wal_autocheckpoint=0`), since a checkpoint writes and syncs the database file: the
offloaded engine's connections do that, and `kaiwa.store.db.checkpoint_forever` runs one on a timer.

Used through `sqlite+aiosqlite` with `async_creator`: the dialect's adapter only awaits what it
is given, and sees the same interface as aiosqlite's connection and cursor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


def _locked(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineConnection:
    """The part of `aiosqlite.Connection` SQLAlchemy's adapter uses, run in place."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout: float) -> None:
        self._connection: sqlite3.Connection | None = connection
        """None once closed (the adapter checks it before a commit or rollback)."""
        self._busy_timeout = busy_timeout

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")  # what aiosqlite raises
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        cursor = self.cursor()
        await cursor.execute(sql, parameters)
        return cursor

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` now; while the database is locked, again after a pause."""
        try:
            return call(*args)
        except sqlite3.OperationalError as error:
            if not _locked(error):
                raise
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        while True:
            await asyncio.sleep(pause)
            try:
                return call(*args)
            except sqlite3.OperationalError as error:
                if not _locked(error) or time.monotonic() >= deadline:
                    raise
            pause = min(pause * 2, _LONGEST_PAUSE)


class InlineCursor:
    """The part of `aiosqlite.Cursor` SQLAlchemy's adapter uses, run in place."""

    def __init__(self, connection: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        await self._connection.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)  # an iterator would be spent by a first, locked attempt
        await self._connection.run(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


def connector(database: str, *, busy_timeout: float) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine`: inline connections to `database`."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            database,
            isolation_level=None,  # SQLAlchemy's `begin` event starts transactions
            check_same_thread=False,  # the pool may close it from the garbage collector
            uri=database.startswith("file:"),
        )
        # Locks are waited for in `InlineConnection.run`, never in SQLite's busy handler.
        connection.execute("PRAGMA busy_timeout=0")
        connection.execute("PRAGMA wal_autocheckpoint=0")
        return InlineConnection(connection, busy_timeout)

    return connect
