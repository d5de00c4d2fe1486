"""Redis pausing (`CLIENT PAUSE`), restarting empty, or down, while answers stream.

Clients stream through HAProxy, drop their connection at random and resume through it. Whatever
Redis does, each client sees each event once, ids with no gap, and an ending that agrees with the
database; no answer is left `in_progress`. A request that needs Redis while it is down is refused
at once with 503 and kaiwa's envelope, not left hanging.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, Transcript, all_of, converse

SCRIPT = slow_script(30, 0.05)  # 1.5 s
CLIENTS = 12
PAUSE = 2.0
REFUSED_WITHIN = 3.0


def random_cuts(rng: random.Random) -> list[int]:
    return [rng.randint(0, SCRIPT.pieces // 2) for _ in range(rng.randint(0, 2))]


def check_agrees_with_database(cluster: Cluster, chat: int, transcript: Transcript) -> None:
    """The client saw every event once, and the stored answer is the one it saw end."""
    transcript.check_exactly_once()
    [_, answer] = cluster.messages(chat)
    ending = transcript.ending
    assert ending is not None
    if ending.type == "response.output_text.completed":
        assert (answer["meta"]["status"], answer["content"]) == ("completed", SCRIPT.text)
        transcript.check_completed(SCRIPT.text)
    else:
        assert answer["meta"]["status"] == "failed", answer
        assert transcript.text.startswith(answer["content"]), (answer, transcript.text)


async def test_client_pause_during_streams_loses_and_repeats_nothing(cluster: Cluster) -> None:
    agent = cluster.create_agent("paused redis", SCRIPT.script)
    chats = cluster.create_chats(agent, CLIENTS)
    rng = random.Random(2000)
    async with SseClient(cluster.api_key, deadline=30) as client:
        clients = [
            converse(client, cluster.lb.base_url, chat, agent, "止まっても", cuts=random_cuts(rng))
            for chat in chats
        ]
        running = asyncio.ensure_future(all_of(clients))
        await asyncio.sleep(0.4)
        await asyncio.to_thread(cluster.redis.pause, PAUSE)
        transcripts = await running
    for chat, transcript in zip(chats, transcripts, strict=True):
        transcript.check_completed(SCRIPT.text)
        [_, answer] = cluster.messages(chat)
        assert (answer["meta"]["status"], answer["content"]) == ("completed", SCRIPT.text)


async def test_a_redis_restart_during_streams_leaves_no_gap_and_no_answer_behind(
    cluster: Cluster,
) -> None:
    agent = cluster.create_agent("restarted redis", SCRIPT.script)
    quick = slow_script(3, 0.01, word="件")
    quick_agent = cluster.create_agent("finished before", quick.script)
    chats = cluster.create_chats(agent, CLIENTS)
    finished_chat = cluster.create_chat(quick_agent)
    rng = random.Random(6379)
    async with SseClient(cluster.api_key, deadline=30) as client:
        # One answer finished before the restart, seen only in part by its client.
        finished = Transcript.begin(
            await client.send(cluster.lb.base_url, finished_chat, "先に", quick_agent, stop_after=2)
        )
        await asyncio.to_thread(cluster.wait_ended, finished_chat, finished.response_id)
        clients = [
            converse(
                client, cluster.lb.base_url, chat, agent, "再起動しても", cuts=random_cuts(rng)
            )
            for chat in chats
        ]
        running = asyncio.ensure_future(all_of(clients))
        await asyncio.sleep(0.4)
        await asyncio.to_thread(cluster.redis.restart, down_for=0.5)
        transcripts = await running
        # Its events are gone with Redis: the resume ends with the stored outcome.
        read = await client.events(
            cluster.lb.base_url, finished_chat, finished.response_id, last_event_id=2
        )
    finished.add(read)
    # Replayed from what survived, or only its stored ending under its original id.
    total = quick.pieces + 2
    assert finished.ids in ([*range(1, total + 1)], [1, 2, total]), finished.describe()
    assert finished.done, finished.describe()
    assert finished.ending is not None, finished.describe()
    assert finished.ending.data["final_text"] == quick.text, finished.describe()
    for chat, transcript in zip(chats, transcripts, strict=True):
        check_agrees_with_database(cluster, chat, transcript)


async def test_a_request_needing_redis_while_it_is_down_is_refused_at_once(
    cluster: Cluster,
) -> None:
    agent = cluster.create_agent("no redis", SCRIPT.script)
    attempts = [(replica, stream) for replica in cluster.replicas for stream in (True, False)]
    chats = cluster.create_chats(agent, len(attempts))
    cluster.redis.stop()
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            for chat, (replica, stream) in zip(chats, attempts, strict=True):
                started = time.monotonic()
                reply = await http.post(
                    f"{replica.base_url}/api/v1/chats/{chat}/messages",
                    json={"message": "届く?", "agent_id": agent, "stream": stream},
                    headers=cluster.headers,
                )
                elapsed = time.monotonic() - started
                what = (replica.name, f"stream={stream}", reply.status_code, reply.text)
                assert reply.status_code == 503, what
                assert reply.headers["content-type"].startswith("application/json"), what
                body = reply.json()
                assert set(body) == {"data", "message", "error_code", "pagination"}, what
                assert (body["data"], body["error_code"]) == (None, 10005), what
                assert body["message"], what
                assert elapsed < REFUSED_WITHIN, (*what, elapsed)
    finally:
        cluster.redis.start()
    stored = {chat: cluster.messages(chat) for chat in chats}
    assert stored == {chat: [] for chat in chats}, "a message refused with 503 was stored"

    # Back: every replica answers again, without being restarted, on the same chats.
    async with SseClient(cluster.api_key, deadline=20) as client:
        for chat, (replica, _) in zip(chats, attempts, strict=True):
            transcript = await converse(
                client, replica.base_url, chat, agent, "戻った?", deadline=20
            )
            transcript.check_completed(SCRIPT.text)
