"""The `kaiwa` command against a running server: the first-run key, init, keys, agents, whitelist.

The module's server starts through the installed `kaiwa` script on an empty data directory, with
its address given only by `KAIWA_HOST` / `KAIWA_PORT`. Every management command then runs beside
it on the same database, and its effect is checked over HTTP without a restart.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import fresh_postgres_database

INIT_KEYS = {"workspace_id", "api_key", "agent_id"}


def _kaiwa_script() -> list[str]:
    script = Path(sys.executable).parent / "kaiwa"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kaiwa.cli"]


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.prepare("cli")
    server.env.update({"KAIWA_HOST": "127.0.0.1", "KAIWA_PORT": str(server.port)})
    server.start(command=[*_kaiwa_script(), "serve"])
    try:
        server.init()
        yield server
    finally:
        server.stop()


def _status(server: Any, key: str) -> tuple[int, int]:
    """(HTTP status, error_code) of a simple authenticated call with `key`."""
    response = server.api("GET", "/api/v1/chats", key=key)
    return response.status_code, response.json()["error_code"]


def test_serve_on_an_empty_data_dir_prints_a_first_run_key_that_works(server: Any) -> None:
    log = server.log_text()
    assert log.count("kaiwa: first run") == 1, log
    key = re.search(r"api key\s+(kw_\S+)", log)
    agent = re.search(r"agent id\s+(\S+)", log)
    example = re.search(r"curl -s -X POST (\S+)/api/v1/chats", log)
    assert key, log
    assert agent, log
    assert example, log
    # The example names the address the server really listens on.
    assert example.group(1) == server.base_url
    assert agent.group(1) == server.agent_id  # init found the same demo agent
    chat = server.create_chat("first run", agent_id=agent.group(1), key=key.group(1))
    assert chat["meta"]["conversation_agent_id"] == agent.group(1)


def test_init_json_prints_one_line_with_the_ids_and_a_new_key_each_time(server: Any) -> None:
    runs = [server.cli("init", "--json") for _ in range(2)]
    values = []
    for run in runs:
        lines = run.stdout.splitlines()
        assert len(lines) == 1, run.stdout
        parsed = json.loads(lines[0])
        assert set(parsed) == INIT_KEYS
        values.append(parsed)
    first, second = values
    assert first["workspace_id"] == second["workspace_id"] == server.workspace_id
    assert first["agent_id"] == second["agent_id"] == server.agent_id
    assert first["api_key"] != second["api_key"]
    for value in values:
        assert _status(server, value["api_key"]) == (200, 0)


def test_keys_list_shows_prefixes_and_revoke_locks_the_key_out(server: Any) -> None:
    created = json.loads(server.cli("keys", "create", "--name", "revoke me", "--json").stdout)
    assert set(created) >= {"id", "api_key", "prefix", "scope"}
    key, prefix = created["api_key"], created["prefix"]
    assert key.startswith(prefix)
    assert len(prefix) < len(key)
    assert _status(server, key) == (200, 0)

    listing = server.cli("keys", "list")
    assert prefix in listing.stdout
    assert key not in listing.stdout
    listing_json = server.cli("keys", "list", "--json")
    assert key not in listing_json.stdout
    (row,) = [r for r in json.loads(listing_json.stdout) if r["id"] == created["id"]]
    assert row["prefix"] == prefix
    assert row["revoked_at"] is None

    revoked = server.cli("keys", "revoke", prefix)
    assert prefix in revoked.stdout
    assert _status(server, key) == (401, 10001)
    assert _status(server, server.api_key) == (200, 0)  # only that key
    line = next(line for line in server.cli("keys", "list").stdout.splitlines() if prefix in line)
    assert "revoked" in line


def test_keys_revoke_of_an_unknown_prefix_fails(server: Any) -> None:
    result = server.cli("keys", "revoke", "kw_nothing", check=False)
    assert result.returncode == 1
    assert "kw_nothing" in result.stderr


def test_keys_create_with_a_past_expiry_gives_a_key_that_is_refused(server: Any) -> None:
    past = json.loads(server.cli("keys", "create", "--expires", "2000-01-01", "--json").stdout)
    response = server.api("GET", "/api/v1/chats", key=past["api_key"])
    assert response.status_code == 401
    assert response.json()["error_code"] == 10001
    line = next(
        line for line in server.cli("keys", "list").stdout.splitlines() if past["prefix"] in line
    )
    assert "expired" in line

    future = server.cli("keys", "create", "--expires", "2999-01-01T00:00:00+09:00", "--json")
    assert _status(server, json.loads(future.stdout)["api_key"]) == (200, 0)


def test_keys_create_refuses_a_malformed_expiry(server: Any) -> None:
    result = server.cli("keys", "create", "--expires", "next tuesday", check=False)
    assert result.returncode != 0
    assert "--expires" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_chat_scoped_key_chats_but_cannot_manage_agents(server: Any) -> None:
    created = json.loads(server.cli("keys", "create", "--scope", "chat", "--json").stdout)
    assert created["scope"] == "chat"
    assert _status(server, created["api_key"]) == (200, 0)
    response = server.api("GET", "/api/v1/agents", key=created["api_key"])
    assert response.status_code == 403
    assert response.json()["error_code"] == 10001


def test_agents_list_shows_the_demo_and_guide_agents(server: Any) -> None:
    # Runs after the first-run bootstrap and three inits: still exactly one of each.
    text = server.cli("agents", "list").stdout
    line = next(line for line in text.splitlines() if server.agent_id in line)
    assert "kaiwa demo" in line
    assert "builtin/extractive" in line
    listed = json.loads(server.cli("agents", "list", "--json").stdout)
    by_name = {agent["name"]: agent for agent in listed}
    assert len(listed) == 2
    assert by_name["kaiwa demo"] == {
        "id": server.agent_id,
        "name": "kaiwa demo",
        "llm_model": "builtin/extractive",
        "published_version": 1,
    }
    assert by_name["kaiwa guide"]["published_version"] == 1


def guide_indexed(server: Any) -> None:
    """Wait until the guide's pages are indexed: `index` jobs run them once the server is up."""
    (base,) = [
        kb for kb in server.ok("GET", "/api/v1/knowledge-bases") if kb["name"] == "kaiwa guide"
    ]
    path = f"/api/v1/knowledge-bases/{base['id']}/documents"
    deadline = time.monotonic() + 120
    while {d["status"] for d in server.ok("GET", path)} != {"ready"}:
        assert time.monotonic() < deadline, server.ok("GET", path)
        time.sleep(0.2)


