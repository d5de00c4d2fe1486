"""`kaiwa workspaces` and `kaiwa keys`: tenants and their API keys, on the database directly.

    kaiwa workspaces create NAME [--json]
    kaiwa workspaces list [--json]
    kaiwa workspaces rename ID NAME [--json]
    kaiwa workspaces delete ID [--yes] [--json]     asks first; all it holds goes, files' bytes too
    kaiwa keys create [--workspace ID] [--name N] [--scope management|chat] [--expires D] [--json]
    kaiwa keys list [--workspace ID] [--json]
    kaiwa keys revoke KEY [--workspace ID]

Without `--workspace`, `keys create` uses the first workspace (the one `kaiwa init` made) and
`keys list` and `keys revoke` every workspace. The admin API (`kaiwa.server.routes.admin`) does the
same over HTTP with the same store functions, and `--json` prints the same shapes as it answers.
`workspaces delete` cannot stop the answers a running server is producing in that workspace: it
says so, and the admin API, which can, is the way to delete a workspace in use.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kaiwa.cli_support import Database, group, sync, with_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kaiwa.store.models import Workspace

__all__ = ["add_commands"]

# What a deleted workspace held, as the confirmation and the summary name it.
_SUMMARY = {
    "chats": "chats",
    "messages": "messages",
    "uploaded_files": "files",
    "knowledge_bases": "knowledge bases",
    "kb_documents": "documents",
    "agents": "agents",
    "api_keys": "keys",
    "batches": "batches",
}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `workspaces` and `keys` to the `kaiwa` command."""
    spaces = group(commands.add_parser("workspaces", help="manage workspaces (tenants)"))
    create = spaces.add_parser("create", help="create an empty workspace")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help="print JSON for scripts")
    create.set_defaults(run=sync(_workspaces_create))
    listing = spaces.add_parser("list", help="list workspaces, oldest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=sync(_workspaces_list))
    rename = spaces.add_parser("rename", help="rename a workspace")
    rename.add_argument("workspace_id", metavar="ID")
    rename.add_argument("name")
    rename.add_argument("--json", action="store_true")
    rename.set_defaults(run=sync(_workspaces_rename))
    delete = spaces.add_parser(
        "delete",
        help="delete a workspace and all it holds: chats, files, knowledge bases, agents, keys",
    )
    delete.add_argument("workspace_id", metavar="ID")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(run=with_database(_workspaces_delete))

    keys = group(commands.add_parser("keys", help="manage API keys"))
    workspace_help = "the workspace's id (default: the first workspace)"
    key_create = keys.add_parser("create", help="create a key (shown once)")
    key_create.add_argument("--workspace", metavar="ID", help=workspace_help)
    key_create.add_argument("--name", default="cli")
    key_create.add_argument("--scope", choices=["management", "chat"], default="management")
    key_create.add_argument("--expires", help="expiry, ISO date or datetime (UTC), e.g. 2027-01-31")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(run=sync(_keys_create))
    key_list = keys.add_parser("list", help="list keys (prefixes only)")
    key_list.add_argument("--workspace", metavar="ID", help="only this workspace's keys")
    key_list.add_argument("--json", action="store_true")
    key_list.set_defaults(run=sync(_keys_list))
    revoke = keys.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", help="the key's id or its prefix as shown by 'keys list'")
    revoke.add_argument("--workspace", metavar="ID", help="only a key of this workspace")
    revoke.set_defaults(run=sync(_keys_revoke))


def _fail(message: str) -> int:
    print(f"kaiwa: {message}", file=sys.stderr)
    return 1


def _name(value: str) -> str:
    # The same rule as the admin API's (`routes.params.check_name`, the column's width).
    if not value.strip() or len(value) > 256:
        raise SystemExit("kaiwa: a workspace's name must have 1 to 256 characters")
    return value


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


async def _workspace(session: AsyncSession, workspace_id: str | None) -> Workspace | None:
    """The workspace named by `--workspace`, else the first one; None (said) when unknown."""
    from kaiwa.store import workspaces

    if workspace_id is None:
        return await workspaces.default_workspace(session)
    workspace = await workspaces.get_workspace(session, workspace_id)
    if workspace is None:
        _fail(f"no workspace {workspace_id!r} (see `kaiwa workspaces list`)")
    return workspace


# -- workspaces --------------------------------------------------------------------------------


async def _workspaces_create(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import tenants

    workspace = await tenants.create_workspace(session, _name(args.name))
    if args.json:
        _print_json(tenants.workspace_out(workspace))
    else:
        print(f"workspace {workspace.id}  {workspace.name}")
        print(f"Give it a key: kaiwa keys create --workspace {workspace.id}")
    return 0


async def _workspaces_list(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import tenants, workspaces

    rows = [tenants.workspace_out(w) for w in await workspaces.list_workspaces(session)]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        print(f"{row['id']}  {row['name']}  (created {row['created_at']})")
    return 0


async def _workspaces_rename(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import tenants

    workspace = await tenants.rename_workspace(session, args.workspace_id, _name(args.name))
    if workspace is None:
        return _fail(f"no workspace {args.workspace_id!r} (see `kaiwa workspaces list`)")
    if args.json:
        _print_json(tenants.workspace_out(workspace))
    else:
        print(f"workspace {workspace.id}  {workspace.name}")
    return 0


async def _workspaces_delete(args: argparse.Namespace, database: Database) -> int:
    from kaiwa.files import open_blob_store
    from kaiwa.runtime.tenants import delete_workspace
    from kaiwa.store import tenants, workspaces

    async with database.read_sessions() as session:
        workspace = await workspaces.get_workspace(session, args.workspace_id)
        if workspace is None:
            return _fail(f"no workspace {args.workspace_id!r} (see `kaiwa workspaces list`)")
        held = await tenants.contents(session, workspace.id)
        running = await tenants.running_responses(session, workspace.id)
    settings = database.settings
    files_dir = settings.files_dir
    blobs = open_blob_store(settings)  # a store that cannot open fails before the question
    if held["uploaded_files"] and settings.files_backend == "local" and not files_dir.is_dir():
        # Its rows would go and its bytes stay: the files are wherever the server keeps them.
        return _fail(
            f"the workspace has {held['uploaded_files']} files, but their folder {files_dir} "
            "does not exist: run this where the server runs, or set KAIWA_DATA_DIR to its own"
        )
    if not args.yes:
        question = (
            f"Delete workspace {workspace.id} ({workspace.name}) and all it holds: "
            f"{_summary(held)}?"
        )
        if running:
            question += (
                f"\n{len(running)} answers are in progress there: the server goes on producing "
                "them (the admin API, DELETE /api/v1/admin/workspaces/…, stops them first)."
            )
        if not _confirm(f"{question}\nThis cannot be undone. [y/N] "):
            return _fail("nothing deleted")
    deleted = await delete_workspace(database.sessions, blobs, workspace.id)
    if deleted is None:
        return _fail(f"no workspace {args.workspace_id!r} (deleted meanwhile?)")
    if args.json:
        _print_json({"id": workspace.id, "name": workspace.name, "deleted": deleted.rows})
    else:
        print(f"deleted workspace {workspace.id} ({workspace.name}): {_summary(deleted.rows)}")
    return 0


def _summary(rows: dict[str, int]) -> str:
    return ", ".join(f"{rows.get(table, 0)} {label}" for table, label in _SUMMARY.items())


def _confirm(question: str) -> bool:
    """Ask on stderr (stdout may be a script's JSON); only `y` or `yes` says yes."""
    print(question, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print(file=sys.stderr)  # end of input: end the question's line
    return answer.strip().lower() in ("y", "yes")


# -- keys --------------------------------------------------------------------------------------


def _parse_expiry(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(
            f"kaiwa: --expires must be an ISO date or datetime, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _keys_create(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys, tenants

    expires = _parse_expiry(args.expires) if args.expires else None
    workspace = await _workspace(session, args.workspace)
    if workspace is None:
        return 1
    key, plaintext = await keys.create_key(
        session, workspace.id, name=args.name, scope=args.scope, expires_at=expires
    )
    if args.json:
        _print_json({**tenants.key_out(key), "api_key": plaintext})
    else:
        print(
            f"{plaintext}\n(shown once; id {key.id}, scope {key.scope}, workspace {workspace.id})"
        )
    return 0


async def _keys_list(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys, tenants
    from kaiwa.store.db import now, utc

    if args.workspace is not None and await _workspace(session, args.workspace) is None:
        return 1
    listed = await keys.list_keys(session, args.workspace)
    rows = [tenants.key_out(key) for key in listed]
    if args.json:
        _print_json(rows)
        return 0
    moment = now()
    for key, row in zip(listed, rows, strict=True):
        if key.revoked_at is not None:
            state = "revoked"
        elif key.expires_at is not None and utc(key.expires_at) <= moment:
            state = f"expired {row['expires_at']}"
        else:
            state = f"expires {row['expires_at'] or 'never'}"
        print(
            f"{row['prefix']}…  {row['id']}  {row['scope']:<10}  {row['name']}  ({state})"
            f"  workspace {row['workspace_id']}"
        )
    return 0


async def _keys_revoke(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import keys

    if args.workspace is not None and await _workspace(session, args.workspace) is None:
        return 1
    key = await keys.revoke_key(session, args.key, args.workspace)
    if key is None:
        return _fail(f"no single key matches {args.key!r}")
    print(f"revoked {key.prefix}… ({key.id})")
    return 0
