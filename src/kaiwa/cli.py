"""The `kaiwa` command: serve | init | keys | agents | whitelist | chat.

`chat` is a client of a running server (`kaiwa.chat`). Management commands work on the
database directly, with the same settings as the server
(`KAIWA_*` environment variables over `kaiwa.toml`). Each says on stderr which database it opens,
and only `serve` and `init` create one: run elsewhere, with the default relative data directory,
`keys create` would otherwise make a new database and print a key the server never sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kaiwa.config import Settings

# The base install (`pip install kaiwa`) has the client but not the server: the server's modules
# are imported inside the commands that need them.
_SERVER_MODULES = ("fastapi", "sqlalchemy", "pydantic_settings", "uvicorn")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaiwa", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from settings: 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes on the port (default from settings: 1); more than one needs "
        "KAIWA_REDIS_URL and PostgreSQL",
    )
    serve.set_defaults(run=_serve)

    init = commands.add_parser(
        "init", help="ensure a workspace and a demo agent exist, and create a management key"
    )
    init.add_argument("--json", action="store_true", help="print one JSON line for scripts")
    init.set_defaults(run=_sync(_init, create=True))

    keys = _group(commands.add_parser("keys", help="manage API keys"))
    create = keys.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", default="cli")
    create.add_argument("--scope", choices=["management", "chat"], default="management")
    create.add_argument("--expires", help="expiry, ISO date or datetime (UTC), e.g. 2027-01-31")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=_sync(_keys_create))
    listing = keys.add_parser("list", help="list keys (prefixes only)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_sync(_keys_list))
    revoke = keys.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", help="the key's id or its prefix as shown by 'keys list'")
    revoke.set_defaults(run=_sync(_keys_revoke))

    agents = _group(commands.add_parser("agents", help="inspect agents"))
    agents_list = agents.add_parser("list", help="list agents of the workspace")
    agents_list.add_argument("--json", action="store_true")
    agents_list.set_defaults(run=_sync(_agents_list))

    whitelist = _group(
        commands.add_parser("whitelist", help="whitelist mode: only listed external users may chat")
    )
    whitelist.add_parser("on", help="turn whitelist mode on").set_defaults(
        run=_sync(_whitelist_mode(True))
    )
    whitelist.add_parser("off", help="turn whitelist mode off").set_defaults(
        run=_sync(_whitelist_mode(False))
    )
    for name, help_text in (("add", "allow external users"), ("remove", "disallow external users")):
        sub = whitelist.add_parser(name, help=help_text)
        sub.add_argument("external_user_ids", nargs="+")
        sub.set_defaults(run=_sync(_whitelist_edit(name == "add")))
    whitelist.add_parser("list", help="show the mode and the allowed users").set_defaults(
        run=_sync(_whitelist_list)
    )

    chat = commands.add_parser("chat", help="chat with an agent of a running server")
    chat.add_argument("--url", help="the server (default: KAIWA_BASE_URL, http://127.0.0.1:8000)")
    chat.add_argument("--api-key", help="an API key (default: KAIWA_API_KEY)")
    chat.add_argument("--agent", help="the agent's id (default: KAIWA_AGENT_ID, or ask)")
    chat.add_argument("--chat", type=int, help="continue this chat instead of starting one")
    chat.add_argument("--once", metavar="QUESTION", help="ask one question, print the answer")
    chat.add_argument("--json", action="store_true", help="print the events as JSON lines")
    chat.add_argument(
        "--attach",
        metavar="PATH",
        action="append",
        default=[],
        help="upload a file and attach it to the first question (repeatable)",
    )
    chat.set_defaults(run=_chat)
    return parser


def _group(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Subcommands of `parser`; `kaiwa keys` alone prints the help of `keys`, not the top one."""

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=usage)
    return parser.add_subparsers(title="commands")


def _settings(**overrides: Any) -> Settings:
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


Command = Callable[[argparse.Namespace, "AsyncSession"], Awaitable[int]]


def _sync(command: Command, *, create: bool = False) -> Callable[[argparse.Namespace], int]:
    """Run `command` in one transaction against a migrated database; unless `create`, one that
    kaiwa has already set up."""

    def run(args: argparse.Namespace) -> int:
        return asyncio.run(_in_transaction(command, args, create=create))

    return run