def test_the_guide_agent_answers_from_its_knowledge_base_offline(server: Any) -> None:
    guide_indexed(server)
    (guide,) = [
        agent
        for agent in server.ok("GET", "/api/v1/chats/published-agents")
        if agent["name"] == "kaiwa guide"
    ]
    chat = server.create_chat(agent_id=guide["id"])
    streamed = server.stream(
        chat["id"], "OpenAI 互換サーバーのモデル設定方法は?", agent_id=guide["id"]
    )
    steps = [e["step"] for e in streamed.of("response.reasoning_step.end")]
    assert [step["type"] for step in steps] == [
        "consultant_retrieve_context_source",
        "consultant_lookup",
    ]
    sources = steps[0]["result"]["data"]["sources"]
    assert sources[0]["title"] == "モデルの設定"
    (completed,) = streamed.of("response.output_text.completed")
    assert "OPENAI_BASE_URL" in completed["final_text"]
    assert "出典: モデルの設定" in completed["final_text"]


def test_whitelist_mode_gates_chats_by_external_user(server: Any) -> None:
    body = {"name": "whitelist", "agent_id": server.agent_id}
    server.cli("whitelist", "on")
    try:
        server.cli("whitelist", "add", "u1")
        listing = server.cli("whitelist", "list").stdout.splitlines()
        assert listing[0] == "whitelist mode: on"
        assert "u1" in listing[1:]

        anonymous = server.api("POST", "/api/v1/chats", json=body)
        assert anonymous.status_code == 403
        assert anonymous.json()["error_code"] == 14103
        stranger = server.api("POST", "/api/v1/chats", json={**body, "external_user_id": "u2"})
        assert stranger.status_code == 403
        assert stranger.json()["error_code"] == 14103
        allowed = server.api("POST", "/api/v1/chats", json={**body, "external_user_id": "u1"})
        assert allowed.status_code == 200
        assert allowed.json()["data"]["external_user_id"] == "u1"

        server.cli("whitelist", "remove", "u1")
        removed = server.api("POST", "/api/v1/chats", json={**body, "external_user_id": "u1"})
        assert removed.status_code == 403
    finally:
        server.cli("whitelist", "off")
    assert server.api("POST", "/api/v1/chats", json=body).status_code == 200


