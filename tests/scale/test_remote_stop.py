"""Stopping an answer from a replica that does not produce it: `POST …/cancel`, and a new message
with `if_busy: "interrupt"` — also right after Redis dropped every subscriber's connection
(`CLIENT KILL TYPE pubsub`), which the replicas must survive without losing the signal.
"""

from __future__ import annotations

import time

import pytest
from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, Transcript, follow

SCRIPT = slow_script(60, 0.05)  # 3 s
QUICK = slow_script(4, 0.01, word="行")
SEEN = 5
STOPPED_WITHIN = 5.0
pubsub = pytest.mark.parametrize("pubsub", ["connected", "killed"])


def drop_subscribers(cluster: Cluster, pubsub: str) -> None:
    if pubsub == "killed":
        cluster.redis.kill_pubsub_clients()


@pubsub
async def test_cancel_sent_to_another_replica_stops_the_answer(
    cluster: Cluster, pubsub: str
) -> None:
    agent = cluster.create_agent("cancelled", SCRIPT.script)
    chat = cluster.create_chat(agent)
    owner, other = cluster.replicas[0], cluster.replicas[2]
    async with SseClient(cluster.api_key) as client:
        transcript = Transcript.begin(
            await client.send(owner.base_url, chat, "止めます", agent, stop_after=SEEN)
        )
        drop_subscribers(cluster, pubsub)
        started = time.monotonic()
        path = f"/api/v1/chats/{chat}/responses/{transcript.response_id}/cancel"
        reply = await client.post(other.base_url, path)
        assert time.monotonic() - started < STOPPED_WITHIN
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["error_code"] == 0, body
        assert body["data"]["status"] == "cancelled", body
        await follow(client, other.base_url, chat, transcript, deadline=STOPPED_WITHIN)

    transcript.check_exactly_once()
    ending = transcript.ending
    assert ending is not None
    assert ending.type == "response.output_text.completed"
    assert ending.data["status"] == "cancelled", ending.data
    assert ending.data["final_text"] == transcript.text
    assert SCRIPT.text.startswith(transcript.text)
    assert transcript.text != SCRIPT.text
    [_, answer] = cluster.messages(chat)
    assert (answer["content"], answer["meta"]["status"]) == (transcript.text, "cancelled")
    assert body["data"]["final_text"] == transcript.text, body


@pubsub
async def test_interrupt_sent_to_another_replica_replaces_the_answer(
    cluster: Cluster, pubsub: str
) -> None:
    agent = cluster.create_agent("interrupted", SCRIPT.script)
    chat = cluster.create_chat(agent)
    owner, other = cluster.replicas[1], cluster.replicas[0]
    async with SseClient(cluster.api_key) as client:
        old = Transcript.begin(
            await client.send(owner.base_url, chat, "最初の質問", agent, stop_after=SEEN)
        )
        drop_subscribers(cluster, pubsub)
        started = time.monotonic()
        new = Transcript.begin(
            await client.send(other.base_url, chat, "やっぱり別の質問", agent, if_busy="interrupt")
        )
        assert time.monotonic() - started < STOPPED_WITHIN + SCRIPT.pieces * 0.05
        await follow(client, other.base_url, chat, old, deadline=STOPPED_WITHIN)

    old.check_exactly_once()
    assert old.ending is not None
    assert old.ending.type == "response.error"
    assert old.ending.data["code"] == 10010, old.ending.data
    new.check_completed(SCRIPT.text)
    rows = cluster.messages(chat)
    assert [(m["role"], m["meta"]["status"]) for m in rows] == [
        ("user", "completed"),
        ("assistant", "cancelled"),
        ("user", "completed"),
        ("assistant", "completed"),
    ], rows
    assert rows[1]["content"] == old.text
    assert rows[3]["content"] == SCRIPT.text


async def test_replicas_resubscribe_after_their_subscribers_were_dropped(cluster: Cluster) -> None:
    """Dropped twice in a row, then a cancel through each replica in turn still lands."""
    drop_subscribers(cluster, "killed")
    drop_subscribers(cluster, "killed")
    agent = cluster.create_agent("resubscribed", SCRIPT.script)
    async with SseClient(cluster.api_key) as client:
        for n, replica in enumerate(cluster.replicas):
            owner = cluster.replicas[(n + 1) % len(cluster.replicas)]
            chat = cluster.create_chat(agent)
            transcript = Transcript.begin(
                await client.send(owner.base_url, chat, "止まる?", agent, stop_after=SEEN)
            )
            path = f"/api/v1/chats/{chat}/responses/{transcript.response_id}/cancel"
            reply = await client.post(replica.base_url, path)
            assert reply.status_code == 200, reply.text
            await follow(client, replica.base_url, chat, transcript, deadline=STOPPED_WITHIN)
            transcript.check_exactly_once()
            assert transcript.ending is not None
            assert transcript.ending.data.get("status") == "cancelled", transcript.describe()
