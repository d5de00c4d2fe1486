"""A replica killed (SIGKILL) while it produces an answer: another replica ends the answer.

The client streams through HAProxy; the replica producing its answer dies mid-stream; the client
resumes through HAProxy with `Last-Event-ID` and gets the frames it had not seen, then
`response.error`, within 10 s. The assistant message is stored `failed` with the text of the
answer's last checkpoint.
"""

from __future__ import annotations

import asyncio
import time

from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import Frame, SseClient, Transcript, follow

SCRIPT = slow_script(80, 0.05)  # 4 s: far from its end when the owner dies
KILL_AFTER = 12
"""Frames seen before the kill: ~0.5 s in, past a couple of checkpoints (0.2 s)."""
ENDED_WITHIN = 10.0


async def test_killing_the_owner_mid_stream_ends_the_answer_with_an_error(cluster: Cluster) -> None:
    agent = cluster.create_agent("dies", SCRIPT.script)
    chat = cluster.create_chat(agent)
    lb = cluster.lb.base_url
    seen = asyncio.Event()

    def count(frame: Frame) -> None:
        if frame.id >= KILL_AFTER:
            seen.set()

    async with SseClient(cluster.api_key, read_timeout=5.0) as client:
        streaming = asyncio.create_task(client.send(lb, chat, "長い答えを", agent, on_frame=count))
        await asyncio.wait_for(seen.wait(), timeout=10)
        owner = await asyncio.to_thread(cluster.owner_of, chat)
        await asyncio.to_thread(owner.kill)
        killed_at = time.monotonic()
        first = await asyncio.wait_for(streaming, timeout=10)
        assert first.ending in ("cut", "eof"), first.ending
        transcript = Transcript.begin(first)
        assert transcript.last_id >= KILL_AFTER
        await follow(client, lb, chat, transcript, deadline=ENDED_WITHIN)
    ended_after = time.monotonic() - killed_at

    transcript.check_exactly_once()
    assert ended_after < ENDED_WITHIN
    assert transcript.ending is not None
    assert transcript.ending.type == "response.error"
    assert transcript.ending.data["message"], transcript.ending.data
    assert SCRIPT.text.startswith(transcript.text)
    assert transcript.text != SCRIPT.text

    [_user, answer] = cluster.messages(chat)
    assert answer["meta"]["status"] == "failed", answer
    checkpointed = answer["content"]
    assert checkpointed, "the answer was past a checkpoint when its replica died"
    assert transcript.text.startswith(checkpointed), (checkpointed, transcript.text)
    status = cluster.response(chat, transcript.response_id)
    assert status["status"] == "failed", status
    assert status["error"] is not None, status
    assert status["final_text"] == checkpointed, status


async def test_every_replica_keeps_answering_after_one_was_killed(cluster: Cluster) -> None:
    """The survivors are not confused by the dead one's heartbeat lapsing, and the restarted one
    serves again."""
    quick = slow_script(5, 0.01)
    agent = cluster.create_agent("after death", quick.script)
    cluster.replicas[0].kill()
    await asyncio.sleep(3.0)  # past the heartbeat TTL (2 s): the sweepers have looked
    await asyncio.to_thread(cluster.heal)
    async with SseClient(cluster.api_key) as client:
        for replica in cluster.replicas:
            chat = cluster.create_chat(agent)
            read = await client.send(replica.base_url, chat, "元気?", agent)
            Transcript.begin(read).check_completed(quick.text)
