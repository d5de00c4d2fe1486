"""Files in S3-compatible object storage, shared by replicas; and what an upload costs in memory.

Replicas A and B are two `kaiwa serve` processes on one fresh PostgreSQL database, one
`redis-server` and one bucket of a moto S3 server, all started by this module on free loopback
ports and stopped by their pids at its end; each replica has a data directory of its own, so a
file B serves can only have come from the bucket.

The memory test reads the server process's peak resident set (`VmHWM` in /proc/<pid>/status)
after resetting it to the current size (`echo 5 > /proc/<pid>/clear_refs`), once a small upload
has warmed the process up (lazy imports, connection pools, the first multipart upload): the
growth is what one 20 MiB upload costs at its peak. Run with `-s` to see the numbers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import KaiwaServer, Launcher, fresh_postgres_database
from tests.redis_server import RedisServer
from tests.s3_server import S3Server, running_s3_server
from tests.unit.files import samples

UPLOAD = "/api/v1/chats/upload-file"
MiB = 1024 * 1024
MAX_GROWTH = 10 * MiB
NOTE = "配送について。ご注文から3営業日以内に発送します。離島は追加で2日かかります。"


@dataclass
class Replicas:
    a: KaiwaServer
    b: KaiwaServer
    s3: S3Server
    bucket: str


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(kaiwa_launcher: Launcher, s3_server: S3Server) -> Iterator[Replicas]:
    bucket = s3_server.create_bucket(f"kaiwa-{uuid.uuid4().hex[:12]}")
    redis = RedisServer()
    redis.start()
    try:
        with fresh_postgres_database() as database_url:
            env = {
                "KAIWA_DATABASE_URL": database_url,
                "KAIWA_REDIS_URL": redis.url,
                "KAIWA_EMBEDDINGS__PROVIDER": "none",
                **s3_server.settings(bucket),
            }
            a = kaiwa_launcher.start("replica-a", env=env)
            b = kaiwa_launcher.start("replica-b", env=env, init=False)
            b.api_key, b.agent_id, b.workspace_id = a.api_key, a.agent_id, a.workspace_id
            try:
                yield Replicas(a, b, s3_server, bucket)
            finally:
                # The database can only be dropped once the replicas have let go of it.
                a.stop()
                b.stop()
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def local_server(kaiwa_launcher: Launcher) -> Iterator[KaiwaServer]:
    """One server with the default backend, files in its data directory."""
    server = kaiwa_launcher.start("local-files", env={"KAIWA_EMBEDDINGS__PROVIDER": "none"})
    yield server
    server.stop()


def picture(size: int) -> bytes:
    """A `size`-byte "PNG": a real one, then random bytes (never read for text)."""
    head = samples.png()
    return head + os.urandom(size - len(head))


def upload(server: KaiwaServer, name: str, content: bytes) -> dict[str, Any]:
    file: dict[str, Any] = server.ok("POST", UPLOAD, files={"file": (name, content)})
    return file


def test_a_file_uploaded_on_one_replica_is_served_and_attached_on_the_other(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    contents = {"配送メモ.txt": NOTE.encode(), "写真.png": picture(3 * MiB)}
    uploaded = {name: upload(a, name, content) for name, content in contents.items()}
    assert len(replicas.s3.keys(replicas.bucket)) == 2
    assert all(key.startswith("kaiwa/") for key in replicas.s3.keys(replicas.bucket))
    for name, content in contents.items():
        response = b.api("GET", f"/api/v1/chats/files/{uploaded[name]['uuid']}")
        assert response.status_code == 200, response.text
        assert response.headers["content-length"] == str(len(content))
        assert response.content == content

    note = uploaded["配送メモ.txt"]["uuid"]
    agent = b.create_agent(
        name="clerk", llm_model="builtin/extractive", unified_tools=[{"type": "lookup"}]
    )
    chat = b.create_chat(agent_id=agent["id"])
    question = "離島への配送は何日かかりますか"
    streamed = b.stream(chat["id"], question, agent_id=agent["id"], attached_file_uuids=[note])
    assert streamed.done, streamed.raw[-300:]
    (step,) = [event["step"] for event in streamed.of("response.reasoning_step.end")]
    assert step["type"] == "consultant_lookup"
    assert step["result"]["data"]["results"][0]["id"] == note
    (completed,) = streamed.of("response.output_text.completed")
    assert "離島は追加で2日かかります" in completed["final_text"]
    user = b.messages(chat["id"])[0]
    (attached,) = user["attached_files"]
    assert attached["uuid"] == note
    assert attached["file_url"] == f"{b.base_url}/api/v1/chats/files/{note}"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_20_mib_picture_costs_the_server_far_less_than_its_size(
    request: pytest.FixtureRequest, backend: str
) -> None:
    server: KaiwaServer = (
        request.getfixturevalue("local_server")
        if backend == "local"
        else request.getfixturevalue("replicas").a
    )
    assert server.process is not None
    pid = server.process.pid
    content = picture(20 * MiB)
    upload(server, "warm-up.png", picture(6 * MiB))
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak is now the current size
    before = _status_kib(pid, "VmRSS") * 1024
    file = upload(server, "写真.png", content)
    peak = _status_kib(pid, "VmHWM") * 1024
    growth = peak - before
    print(
        f"\n[{backend}] 20 MiB upload: resident before {before / MiB:.1f} MiB, "
        f"peak {peak / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB"
    )
    assert file["size"] == len(content)
    assert growth < MAX_GROWTH
