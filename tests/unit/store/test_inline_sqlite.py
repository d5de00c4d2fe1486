"""SQLite on the event loop's thread: in place, never blocking the loop on a lock, checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kaiwa.store import inline_sqlite
from kaiwa.store.db import (
    checkpoint_forever,
    create_engine,
    offloaded,
    session_factory,
    transaction,
)


def _thread_of_sql(engine: AsyncEngine) -> object:
    async def read() -> object:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.create_function("thread_id", 0, threading.get_ident)
            return await connection.scalar(text("SELECT thread_id()"))

    return read()


async def test_statements_run_on_the_loop_thread_unless_offloaded(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'where.db'}"
    inline = create_engine(url)
    off = offloaded(inline)
    try:
        assert await _thread_of_sql(inline) == threading.get_ident()
        assert await _thread_of_sql(off) != threading.get_ident()
    finally:
        await inline.dispose()
        await off.dispose()


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    locked.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


async def _ticks_while(work: asyncio.Future[object]) -> int:
    ticks = 0
    while not work.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("CREATE TABLE t (n INTEGER)"))
    locked = threading.Event()
    holder = asyncio.create_task(asyncio.to_thread(_hold_write_lock, path, 0.5, locked))
    await asyncio.to_thread(locked.wait, 5)

    async def write() -> None:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO t VALUES (2)"))

    try:
        started = time.monotonic()
        writing = asyncio.ensure_future(write())
        ticks = await _ticks_while(writing)
        await writing
        waited = time.monotonic() - started
        await holder
        async with session_factory(engine, read_only=True)() as session:
            stored = list(await session.scalars(text("SELECT n FROM t ORDER BY rowid")))
    finally:
        await engine.dispose()
    assert waited >= 0.3  # it did wait for the other connection's commit...
    assert ticks >= 10  # ...while the loop kept running other tasks
    assert stored == [1, 2]


async def test_a_lock_held_past_the_busy_timeout_fails_the_statement(tmp_path: Path) -> None:
    path = tmp_path / "timeout.db"
    sqlite3.connect(path).execute("CREATE TABLE t (n INTEGER)").connection.close()
    connect = inline_sqlite.connector(str(path), busy_timeout=0.2)
    engine = create_async_engine("sqlite+aiosqlite://", async_creator=connect)
    locked = threading.Event()
    holder = asyncio.create_task(asyncio.to_thread(_hold_write_lock, path, 1.0, locked))
    await asyncio.to_thread(locked.wait, 5)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        await holder
        await engine.dispose()


async def test_the_write_ahead_log_is_checkpointed_on_a_timer(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    url = f"sqlite+aiosqlite:///{path}"
    inline, offloaded = create_engine(url), create_engine(url, offload=True)
    sessions = session_factory(inline)
    try:
        async with transaction(sessions) as session:
            await session.execute(text("CREATE TABLE t (body TEXT)"))
            for _ in range(200):
                await session.execute(text("INSERT INTO t VALUES (:b)"), {"b": "あ" * 1000})
        before = path.stat().st_size  # inline commits leave their pages in the log
        checkpoints = asyncio.create_task(checkpoint_forever(offloaded, interval=0.05))
        await asyncio.sleep(0.5)
        checkpoints.cancel()
        after = path.stat().st_size
    finally:
        await inline.dispose()
        await offloaded.dispose()
    assert before < 100_000
    assert after > 600_000  # 200 rows of 3 KB now in the database file itself


async def test_an_idle_database_is_not_checkpointed_again_until_something_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.db"
    url = f"sqlite+aiosqlite:///{path}"
    inline, offloaded = create_engine(url), create_engine(url, offload=True)
    sessions = session_factory(inline)
    rounds = 0

    def count(*args: object) -> None:
        nonlocal rounds
        rounds += 1

    async def write(rows: int) -> None:
        async with transaction(sessions) as session:
            for _ in range(rows):
                await session.execute(text("INSERT INTO t VALUES (:b)"), {"b": "あ" * 1000})

    event.listen(offloaded.sync_engine.pool, "checkout", count)
    checkpoints = None
    try:
        async with transaction(sessions) as session:
            await session.execute(text("CREATE TABLE t (body TEXT)"))
        await write(100)
        checkpoints = asyncio.create_task(checkpoint_forever(offloaded, interval=0.02))
        await asyncio.sleep(0.5)  # ~25 rounds: the first copies the log, the others see no write
        idle_rounds, copied = rounds, path.stat().st_size
        await write(100)
        await asyncio.sleep(0.3)
    finally:
        if checkpoints is not None:
            checkpoints.cancel()
        await inline.dispose()
        await offloaded.dispose()
    assert 1 <= idle_rounds <= 2
    assert rounds > idle_rounds
    assert path.stat().st_size > copied + 250_000  # the second 100 rows copied in too