def test_a_command_group_alone_prints_its_own_help(server: Any) -> None:
    result = server.cli("keys", check=False)
    assert result.returncode == 2
    assert result.stdout.startswith("usage: kaiwa keys ")


def test_serve_with_a_bad_setting_exits_with_a_message_not_a_traceback(kaiwa_launcher: Any) -> None:
    broken = kaiwa_launcher.prepare(
        "bad-config", config='[providers.local]\ntype = "ollama"\nbase_url = "http://x"\n'
    )
    result = subprocess.run(
        [*_kaiwa_script(), "serve", "--port", str(broken.port)],
        cwd=broken.root,
        env=broken.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "providers.local.type" in result.stderr
    assert str(broken.root / "kaiwa.toml") in result.stderr
    assert "Traceback" not in result.stderr


# -- which database ----------------------------------------------------------------------------


def _kaiwa(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kaiwa ARGS` in `cwd` with exactly `env`; never fails by itself."""
    return subprocess.run(
        [*_kaiwa_script(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _elsewhere(server: Any) -> dict[str, str]:
    """The server's settings less its data directory: what a shell in another folder has."""
    return {name: value for name, value in server.env.items() if name != "KAIWA_DATA_DIR"}


def test_commands_and_serve_say_which_database_they_open(server: Any) -> None:
    database = server.root / "data" / "kaiwa.db"
    said = f"kaiwa: database {database.resolve()} (SQLite)"
    for args in (("keys", "list"), ("agents", "list", "--json"), ("whitelist", "list")):
        result = server.cli(*args)
        assert said in result.stderr.splitlines(), result.stderr
        assert said not in result.stdout
    assert said in server.log_text()


def test_a_command_run_elsewhere_refuses_to_create_a_database(server: Any, tmp_path: Path) -> None:
    env = _elsewhere(server)
    for args in (("keys", "create", "--json"), ("keys", "list"), ("whitelist", "on")):
        result = _kaiwa(env, tmp_path, *args)
        assert result.returncode == 1, result
        assert result.stdout == ""  # no key the server would refuse
        missing = tmp_path.resolve() / "kaiwa-data" / "kaiwa.db"
        assert f"kaiwa: database {missing} (SQLite)" in result.stderr
        assert f"no kaiwa database at {missing}" in result.stderr
        assert "relative to this folder" in result.stderr
        for hint in ("KAIWA_DATA_DIR", "KAIWA_DATABASE_URL", "kaiwa init"):
            assert hint in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # not even the data directory


def test_init_creates_the_database_that_later_commands_then_use(
    server: Any, tmp_path: Path
) -> None:
    env = _elsewhere(server)
    created = _kaiwa(env, tmp_path, "init", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    assert (tmp_path / "kaiwa-data" / "kaiwa.db").is_file()
    listing = _kaiwa(env, tmp_path, "keys", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert key.startswith(row["prefix"])
    # That database is not the server's: its key is refused there.
    assert _status(server, key) == (401, 10001)


def test_a_database_without_kaiwa_tables_is_refused_and_its_password_never_shown(
    server: Any,
) -> None:
    with fresh_postgres_database() as url:
        secret_url = url.replace("postgres@", "postgres:s3cret-pw@", 1)
        env = {**_elsewhere(server), "KAIWA_DATABASE_URL": secret_url}
        refused = _kaiwa(env, server.root, "keys", "list")
        assert refused.returncode == 1, refused
        assert f"kaiwa: database {url.replace('postgres@', 'postgres:***@', 1)}" in refused.stderr
        assert "that database has no kaiwa tables" in refused.stderr
        assert "kaiwa init" in refused.stderr
        created = _kaiwa(env, server.root, "init", "--json")
        assert created.returncode == 0, created.stderr
        listed = _kaiwa(env, server.root, "keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 1
        for result in (refused, created, listed):
            assert "s3cret-pw" not in result.stderr + result.stdout
