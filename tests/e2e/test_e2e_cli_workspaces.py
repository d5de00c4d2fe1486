"""`kaiwa workspaces` and `kaiwa keys --workspace` beside a running server, checked over HTTP.

The module's server has its own data directory; every command runs on its database as a
separate process, as an operator's shell would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import CLI_TIMEOUT, kaiwa_command


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.start("cli-workspaces")
    try:
        yield server
    finally:
        server.stop()


def kaiwa(
    server: Any, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kaiwa ARGS` on the server's database, `stdin` as its input; never fails by itself."""
    return subprocess.run(
        kaiwa_command(*args),
        cwd=server.root,
        env=env or server.env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status(server: Any, key: str, path: str = "/api/v1/chats") -> int:
    code: int = server.api("GET", path, key=key).status_code
    return code


def blob_files(server: Any) -> set[Path]:
    root = server.root / "data" / "files"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_create_list_and_rename_a_workspace(server: Any) -> None:
    created = as_json(kaiwa(server, "workspaces", "create", "営業部", "--json"))
    assert created["name"] == "営業部"
    listed = as_json(kaiwa(server, "workspaces", "list", "--json"))
    assert listed[0]["id"] == server.workspace_id  # oldest first
    assert created in listed

    renamed = as_json(kaiwa(server, "workspaces", "rename", created["id"], "sales", "--json"))
    assert renamed == {**created, "name": "sales"}
    text = kaiwa(server, "workspaces", "list").stdout
    line = next(line for line in text.splitlines() if created["id"] in line)
    assert "sales" in line


def test_keys_of_a_workspace_reach_only_that_workspace(server: Any) -> None:
    workspace = as_json(kaiwa(server, "workspaces", "create", "support", "--json"))
    created = as_json(kaiwa(server, "keys", "create", "--workspace", workspace["id"], "--json"))
    key = created.pop("api_key")
    assert created["workspace_id"] == workspace["id"]
    assert status(server, key) == 200
    assert server.ok("GET", "/api/v1/chats", key=key) == []
    # The demo's agent is another workspace's: not found with this key.
    refused = server.api(
        "POST", "/api/v1/chats", key=key, json={"name": "x", "agent_id": server.agent_id}
    )
    assert refused.status_code == 404

    chat_key = as_json(
        kaiwa(server, "keys", "create", "--workspace", workspace["id"], "--scope", "chat", "--json")
    )
    assert status(server, chat_key["api_key"], "/api/v1/agents") == 403

    own = as_json(kaiwa(server, "keys", "list", "--workspace", workspace["id"], "--json"))
    assert [row["id"] for row in own] == [created["id"], chat_key["id"]]
    assert key not in json.dumps(own)
    demo = as_json(kaiwa(server, "keys", "list", "--workspace", server.workspace_id, "--json"))
    assert created["id"] not in [row["id"] for row in demo]

    # Revoking names the workspace: another workspace's key is not found there.
    elsewhere = kaiwa(
        server, "keys", "revoke", created["prefix"], "--workspace", server.workspace_id
    )
    assert elsewhere.returncode == 1
    assert status(server, key) == 200
    revoked = kaiwa(server, "keys", "revoke", created["prefix"], "--workspace", workspace["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert status(server, key) == 401


def test_an_unknown_workspace_is_refused_by_every_command(server: Any) -> None:
    for args in (
        ("keys", "create", "--workspace", "nope", "--json"),
        ("keys", "revoke", "kw_x", "--workspace", "nope"),
        ("workspaces", "delete", "nope", "--yes"),
    ):
        result = kaiwa(server, *args)
        assert result.returncode == 1, (args, result)
        assert "no workspace 'nope'" in result.stderr, args
        assert result.stdout == "", args
        assert "Traceback" not in result.stderr


def test_an_empty_workspace_name_is_refused(server: Any) -> None:
    result = kaiwa(server, "workspaces", "create", "  ")
    assert result.returncode != 0
    assert "name" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete_asks_first_and_then_deletes_everything_with_the_files_bytes(server: Any) -> None:
    workspace = as_json(kaiwa(server, "workspaces", "create", "short-lived", "--json"))
    key = as_json(kaiwa(server, "keys", "create", "--workspace", workspace["id"], "--json"))[
        "api_key"
    ]
    blobs_before = blob_files(server)
    agent = server.ok("POST", "/api/v1/agents", key=key, json={"name": "a"})
    server.ok("POST", f"/api/v1/agents/{agent['id']}/publish", key=key)
    upload = server.api(
        "POST",
        "/api/v1/chats/upload-file",
        key=key,
        files={"file": ("notes.txt", b"Some notes.\n", "text/plain")},
    )
    assert upload.status_code == 200, upload.text
    chat = server.create_chat("c", agent_id=agent["id"], key=key)
    answer = server.stream(
        chat["id"],
        "こんにちは",
        agent_id=agent["id"],
        key=key,
        attached_file_uuids=[upload.json()["data"]["uuid"]],
    )
    assert answer.done
    assert len(blob_files(server) - blobs_before) == 1

    # No answer (no input at all, or anything but yes): nothing is deleted.
    for stdin in (None, "n\n"):
        refused = kaiwa(server, "workspaces", "delete", workspace["id"], stdin=stdin)
        assert refused.returncode == 1
        assert "nothing deleted" in refused.stderr
        assert "1 chats, 2 messages, 1 files" in refused.stderr
        assert "This cannot be undone" in refused.stderr
        assert refused.stdout == ""
    assert status(server, key) == 200

    deleted = as_json(kaiwa(server, "workspaces", "delete", workspace["id"], "--json", stdin="y\n"))
    assert deleted["id"] == workspace["id"]
    rows = deleted["deleted"]
    assert (rows["chats"], rows["messages"], rows["uploaded_files"]) == (1, 2, 1)
    assert (rows["agents"], rows["api_keys"], rows["workspaces"]) == (1, 1, 1)
    assert status(server, key) == 401
    assert blob_files(server) == blobs_before
    listed = as_json(kaiwa(server, "workspaces", "list", "--json"))
    assert workspace["id"] not in [w["id"] for w in listed]
    assert status(server, server.api_key) == 200  # the others' keys go on working


def test_workspace_commands_run_elsewhere_refuse_to_create_a_database(
    server: Any, tmp_path: Path
) -> None:
    env = {name: value for name, value in server.env.items() if name != "KAIWA_DATA_DIR"}
    for args in (("workspaces", "create", "x"), ("workspaces", "delete", "x")):
        result = subprocess.run(
            kaiwa_command(*args),
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert result.returncode == 1, result
        assert "no kaiwa database at" in result.stderr
        assert "kaiwa: database " in result.stderr
    assert list(tmp_path.iterdir()) == []