async def _in_transaction(command: Command, args: argparse.Namespace, *, create: bool) -> int:
    settings = _settings()
    from kaiwa.store.db import create_engine, migrate, session_factory, transaction
    from kaiwa.store.location import describe, has_schema, sqlite_file

    url = settings.resolved_database_url
    print(f"kaiwa: database {describe(url)}", file=sys.stderr, flush=True)
    file = sqlite_file(url)
    if not create and file is not None and not file.exists():
        return _no_database(settings, f"no kaiwa database at {file}")
    engine = create_engine(url)  # on SQLite, this creates the file's folder
    try:
        if not create and not await has_schema(engine):
            return _no_database(settings, "that database has no kaiwa tables")
        await migrate(engine)
        async with transaction(session_factory(engine)) as session:
            return await command(args, session)
    finally:
        await engine.dispose()


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


def _chat(args: argparse.Namespace) -> int:
    # A client of the server: it must run on the base install, so nothing of the server here.
    from kaiwa.chat import Options, run

    return run(
        Options(
            base_url=args.url,
            api_key=args.api_key,
            agent_id=args.agent or os.environ.get("KAIWA_AGENT_ID") or None,
            chat_id=args.chat,
            once=args.once,
            json=args.json,
            attach=tuple(args.attach),
        )
    )


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.workers is not None:
        overrides["workers"] = args.workers
    settings = _settings(**overrides)
    if settings.workers > 1:
        refusals = _workers_refusals(settings)
        if refusals:
            print("\n".join(f"kaiwa: {refusal}" for refusal in refusals), file=sys.stderr)
            return 2
    from kaiwa.server.serve import run

    # The banner's example must name the address the server really binds, which may come from
    # KAIWA_HOST / KAIWA_PORT or kaiwa.toml rather than from the flags.
    args.base_url = f"http://{settings.host}:{settings.port}"
    return run(_serve_held(args, settings))


def _workers_refusals(settings: Settings) -> list[str]:
    """Why `settings.workers` processes cannot share this deployment, if they cannot."""
    refusals = []
    workers = f"--workers {settings.workers}"
    if not settings.redis_url:
        refusals.append(
            f"{workers} needs KAIWA_REDIS_URL: the workers share their event logs, "
            "signals and rate limits through Redis (see docs/deploy.md)"
        )
    if settings.resolved_database_url.startswith("sqlite"):
        refusals.append(
            f"{workers} needs PostgreSQL (KAIWA_DATABASE_URL): several processes writing one "
            "SQLite file is not supported"
        )
    return refusals


async def _serve_held(args: argparse.Namespace, settings: Settings) -> int:
    """Hold the database (`kaiwa.store.guard`), bootstrap, serve; all in one event loop."""
    from kaiwa.server.serve import serve, serve_workers
    from kaiwa.store.guard import DatabaseInUse, hold
    from kaiwa.store.location import describe

    print(
        f"kaiwa: database {describe(settings.resolved_database_url)}", file=sys.stderr, flush=True
    )
    try:
        held = await hold(settings.resolved_database_url, shared=bool(settings.redis_url))
    except DatabaseInUse as exc:
        print(f"kaiwa: {exc}", file=sys.stderr)
        return 1
    async with held:
        await _bootstrap(args, settings)
        if settings.workers > 1:
            return await serve_workers(settings)
        await serve(settings)
        return 0


async def _bootstrap(args: argparse.Namespace, settings: Settings) -> None:
    """Migrate; on an empty database create the demo, its key and the guide agent."""
    from kaiwa.guide import ensure_guide
    from kaiwa.store.db import create_engine, migrate, session_factory, transaction

    engine = create_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            workspace_id = await _first_run(args, session)
        if workspace_id is not None:
            guide = await ensure_guide(sessions, workspace_id, settings)
            print(
                f"  guide agent {guide.id}: answers questions about kaiwa from its\n"
                "  knowledge base, showing its reasoning steps (kaiwa chat --agent <that id>)\n",
                flush=True,
            )
    finally:
        await engine.dispose()


async def _first_run(args: argparse.Namespace, session: AsyncSession) -> str | None:
    """On an empty database, bootstrap a demo and print its key once, so a newcomer can chat."""
    from sqlalchemy import select

    from kaiwa.store import keys
    from kaiwa.store.bootstrap import ensure_demo
    from kaiwa.store.models import ApiKey

    if await session.scalar(select(ApiKey.id).limit(1)) is not None:
        return None
    workspace, agent = await ensure_demo(session)
    _key, plaintext = await keys.create_key(session, workspace.id, name="first run")
    base_url = args.base_url
    chat = json.dumps({"name": "hello", "agent_id": agent.id})
    message = json.dumps({"message": "こんにちは", "agent_id": agent.id}, ensure_ascii=False)
    headers = f"-H 'x-api-key: {plaintext}' -H 'content-type: application/json'"
    print(
        "\nkaiwa: first run, created a workspace, a demo agent and an API key (shown only once):\n"
        f"  api key   {plaintext}\n"
        f"  agent id  {agent.id}\n"
        f"Chat in a browser at {base_url}/ with that key, or from a terminal with `kaiwa chat`.\n"
        "Try it: create a chat, then stream an answer in it (the first chat's id is 1):\n"
        f"  curl -s -X POST {base_url}/api/v1/chats {headers} -d '{chat}'\n"
        f"  curl -N -X POST {base_url}/api/v1/chats/1/messages {headers} -d '{message}'\n",
        flush=True,
    )
    return workspace.id


