"""`describe` names the database a URL points at, password masked; `has_schema` finds kaiwa's."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaiwa.store.db import create_engine, migrate
from kaiwa.store.location import describe, has_schema, sqlite_file


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite+aiosqlite:////srv/data/kaiwa.db", "/srv/data/kaiwa.db (SQLite)"),
        (
            "postgresql+asyncpg://kaiwa:s3cret@db.internal:5432/kaiwa",
            "postgresql+asyncpg://kaiwa:***@db.internal:5432/kaiwa",
        ),
        (
            "postgresql+asyncpg://kaiwa@db/kaiwa?password=s3cret&ssl=require",
            "postgresql+asyncpg://kaiwa@db/kaiwa?password=***&ssl=require",
        ),
        ("postgresql+asyncpg://db/kaiwa", "postgresql+asyncpg://db/kaiwa"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_describe_masks_passwords_and_names_sqlite_files(url: str, shown: str) -> None:
    assert describe(url) == shown


def test_a_relative_sqlite_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_file("sqlite+aiosqlite:///data/kaiwa.db") == tmp_path.resolve() / "data/kaiwa.db"
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://db/kaiwa") is None


async def test_has_schema_is_true_once_migrated(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kaiwa.db'}")
    try:
        assert not await has_schema(engine)
        await migrate(engine)
        assert await has_schema(engine)
    finally:
        await engine.dispose()
