"""Which database a URL names, said so that a person can check it, and whether it is kaiwa's.

    describe("sqlite+aiosqlite:////srv/data/kaiwa.db")  # '/srv/data/kaiwa.db (SQLite)'
    describe("postgresql+asyncpg://kaiwa:pw@db/kaiwa")   # 'postgresql+asyncpg://kaiwa:***@db/kaiwa'
    sqlite_file(url)          # the SQLite file's absolute path; None for other databases
    await has_schema(engine)  # kaiwa's migrations have run on that database

The management commands use them to say which database they open, and to refuse to create one
where a server would not find it: a relative `KAIWA_DATA_DIR` (the default, `kaiwa-data`) names
another file in every working directory.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["describe", "has_schema", "sqlite_file"]

# Alembic's own table: present once any migration has run.
_VERSION_TABLE = "alembic_version"


def sqlite_file(url: str) -> Path | None:
    """The absolute path of the SQLite file `url` names; None for an in-memory or other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def describe(url: str) -> str:
    """The file of a SQLite database, else the URL with its password masked."""
    path = sqlite_file(url)
    if path is not None:
        return f"{path} (SQLite)"
    parsed = make_url(url)
    if "password" in parsed.query:  # libpq's other way to give it
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


async def has_schema(engine: AsyncEngine) -> bool:
    """Whether kaiwa's migrations have run on `engine`'s database (connecting to it: on SQLite,
    check `sqlite_file(url).exists()` first, or the file is created)."""
    async with engine.connect() as connection:
        found: bool = await connection.run_sync(
            lambda sync: inspect(sync).has_table(_VERSION_TABLE)
        )
        return found
