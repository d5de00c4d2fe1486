"""300 clients at once through HAProxy, each dropping its connection at random points and
resuming through HAProxy (so usually on another replica): each sees each event exactly once."""

from __future__ import annotations

import random

from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, all_of, converse

SCRIPT = slow_script(10, 0.1)  # 1 s
EVENTS = SCRIPT.pieces + 2
CLIENTS = 300


async def test_300_streams_with_random_disconnects_see_every_event_once(cluster: Cluster) -> None:
    agent = cluster.create_agent("crowd", SCRIPT.script)
    chats = cluster.create_chats(agent, CLIENTS)
    rng = random.Random(300)
    cuts = [[rng.randint(0, EVENTS // 2) for _ in range(rng.randint(0, 3))] for _ in chats]
    async with SseClient(cluster.api_key, deadline=60) as client:
        transcripts = await all_of(
            converse(client, cluster.lb.base_url, chat, agent, "みんなで", cuts=plan, deadline=60)
            for chat, plan in zip(chats, cuts, strict=True)
        )
    for transcript in transcripts:
        transcript.check_completed(SCRIPT.text)
        assert len(transcript.frames) == EVENTS, transcript.describe()
    resumed = sum(len(transcript.reads) > 1 for transcript in transcripts)
    assert resumed > CLIENTS // 2, resumed
    for chat in chats:
        [_, answer] = cluster.messages(chat)
        assert (answer["meta"]["status"], answer["content"]) == ("completed", SCRIPT.text)
