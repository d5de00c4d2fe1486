"""Batch webhooks as `webhook` jobs: one attempt per run of the job, retried with a doubling
backoff under one delivery id, and taken over (or given up) when the replica running one died.

Runs on SQLite and PostgreSQL (`make_api`). The receiver is a real loopback server
(`tests/fakes/webhook_receiver.py`), reachable because `fetch_allow_private` lists 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from api_support import Api, data
from sqlalchemy import select
from tests.fakes.webhook_receiver import WebhookReceiver

from kaiwa.store import jobs
from kaiwa.store.db import new_id, now
from kaiwa.store.models import Batch, Job

MakeApi = Callable[..., Any]
ANSWER = [{"text": "承知しました。"}]
BACKOFF = 0.2
ATTEMPTS = 3
POLL = 0.05
FAST: dict[str, Any] = {
    "fetch_allow_private": "127.0.0.1",
    "batch_webhook_attempts": ATTEMPTS,
    "batch_webhook_backoff": BACKOFF,
    "job_poll_interval": POLL,
}
DEAD_OWNER = "a-host-that-died-4242-0badcafe"


async def until(api: Api, batch_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            batch: dict[str, Any] = data(await api.get(f"/api/v1/batches/{batch_id}"))
            if done(batch):
                return batch
            await asyncio.sleep(0.02)


def sent_at(body: bytes) -> datetime:
    stamp = json.loads(body)["timestamp"]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def webhook_jobs(api: Api) -> list[Job]:
    async with api.store() as session:
        return list(await session.scalars(select(Job).where(Job.kind == "webhook")))


async def test_a_webhook_refused_twice_is_delivered_on_its_third_and_last_attempt(
    make_api: MakeApi,
) -> None:
    api: Api = await make_api(**FAST)
    agent = await api.scripted_agent(ANSWER)
    secret = "s3cret"
    with WebhookReceiver(statuses=[503, 503, 200]) as receiver:
        batch = data(
            await api.post(
                "/api/v1/batches",
                json={
                    "agent_id": agent,
                    "requests": [{"custom_id": "a", "message": "配送は?"}],
                    "webhook": {"url": receiver.url, "secret": secret},
                },
            )
        )
        done = await until(api, batch["id"], lambda b: b["webhook_delivered_at"] is not None)
        await asyncio.sleep(3 * POLL)  # nothing more is sent
        received = receiver.received

    assert done["status"] == "completed"
    assert done["webhook_error"] is None
    assert [hook.status for hook in received] == [503, 503, 200]
    # One delivery id throughout; each attempt signed afresh, over its own timestamp.
    assert {hook.headers["x-kaiwa-delivery"] for hook in received} == {f"{batch['id']}:completed"}
    for hook in received:
        expected = hmac.new(secret.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["x-codeer-signature"] == f"sha256={expected}"
        assert json.loads(hook.body)["batch"]["id"] == batch["id"]
    first, second, third = (sent_at(hook.body) for hook in received)
    # The job's backoff, doubled: not before 0.2 s, then 0.4 s.
    assert second - first >= timedelta(seconds=BACKOFF)
    assert third - second >= timedelta(seconds=2 * BACKOFF)
    async with api.store() as session:
        stored = await session.get(Batch, batch["id"])
        assert stored is not None
        assert stored.webhook_attempts == 3
        assert stored.webhook_error is None
        assert stored.webhook_delivered_at is not None
    assert await webhook_jobs(api) == []


async def _ended_batch_with_a_dead_owners_webhook(api: Api, url: str, *, attempts: int) -> str:
    """A completed batch whose webhook job was running on a replica that died after `attempts`
    attempts (its lease lapsed a minute ago)."""
    stamp = now()
    batch_id = new_id()
    async with api.store() as session:
        session.add(
            Batch(
                id=batch_id,
                workspace_id=api.workspace_id,
                agent_id=api.demo_agent_id,
                status="completed",
                total_requests=0,
                completed_requests=0,
                failed_requests=0,
                cancelled_requests=0,
                webhook_url=url,
                webhook_events=["completed"],
                webhook_secret=None,
                webhook_attempts=attempts - 1,
                created_at=stamp,
                completed_at=stamp,
            )
        )
        await session.flush()
        session.add(
            Job(
                kind="webhook",
                key=batch_id,
                payload={"batch_id": batch_id},
                state="running",
                owner=DEAD_OWNER,
                attempts=attempts,
                max_attempts=ATTEMPTS,
                run_at=stamp - timedelta(minutes=2),
                lease_until=stamp - timedelta(minutes=1),
                last_error=None,
                created_at=stamp,
                updated_at=stamp,
            )
        )
    return batch_id


async def test_a_webhook_whose_replica_died_is_sent_by_another(make_api: MakeApi) -> None:
    api: Api = await make_api(**FAST)
    with WebhookReceiver() as receiver:
        batch_id = await _ended_batch_with_a_dead_owners_webhook(api, receiver.url, attempts=1)
        done = await until(api, batch_id, lambda b: b["webhook_delivered_at"] is not None)
        [hook] = receiver.received

    assert done["webhook_error"] is None
    assert hook.headers["x-kaiwa-delivery"] == f"{batch_id}:completed"
    async with api.store() as session:
        stored = await session.get(Batch, batch_id)
        assert stored is not None
        assert stored.webhook_attempts == 2  # the dead replica's attempt counts
    assert await webhook_jobs(api) == []


async def test_a_webhook_whose_replica_died_on_its_last_attempt_is_given_up(
    make_api: MakeApi,
) -> None:
    api: Api = await make_api(**FAST)
    with WebhookReceiver() as receiver:
        batch_id = await _ended_batch_with_a_dead_owners_webhook(api, receiver.url, attempts=3)
        done = await until(api, batch_id, lambda b: b["webhook_error"] is not None)
        assert receiver.received == []

    assert done["webhook_error"] == jobs.OWNER_STOPPED
    assert done["webhook_delivered_at"] is None
    async with asyncio.timeout(5):  # the job is failed just after the batch records why
        while True:
            [job] = await webhook_jobs(api)
            if job.state != "running":
                break
            await asyncio.sleep(0.02)
    # Kept `failed` for an operator to retry (`kaiwa jobs retry`), no longer the dead one's.
    assert (job.state, job.owner, job.attempts) == ("failed", None, 3)
    assert job.last_error == jobs.OWNER_STOPPED
    async with api.store() as session:
        stored = await session.get(Batch, batch_id)
        assert stored is not None
        assert stored.webhook_attempts == 3
