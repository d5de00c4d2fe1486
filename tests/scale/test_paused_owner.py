"""A replica frozen (SIGSTOP) past its heartbeat's TTL while producing an answer, then thawed.

Another replica ends the answer (`response.error`, stored `failed` with its checkpointed text).
When the frozen replica wakes (SIGCONT) it carries on where it stopped — appends, checkpoints, its
final store — and none of it may show: the log and the database stay as the other replica left
them, on every replica.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, Transcript

SCRIPT = slow_script(50, 0.05)  # 2.5 s of answer, most of it still to come when frozen
FREEZE_AFTER = 8
ENDED_WITHIN = 12.0
AFTER_THAW = SCRIPT.pieces * 0.05 + 1.5
"""Long enough for the woken replica to play the rest of its script and try to store it."""


def snapshot(cluster: Cluster, chat: int, response_id: str) -> dict[str, Any]:
    status = cluster.response(chat, response_id)
    return {
        "messages": [
            (m["role"], m["content"], m["meta"]["status"]) for m in cluster.messages(chat)
        ],
        "status": (status["status"], status["final_text"], status["error"], status["finished_at"]),
    }


async def test_a_frozen_owner_is_ended_by_another_replica_and_its_late_writes_are_refused(
    cluster: Cluster,
) -> None:
    agent = cluster.create_agent("frozen", SCRIPT.script)
    chat = cluster.create_chat(agent)
    owner, other = cluster.replicas[0], cluster.replicas[1]
    async with SseClient(cluster.api_key, deadline=ENDED_WITHIN + 5) as client:
        first = await client.send(owner.base_url, chat, "凍る前に", agent, stop_after=FREEZE_AFTER)
        transcript = Transcript.begin(first)
        owner.send_signal(signal.SIGSTOP)
        try:
            # Followed on another replica: the answer is ended there, not by the frozen owner.
            read = await client.events(
                other.base_url,
                chat,
                transcript.response_id,
                last_event_id=transcript.last_id,
                deadline=ENDED_WITHIN,
            )
            transcript.add(read)
            transcript.check_exactly_once()
            assert transcript.ending is not None
            assert transcript.ending.type == "response.error"
            before = await asyncio.to_thread(snapshot, cluster, chat, transcript.response_id)
            assert before["messages"][1][2] == "failed", before
            assert transcript.text.startswith(before["messages"][1][1]), before
        finally:
            owner.send_signal(signal.SIGCONT)

        await asyncio.sleep(AFTER_THAW)

        after = await asyncio.to_thread(snapshot, cluster, chat, transcript.response_id)
        assert after == before, "the woken replica changed the stored answer"
        for replica in cluster.replicas:
            replay = await client.events(replica.base_url, chat, transcript.response_id)
            assert replay.done, (replica.name, replay.ending)
            assert replay.frames == transcript.frames, (replica.name, [f.id for f in replay.frames])

        # The woken replica is a healthy member again.
        fresh = cluster.create_chat(agent)
        quick = await client.send(owner.base_url, fresh, "起きた?", agent, deadline=15)
        Transcript.begin(quick).check_completed(SCRIPT.text)
