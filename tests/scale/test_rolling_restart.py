"""A rolling restart under load: SIGTERM one replica, wait for it to exit, start it again, wait
until HAProxy sees it UP, then the next — while 100 clients keep asking through HAProxy.

A replica that drains finishes its running answers (`KAIWA_SHUTDOWN_GRACE` is longer than any of
them) and its streams end with `[DONE]`; a client whose connection drops (a stream it followed
through the draining replica) resumes through HAProxy; a new message refused with 503 while the
health check has not yet noticed is sent again. Every turn of every client ends with its full
answer, seen once.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, Transcript, all_of, converse

SCRIPT = slow_script(10, 0.15)  # 1.5 s per turn
CLIENTS = 100


async def keep_asking(
    client: SseClient, cluster: Cluster, chat: int, agent: str, done: asyncio.Event
) -> list[Transcript]:
    """Turns on one chat, one after another, until the rolling restart is over (then one more)."""
    turns = []
    while True:
        last = done.is_set()
        turns.append(
            await converse(client, cluster.lb.base_url, chat, agent, "続けて", deadline=45)
        )
        if last:
            return turns


@pytest.mark.timeout(240)  # three stops and starts under load, each bounded on its own
async def test_a_rolling_restart_under_100_streams_loses_no_answer(cluster: Cluster) -> None:
    agent = cluster.create_agent("rolling", SCRIPT.script)
    chats = cluster.create_chats(agent, CLIENTS)
    old_pids = [replica.pid for replica in cluster.replicas]
    done = asyncio.Event()
    async with SseClient(cluster.api_key, deadline=60) as client:
        clients = asyncio.ensure_future(
            all_of(keep_asking(client, cluster, chat, agent, done) for chat in chats)
        )
        await asyncio.sleep(1.0)
        try:
            for replica in cluster.replicas:
                status = await asyncio.to_thread(replica.stop)
                assert status in (0, -signal.SIGTERM), (replica.name, status)
                await asyncio.to_thread(replica.start)
                await asyncio.to_thread(cluster.lb.wait_status, f"kaiwa{replica.index}", "UP")
        finally:
            done.set()
        results = await clients

    assert [replica.pid for replica in cluster.replicas] != old_pids
    turns = 0
    for chat, transcripts in zip(chats, results, strict=True):
        for transcript in transcripts:
            transcript.check_completed(SCRIPT.text)
        rows = cluster.messages(chat)
        answers = [row for row in rows if row["role"] == "assistant"]
        assert len(answers) == len(transcripts), rows
        assert {(a["meta"]["status"], a["content"]) for a in answers} == {
            ("completed", SCRIPT.text)
        }
        turns += len(transcripts)
    assert turns >= 2 * CLIENTS
