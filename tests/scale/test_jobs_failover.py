"""Background jobs outlive the replica running them: SIGKILLed mid-job, another replica finishes.

Three replicas on one PostgreSQL database and one Redis, their uploaded bytes in one bucket of a
moto S3 server (`tests/s3_server.py`), so a document uploaded through one replica can be indexed
by any; job leases are short (2 s, renewed every 0.67 s), so a dead replica's jobs come due again
within seconds. Which replica runs a job is read from the `jobs` table: its `owner` is
`<host>-<pid>-<random>`, and the pid is one of the rig's replicas.

- A large document being indexed: its indexer is killed part-way through writing its chunks;
  another replica indexes it again from the start, and it ends `ready` with the chunks and
  postings of exactly one pass; its job is gone and its uploaded bytes deleted from the bucket.
- A batch of slow answers: the replica running two of its items is killed mid-answer; another
  replica answers them again (the cut answer superseded, the question asked once), every item
  ends `completed`, and the batch's webhook, refused twice (503), is delivered on its third
  attempt with one delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.s3_server import S3Server, running_s3_server
from tests.scale.rig import Cluster, Replica, slow_script

from kaiwa.knowledge.chunk import chunk_text
from kaiwa.knowledge.ingest import extract_text
from kaiwa.knowledge.terms import counted_terms

T = TypeVar("T")

LEASE = 2.0
DOCUMENT_BYTES = 1_000_000
"""About 2,000 chunks and 100,000 postings: seconds of writing, so it is killed part-way."""
ITEMS = 12
ANSWER = slow_script(12, 0.25)  # 3 s per answer: far from its end when its replica dies
ENDED_WITHIN = 60.0
_WORDS = (
    "shipping",
    "returns",
    "invoice",
    "warranty",
    "delivery",
    "refund",
    "order",
    "parcel",
    "courier",
    "customs",
    "tariff",
    "battery",
    "screen",
    "charger",
    "cable",
    "adapter",
)


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[S3Server, str]]:
    with running_s3_server() as server:
        yield server, server.create_bucket(f"kaiwa-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def scale_env(s3: tuple[S3Server, str]) -> dict[str, str]:
    server, bucket = s3
    return {
        **server.settings(bucket),
        "KAIWA_JOB_LEASE": str(LEASE),
        "KAIWA_JOB_POLL_INTERVAL": "0.2",
        "KAIWA_INDEX_BACKOFF": "0.5",
        "KAIWA_BATCH_CONCURRENCY": "2",
        # A regenerated item waits for the sweeper to end its cut answer (its chat is busy).
        "KAIWA_BATCH_BUSY_BACKOFF": "0.5",
        "KAIWA_BATCH_WEBHOOK_BACKOFF": "0.2",
        "KAIWA_FETCH_ALLOW_PRIVATE": "127.0.0.1",
    }


# -- helpers ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    dsn = cluster.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        yield connection
    finally:
        await connection.close(timeout=5)


async def poll(
    check: Callable[[], Awaitable[T | None]], *, within: float, what: str, interval: float = 0.02
) -> T:
    """Await `check` until it returns something truthy (returned); fail after `within` s."""
    ends_at = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > ends_at:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(interval)


def pid_of(owner: str) -> int:
    """The pid in a replica id, `<host>-<pid>-<random>` (the host may hold dashes)."""
    return int(owner.rsplit("-", 2)[1])


def replica_of(cluster: Cluster, owner: str) -> Replica:
    pid = pid_of(owner)
    found = [replica for replica in cluster.replicas if replica.running and replica.pid == pid]
    assert len(found) == 1, (owner, cluster.replicas)
    return found[0]


def big_text(size: int) -> str:
    """Deterministic English-like text of about `size` characters, in paragraphs."""
    lines: list[str] = []
    total = 0
    n = 0
    while total < size:
        words = " ".join(
            f"{_WORDS[(n * 7 + k * 3) % len(_WORDS)]}{(n * k) % 97}" for k in range(12)
        )
        line = f"Section {n}. The {words} policy applies to order {n * 31 % 10007}.\n"
        if n % 5 == 4:
            line += "\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines)


def data(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error_code"] == 0, body
    return body["data"]


# -- indexing ---------------------------------------------------------------------------------


async def test_a_document_whose_indexer_was_killed_is_indexed_once_by_another_replica(
    cluster: Cluster, s3: tuple[S3Server, str]
) -> None:
    server, bucket = s3
    text = big_text(DOCUMENT_BYTES)
    raw = text.encode()
    extracted = extract_text(raw, filename="manual.txt", content_type="text/plain")
    chunks = chunk_text(extracted.text)
    postings = sum(len(counted_terms(chunk)) for chunk in chunks)

    kb = data(cluster.api("POST", "/api/v1/knowledge-bases", json={"name": "failover"}), 201)
    uploaded = cluster.api(
        "POST",
        f"/api/v1/knowledge-bases/{kb['id']}/documents",
        files={"file": ("manual.txt", raw, "text/plain")},
        timeout=60,
    )
    document_id = data(uploaded, 202)["id"]

    async with database(cluster) as db:
        storage_key = await db.fetchval(
            "SELECT storage_key FROM kb_documents WHERE id = $1", document_id
        )
        assert storage_key, "the uploaded bytes are kept until the document is indexed"
        object_key = f"kaiwa/{storage_key}"
        assert object_key in server.keys(bucket)

        async def half_written() -> tuple[asyncpg.Record, int] | None:
            job = await db.fetchrow(
                "SELECT state, owner, attempts FROM jobs WHERE kind = 'index' AND key = $1",
                document_id,
            )
            written = await db.fetchval(
                "SELECT count(*) FROM kb_chunks WHERE document_id = $1", document_id
            )
            running = job is not None and job["state"] == "running" and job["owner"]
            return (job, written) if running and 0 < written < len(chunks) // 2 else None

        job, written = await poll(
            half_written, within=30, what="the index job runs and has written some chunks"
        )
        assert job["attempts"] == 1, job
        victim = replica_of(cluster, job["owner"])
        victim.kill()

        statuses: set[str] = set()
        takers: set[tuple[str, int]] = set()

        async def indexed() -> asyncpg.Record | None:
            document = await db.fetchrow(
                "SELECT status, error, chunk_count, storage_key FROM kb_documents WHERE id = $1",
                document_id,
            )
            assert document is not None
            statuses.add(document["status"])
            job = await db.fetchrow(
                "SELECT state, owner, attempts FROM jobs WHERE kind = 'index' AND key = $1",
                document_id,
            )
            if job is not None and job["owner"] and job["attempts"] > 1:
                takers.add((job["owner"], job["attempts"]))
            return document if document["status"] != "processing" else None

        document = await poll(
            indexed, within=ENDED_WITHIN, what="the document is indexed by another replica"
        )
        assert (document["status"], document["error"]) == ("ready", None), dict(document)
        assert statuses == {"processing", "ready"}, statuses
        # Taken over once, by a replica alive, which finished it.
        assert takers, "the job was seen running on another replica"
        for owner, attempts in takers:
            assert attempts == 2, takers
            assert pid_of(owner) != victim.pid
            assert replica_of(cluster, owner) is not victim

        # Indexed once: the chunks and postings of one pass, none of the killed one's.
        rows = await db.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT ordinal) AS ordinals, min(ordinal) AS first, "
            "max(ordinal) AS last FROM kb_chunks WHERE document_id = $1",
            document_id,
        )
        assert document["chunk_count"] == len(chunks), (document["chunk_count"], len(chunks))
        assert dict(rows) == {
            "n": len(chunks),
            "ordinals": len(chunks),
            "first": 0,
            "last": len(chunks) - 1,
        }
        stored_postings = await db.fetchval(
            "SELECT count(*) FROM kb_terms WHERE knowledge_base_id = $1", kb["id"]
        )
        assert stored_postings == postings
        assert await db.fetchval("SELECT count(*) FROM jobs WHERE kind = 'index'") == 0
        assert document["storage_key"] is None
        assert object_key not in server.keys(bucket)
        assert written < len(chunks)

    shown = data(cluster.api("GET", f"/api/v1/knowledge-bases/{kb['id']}/documents/{document_id}"))
    assert (shown["status"], shown["chunk_count"]) == ("ready", len(chunks))
    hits = data(
        cluster.api(
            "POST",
            f"/api/v1/knowledge-bases/{kb['id']}/search",
            json={"query": "warranty policy order"},
        )
    )
    assert hits, "the document is searchable"


# -- batch items ------------------------------------------------------------------------------


async def test_batch_items_of_a_killed_replica_are_answered_once_by_another(
    cluster: Cluster,
) -> None:
    agent = cluster.create_agent("batch failover", ANSWER.script)
    questions = {f"q{n:02d}": f"質問 {n}: 配送の日数を教えて" for n in range(ITEMS)}
    requests = [{"custom_id": cid, "message": message} for cid, message in questions.items()]
    with WebhookReceiver(statuses=[503, 503, 200]) as receiver:
        batch = data(
            cluster.api(
                "POST",
                "/api/v1/batches",
                json={"agent_id": agent, "requests": requests, "webhook": {"url": receiver.url}},
            )
        )
        batch_id = batch["id"]
        async with database(cluster) as db:

            async def answering() -> list[asyncpg.Record] | None:
                rows = await db.fetch(
                    "SELECT j.owner, i.id AS item_id, i.response_id FROM jobs j "
                    "JOIN batch_items i ON i.id = (j.payload->>'item_id')::bigint "
                    "WHERE j.kind = 'batch_item' AND j.state = 'running' AND i.batch_id = $1",
                    batch_id,
                )
                # Every replica's slots are taken and every running item has its answer started.
                full = len(rows) == 2 * len(cluster.replicas)
                return rows if full and all(row["response_id"] for row in rows) else None

            running = await poll(answering, within=20, what="every slot answers an item")
            await asyncio.sleep(0.5)  # a few deltas into each answer
            owners = [row["owner"] for row in running]
            victim_owner = max(set(owners), key=owners.count)
            victim = replica_of(cluster, victim_owner)
            victim.kill()
            cut = {
                int(row["item_id"])
                for row in await db.fetch(
                    "SELECT payload->>'item_id' AS item_id FROM jobs "
                    "WHERE kind = 'batch_item' AND owner = $1",
                    victim_owner,
                )
            }
            assert cut, "the killed replica was running items"

            async def ended() -> dict[str, Any] | None:
                shown = data(cluster.api("GET", f"/api/v1/batches/{batch_id}"))
                delivered = shown["webhook_delivered_at"] or shown["webhook_error"]
                return shown if shown["status"] != "processing" and delivered else None

            final = await poll(
                ended, within=ENDED_WITHIN, what="the batch ends and its webhook is sent"
            )
            items = {
                row["custom_id"]: row
                for row in await db.fetch(
                    "SELECT id, custom_id, status, attempts, chat_id, response_id "
                    "FROM batch_items WHERE batch_id = $1",
                    batch_id,
                )
            }
            left = await db.fetch(
                "SELECT kind, state, owner FROM jobs WHERE kind <> ALL($1)",
                [
                    "expire_files",
                    "purge_idempotency_keys",
                ],
            )
            stored = await db.fetchrow(
                "SELECT webhook_attempts, webhook_error, webhook_delivered_at FROM batches "
                "WHERE id = $1",
                batch_id,
            )
        received = receiver.received

    assert final["status"] == "completed", final
    assert (final["completed_requests"], final["failed_requests"]) == (ITEMS, 0), final
    assert final["cancelled_requests"] == 0, final
    assert left == [], [dict(row) for row in left]

    results = data(cluster.api("GET", f"/api/v1/batches/{batch_id}/results", params={"limit": 100}))
    assert [row["custom_id"] for row in results] == list(questions)
    for row in results:
        custom_id = row["custom_id"]
        item = items[custom_id]
        was_cut = item["id"] in cut
        assert (row["status"], row["error"]) == ("completed", None), row
        assert row["response"] == ANSWER.text, row
        assert item["attempts"] == (2 if was_cut else 1), (custom_id, dict(item), cut)
        messages = cluster.messages(row["chat_id"])
        asked = [m for m in messages if m["role"] == "user"]
        assert [m["content"] for m in asked] == [questions[custom_id]], (custom_id, messages)
        answers = [m for m in messages if m["role"] == "assistant"]
        current = [m for m in answers if not m["meta"]["superseded"]]
        superseded = [m for m in answers if m["meta"]["superseded"]]
        assert len(current) == 1, (custom_id, answers)
        assert current[0]["meta"]["status"] == "completed", current
        assert current[0]["content"] == ANSWER.text
        assert current[0]["meta"]["response_id"] == row["response_id"]
        if was_cut:
            # Cut by the kill, then regenerated: the cut answer kept, superseded.
            assert len(superseded) == 1, (custom_id, answers)
            assert superseded[0]["meta"]["status"] == "failed", superseded
            assert ANSWER.text.startswith(superseded[0]["content"]), superseded
            assert superseded[0]["meta"]["response_id"] != row["response_id"]
        else:
            assert superseded == [], (custom_id, answers)

    # The webhook: refused twice, delivered on the third attempt, one delivery id throughout.
    assert [hook.status for hook in received] == [503, 503, 200]
    assert {hook.headers["x-kaiwa-delivery"] for hook in received} == {f"{batch_id}:completed"}
    assert final["webhook_delivered_at"] is not None, final
    assert final["webhook_error"] is None, final
    assert stored["webhook_attempts"] == 3, dict(stored)