async def _init(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys
    from kaiwa.store.bootstrap import ensure_demo

    workspace, agent = await ensure_demo(session)
    _key, plaintext = await keys.create_key(session, workspace.id, name="init")
    if args.json:
        print(
            json.dumps({"workspace_id": workspace.id, "api_key": plaintext, "agent_id": agent.id})
        )
    else:
        print(
            f"workspace {workspace.id}\nagent     {agent.id}\napi key   {plaintext}  (shown once)"
        )
    return 0


def _parse_expiry(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(
            f"kaiwa: --expires must be an ISO date or datetime, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _keys_create(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys, workspaces

    workspace = await workspaces.default_workspace(session)
    assert workspace is not None
    expires = _parse_expiry(args.expires) if args.expires else None
    key, plaintext = await keys.create_key(
        session, workspace.id, name=args.name, scope=args.scope, expires_at=expires
    )
    if args.json:
        print(
            json.dumps(
                {"id": key.id, "api_key": plaintext, "prefix": key.prefix, "scope": key.scope}
            )
        )
    else:
        print(f"{plaintext}\n(shown once; id {key.id}, scope {key.scope})")
    return 0


async def _keys_list(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys
    from kaiwa.store.db import iso, now, utc

    listed = await keys.list_keys(session)
    rows = [
        {
            "id": key.id,
            "name": key.name,
            "prefix": key.prefix,
            "scope": key.scope,
            "created_at": iso(key.created_at),
            "expires_at": iso(key.expires_at),
            "revoked_at": iso(key.revoked_at),
        }
        for key in listed
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    moment = now()
    for key, row in zip(listed, rows, strict=True):
        if key.revoked_at is not None:
            state = "revoked"
        elif key.expires_at is not None and utc(key.expires_at) <= moment:
            state = f"expired {row['expires_at']}"
        else:
            state = f"expires {row['expires_at'] or 'never'}"
        print(f"{row['prefix']}…  {row['id']}  {row['scope']:<10}  {row['name']}  ({state})")
    return 0


async def _keys_revoke(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys

    key = await keys.revoke_key(session, args.key)
    if key is None:
        print(f"kaiwa: no single key matches {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked {key.prefix}… ({key.id})")
    return 0


async def _agents_list(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import agents, workspaces

    workspace = await workspaces.default_workspace(session)
    assert workspace is not None
    rows, _total = await agents.list_agents(session, workspace.id, limit=1000, offset=0)
    listed = [
        {
            "id": a.id,
            "name": a.name,
            "llm_model": a.llm_model,
            "published_version": a.published_version,
        }
        for a in rows
    ]
    if args.json:
        print(json.dumps(listed, ensure_ascii=False))
        return 0
    for row in listed:
        version = f"v{row['published_version']}" if row["published_version"] else "unpublished"
        print(f"{row['id']}  {row['name']}  {row['llm_model']}  {version}")
    return 0


def _whitelist_mode(enabled: bool) -> Command:
    async def run(_args: argparse.Namespace, session: AsyncSession) -> int:
        from kaiwa.store import workspaces

        workspace = await workspaces.default_workspace(session)
        assert workspace is not None
        workspace.whitelist_mode = enabled
        print(f"whitelist mode {'on' if enabled else 'off'} for workspace {workspace.id}")
        return 0

    return run


def _whitelist_edit(add: bool) -> Command:
    async def run(args: argparse.Namespace, session: AsyncSession) -> int:
        from kaiwa.store import workspaces

        workspace = await workspaces.default_workspace(session)
        assert workspace is not None
        for user in args.external_user_ids:
            if add:
                await workspaces.allow(session, workspace.id, user)
            else:
                await workspaces.disallow(session, workspace.id, user)
        print(f"{'allowed' if add else 'removed'}: {', '.join(args.external_user_ids)}")
        return 0

    return run


async def _whitelist_list(_args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import workspaces

    workspace = await workspaces.default_workspace(session)
    assert workspace is not None
    users = await workspaces.whitelist(session, workspace.id)
    print(f"whitelist mode: {'on' if workspace.whitelist_mode else 'off'}")
    for user in users:
        print(user)
    return 0


if __name__ == "__main__":
    sys.exit(main())
