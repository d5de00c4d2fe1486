"""SQLite writers through `transaction` wait in this process, in turn, not in the busy handler."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from kaiwa.store.db import create_engine, session_factory, transaction


async def test_concurrent_write_transactions_run_one_at_a_time_in_arrival_order(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}")
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("CREATE TABLE log (n INTEGER)"))
    inside = 0
    most_inside = 0
    order: list[int] = []

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with transaction(sessions) as session:
            inside += 1
            most_inside = max(most_inside, inside)
            order.append(n)
            await session.execute(text("INSERT INTO log VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.005)  # hold the write lock across an await
            inside -= 1

    try:
        await asyncio.gather(*(write(n) for n in range(20)))
        async with session_factory(engine, read_only=True)() as session:
            stored = list(await session.scalars(text("SELECT n FROM log ORDER BY rowid")))
    finally:
        await engine.dispose()
    assert most_inside == 1
    assert order == list(range(20))
    assert stored == order


async def test_read_only_sessions_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'read.db'}")
    sessions = session_factory(engine)
    reads = session_factory(engine, read_only=True)
    async with transaction(sessions) as session:
        await session.execute(text("CREATE TABLE t (n INTEGER)"))
    try:
        async with transaction(sessions) as writer:
            await writer.execute(text("INSERT INTO t VALUES (1)"))
            async with asyncio.timeout(5), reads() as reader:
                # WAL: the reader sees the last commit, without waiting for this writer.
                assert list(await reader.scalars(text("SELECT n FROM t"))) == []
    finally:
        await engine.dispose()
