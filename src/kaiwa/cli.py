"""The `kaiwa` command: serve | init | workspaces | keys | jobs | agents | whitelist | chat.

`chat` is a client of a running server (`kaiwa.chat`). Management commands work on the
database directly, with the same settings as the server (`kaiwa.cli_support`);
`workspaces` and `keys` are in `kaiwa.cli_admin`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from kaiwa import cli_admin, cli_jobs
from kaiwa.cli_support import Command, group, load_settings, sync

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kaiwa.config import Settings

# By name: run as `python -m kaiwa.cli`, `__name__` is `__main__`, outside kaiwa's loggers.
logger = logging.getLogger("kaiwa.cli")


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
    init.set_defaults(run=sync(_init, create=True))

    cli_admin.add_commands(commands)
    cli_jobs.add_commands(commands)

    agents = group(commands.add_parser("agents", help="inspect agents"))
    agents_list = agents.add_parser("list", help="list agents of the workspace")
    agents_list.add_argument("--json", action="store_true")
    agents_list.set_defaults(run=sync(_agents_list))

    whitelist = group(
        commands.add_parser("whitelist", help="whitelist mode: only listed external users may chat")
    )
    whitelist.add_parser("on", help="turn whitelist mode on").set_defaults(
        run=sync(_whitelist_mode(True))
    )
    whitelist.add_parser("off", help="turn whitelist mode off").set_defaults(
        run=sync(_whitelist_mode(False))
    )
    for name, help_text in (("add", "allow external users"), ("remove", "disallow external users")):
        sub = whitelist.add_parser(name, help=help_text)
        sub.add_argument("external_user_ids", nargs="+")
        sub.set_defaults(run=sync(_whitelist_edit(name == "add")))
    whitelist.add_parser("list", help="show the mode and the allowed users").set_defaults(
        run=sync(_whitelist_list)
    )

    chat = commands.add_parser("chat", help="chat with an agent of a running server")
    chat.add_argument("--url", help="the server (default: KAIWA_BASE_URL, http://127.0.0.1:8000)")
    chat.add_argument("--api-key", help="an API key (default: KAIWA_API_KEY)")
    chat.add_argument(
        "--agent",
        help="the agent's name or id (default: KAIWA_AGENT_ID, the chat's, the only one, or ask)",
    )
    chat.add_argument("--chat", type=int, help="continue this chat instead of starting one")
    chat.add_argument(
        "--lang", choices=["en", "ja"], help="en or ja (default: from LC_ALL, LC_MESSAGES, LANG)"
    )
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


def _chat(args: argparse.Namespace) -> int:
    # A client of the server: it must run on the base install, so nothing of the server here.
    from kaiwa.chat import Options, run

    # A continued chat has its agent: a KAIWA_AGENT_ID left in the shell must not contradict it.
    default_agent = None if args.chat is not None else os.environ.get("KAIWA_AGENT_ID")
    return run(
        Options(
            base_url=args.url,
            api_key=args.api_key,
            agent=args.agent or default_agent or None,
            chat_id=args.chat,
            once=args.once,
            json=args.json,
            attach=tuple(args.attach),
            lang=args.lang,
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
    settings = load_settings(**overrides)
    if settings.workers > 1:
        refusals = _workers_refusals(settings)
        if refusals:
            print("\n".join(f"kaiwa: {refusal}" for refusal in refusals), file=sys.stderr)
            return 2
    from kaiwa.server.tracing import unavailable

    if (missing := unavailable(settings)) is not None:
        print(f"kaiwa: {missing}", file=sys.stderr)
        return 2
    from kaiwa.server import logs
    from kaiwa.server.serve import run

    logs.configure(settings)  # before the start-up news, which is a log record in JSON
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

    _announce(settings, f"kaiwa: database {describe(settings.resolved_database_url)}")
    try:
        held = await hold(settings.resolved_database_url, shared=bool(settings.redis_url))
    except DatabaseInUse as exc:
        _announce(settings, f"kaiwa: {exc}", level=logging.ERROR)
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
            workspace_id = await _first_run(args, session, settings)
        if workspace_id is not None:
            guide = await ensure_guide(sessions, workspace_id, settings)
            _announce(
                settings,
                f"  guide agent {guide.id}: answers questions about kaiwa from its\n"
                "  knowledge base, showing its reasoning steps (kaiwa chat --agent <that id>)\n",
                stream=sys.stdout,
            )
    finally:
        await engine.dispose()


async def _first_run(
    args: argparse.Namespace, session: AsyncSession, settings: Settings
) -> str | None:
    """On an empty database, bootstrap a demo and print its key once, so a newcomer can chat
    (not with JSON logs: a log collector is no place for a key)."""
    from sqlalchemy import select

    from kaiwa.store import keys
    from kaiwa.store.bootstrap import ensure_demo
    from kaiwa.store.models import ApiKey

    if await session.scalar(select(ApiKey.id).limit(1)) is not None:
        return None
    workspace, agent = await ensure_demo(session)
    key, plaintext = await keys.create_key(session, workspace.id, name="first run")
    if settings.log_format == "json":
        logger.info(
            "first run: created workspace %s, demo agent %s and API key %s… (not logged: "
            "create one with `kaiwa keys create --workspace %s`)",
            workspace.id,
            agent.id,
            key.prefix,
            workspace.id,
        )
        return workspace.id
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


def _announce(
    settings: Settings, text: str, *, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Start-up news: printed (on stderr unless `stream`) for a terminal; with JSON logs, a log
    record, since a log collector reads JSON lines only."""
    if settings.log_format == "json":
        logger.log(level, "%s", " ".join(text.split()))
    else:
        print(text, file=stream or sys.stderr, flush=True)


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
