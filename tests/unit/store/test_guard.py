"""The server's hold on its database: exclusive alone, shared by replicas, gone with its holder.

The PostgreSQL half runs on a throwaway database on 127.0.0.1:5432 (user postgres), dropped at
the end; each hold is its own connection, as two servers' would be.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from kaiwa.store.guard import DatabaseInUse, hold

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'kaiwa.db'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    name = f"kaiwa_guard_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_a_second_server_alone_is_refused_with_what_to_do(database_url: str) -> None:
    async with await hold(database_url, shared=False):
        with pytest.raises(DatabaseInUse) as refused:
            await hold(database_url, shared=False)
    message = str(refused.value)
    assert message.startswith("another kaiwa server is already using ")
    assert f"(pid {os.getpid()}" in message  # who holds it
    assert "set KAIWA_REDIS_URL (see docs/deploy.md)" in message


async def test_the_hold_is_free_again_once_released(database_url: str) -> None:
    first = await hold(database_url, shared=False)
    await first.release()
    await first.release()  # once only
    async with await hold(database_url, shared=False):
        pass


async def test_replicas_share_the_hold_but_not_with_a_server_alone(database_url: str) -> None:
    async with await hold(database_url, shared=True), await hold(database_url, shared=True):
        with pytest.raises(DatabaseInUse) as alone:
            await hold(database_url, shared=False)
        assert "set KAIWA_REDIS_URL" in str(alone.value)
    async with await hold(database_url, shared=False):
        with pytest.raises(DatabaseInUse) as replica:
            await hold(database_url, shared=True)
        assert "without KAIWA_REDIS_URL is already using" in str(replica.value)


async def test_databases_in_memory_are_never_held() -> None:
    memory = "sqlite+aiosqlite:///:memory:"
    async with await hold(memory, shared=False), await hold(memory, shared=False):
        pass


_HOLDER = """
import asyncio, sys
from kaiwa.store.guard import hold

async def main():
    await hold(sys.argv[1], shared=False)
    print("held", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_holder_killed_with_sigkill_lets_go(database_url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        database_url,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), timeout=20) == b"held\n"
        with pytest.raises(DatabaseInUse) as refused:
            await hold(database_url, shared=False)
        assert f"(pid {holder.pid}" in str(refused.value)
    finally:
        holder.kill()  # SIGKILL: nothing is released by hand
        await asyncio.wait_for(holder.wait(), timeout=10)
    # PostgreSQL notices the dead connection at once on loopback (the kernel closes it).
    async with await hold(database_url, shared=False):
        pass
