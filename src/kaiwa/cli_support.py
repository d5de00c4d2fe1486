"""What the `kaiwa` commands share: their settings, the database they open, command groups.

    sub = group(commands.add_parser("keys", help="manage API keys"))   # `kaiwa keys` alone: help
    sub.add_parser("list").set_defaults(run=sync(keys_list))           # one transaction
    sub.add_parser("delete").set_defaults(run=with_database(delete))   # its own sessions

Management commands work on the database directly, with the same settings as the server
(`KAIWA_*` environment variables over `kaiwa.toml`). Each says on stderr which database it opens,
and only `serve` and `init` create one: run elsewhere, with the default relative data directory,
`keys create` would otherwise make a new database and print a key the server never sees.

The base install (`pip install kaiwa`) has the client but not the server: the server's modules
are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from kaiwa.config import Settings

__all__ = [
    "Command",
    "Database",
    "DatabaseCommand",
    "NoDatabase",
    "group",
    "load_settings",
    "open_database",
    "sync",
    "with_database",
]

_SERVER_MODULES = ("fastapi", "sqlalchemy", "pydantic_settings", "uvicorn")


def group(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Subcommands of `parser`; `kaiwa keys` alone prints the help of `keys`, not the top one."""

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=usage)
    return parser.add_subparsers(title="commands")


def load_settings(**overrides: Any) -> Settings:
    """The settings; on a bad value, exit 2 with a message that names it."""
    missing = [name for name in _SERVER_MODULES if find_spec(name) is None]
    if missing:
        print(
            "kaiwa: this command runs the server, which is not installed "
            f"(missing {', '.join(missing)}): pip install 'kaiwa[server]'",
            file=sys.stderr,
        )
        raise SystemExit(2)
    from kaiwa.config import Settings

    # A typo in kaiwa.toml or a KAIWA_* variable is the user's to fix; a traceback would bury it.
    try:
        return Settings(**overrides)
    except (ValidationError, tomllib.TOMLDecodeError) as exc:
        config = os.environ.get("KAIWA_CONFIG", "kaiwa.toml")
        print(f"kaiwa: invalid settings (KAIWA_* variables or {config}):\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


class NoDatabase(Exception):
    """There is no kaiwa database where the settings point, and the command may not create one."""


@dataclass(frozen=True, slots=True)
class Database:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    """Sessions that only read: on SQLite they hold no write lock (e.g. while a user decides)."""


@asynccontextmanager
async def open_database(settings: Settings, *, create: bool = False) -> AsyncIterator[Database]:
    """The settings' database, migrated; unless `create`, it must be one kaiwa has set up
    (else `NoDatabase`). Says on stderr which database it is."""
    from kaiwa.store.db import create_engine, migrate, session_factory
    from kaiwa.store.location import describe, has_schema, sqlite_file

    url = settings.resolved_database_url
    print(f"kaiwa: database {describe(url)}", file=sys.stderr, flush=True)
    file = sqlite_file(url)
    if not create and file is not None and not file.exists():
        raise NoDatabase(f"no kaiwa database at {file}")
    engine = create_engine(url)  # on SQLite, this creates the file's folder
    try:
        if not create and not await has_schema(engine):
            raise NoDatabase("that database has no kaiwa tables")
        await migrate(engine)
        yield Database(
            settings=settings,
            sessions=session_factory(engine),
            read_sessions=session_factory(engine, read_only=True),
        )
    finally:
        await engine.dispose()


Command = Callable[[argparse.Namespace, "AsyncSession"], Awaitable[int]]
"""A command that runs in one transaction."""
DatabaseCommand = Callable[[argparse.Namespace, Database], Awaitable[int]]
"""A command that opens its own sessions, e.g. around a question to the user."""


def with_database(
    command: DatabaseCommand, *, create: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Run `command` against the settings' database (see `open_database`)."""

    def run(args: argparse.Namespace) -> int:
        settings = load_settings()

        async def main() -> int:
            async with open_database(settings, create=create) as database:
                return await command(args, database)

        try:
            return asyncio.run(main())
        except NoDatabase as exc:
            return _no_database(settings, str(exc))

    return run


def sync(command: Command, *, create: bool = False) -> Callable[[argparse.Namespace], int]:
    """Run `command` in one transaction against a migrated database; unless `create`, one that
    kaiwa has already set up."""

    async def in_transaction(args: argparse.Namespace, database: Database) -> int:
        from kaiwa.store.db import transaction

        async with transaction(database.sessions) as session:
            return await command(args, session)

    return with_database(in_transaction, create=create)


def _no_database(settings: Settings, problem: str) -> int:
    where = ""
    if not settings.database_url and not settings.data_dir.is_absolute():
        where = f" (KAIWA_DATA_DIR {settings.data_dir} is relative to this folder, {Path.cwd()})"
    print(
        f"kaiwa: {problem}{where}.\n"
        "Run the command where the server runs, or set KAIWA_DATA_DIR or KAIWA_DATABASE_URL to "
        "the server's database; `kaiwa init` creates a new one.",
        file=sys.stderr,
    )
    return 1
