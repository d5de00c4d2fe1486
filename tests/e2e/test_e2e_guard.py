"""One `kaiwa serve` per database without Redis: a second one refuses before touching anything.

Each test runs a real first server (SQLite, then PostgreSQL) in the middle of a slow answer,
starts a second `kaiwa serve` on the same database and another port, and checks that the second
exits non-zero naming `KAIWA_REDIS_URL` while the first one's answer ends untouched. Once the
first is killed with SIGKILL (nothing released by hand), a new server starts on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.e2e.conftest import fresh_postgres_database

from kaiwa.store.guard import hold

HOST = "127.0.0.1"
SLOW = {"answer": [{"text": "still"}, {"delay": 5}, {"text": " here"}], "title": "slow"}


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Nothing for SQLite (the server's own data directory), else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    with fresh_postgres_database() as url:
        yield {"KAIWA_DATABASE_URL": url}


def _second_serve(server: Any) -> Any:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    return server.cli("serve", "--host", HOST, "--port", str(port), check=False)


def _final_text(received: bytes) -> str:
    for block in received.decode().split("\n\n"):
        if block.startswith("id: ") and "\nevent: response.output_text.completed\n" in block:
            text: str = json.loads(block.rsplit("\ndata: ", 1)[1])["final_text"]
            return text
    raise AssertionError(f"no completed event in {received[-500:]!r}")


def test_a_second_server_on_the_same_database_refuses_and_the_first_keeps_answering(
    kaiwa_launcher: Any, database_env: dict[str, str]
) -> None:
    first = kaiwa_launcher.start("guard", env=database_env)
    try:
        agent = first.create_agent(
            name="slow", llm_model="scripted/slow", meta={"model_settings": {"script": SLOW}}
        )
        chat = first.create_chat("guard", agent_id=agent["id"])
        body = {"message": "take your time", "agent_id": agent["id"], "stream": True}
        received = b""
        with first.client.stream(
            "POST",
            f"/api/v1/chats/{chat['id']}/messages",
            json=body,
            headers={"x-api-key": first.api_key},
        ) as response:
            pieces = response.iter_raw()
            for piece in pieces:
                received += piece
                if b"response.output_text.delta" in received:
                    break
            second = _second_serve(first)
            for piece in pieces:
                received += piece
        assert second.returncode == 1, second.stdout + second.stderr
        assert "kaiwa: another kaiwa server is already using" in second.stderr
        assert "set KAIWA_REDIS_URL (see docs/deploy.md)" in second.stderr
        assert "Uvicorn running" not in second.stderr + second.stdout
        assert _final_text(received) == "still here"
        assert received.endswith(b"data: [DONE]\n\n")
        assert first.messages(chat["id"])[-1]["content"] == "still here"

        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        first.start()  # a new server on the same database: healthy
        assert first.messages(chat["id"])[-1]["content"] == "still here"
    finally:
        first.stop()


def test_the_refusal_comes_before_migrations_and_the_first_run_bootstrap(
    kaiwa_launcher: Any, database_env: dict[str, str]
) -> None:
    server = kaiwa_launcher.prepare("guard-fresh", env=database_env)
    url = database_env.get("KAIWA_DATABASE_URL")
    database = server.root / "data" / "kaiwa.db"

    async def refused() -> Any:
        # This test plays the first server: it holds the fresh database, and nothing else.
        async with await hold(url or f"sqlite+aiosqlite:///{database}", shared=False):
            return await asyncio.to_thread(_second_serve, server)

    result = asyncio.run(refused())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "set KAIWA_REDIS_URL" in result.stderr
    assert "first run" not in result.stdout
    assert _tables(url, database) == []


def _tables(url: str | None, database: Path) -> list[str]:
    if url is None:
        if not database.exists():
            return []
        with contextlib.closing(sqlite3.connect(database)) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return [name for (name,) in rows]

    async def listed() -> list[str]:
        connection = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        finally:
            await connection.close()
        return [row["tablename"] for row in rows]

    return asyncio.run(listed())
