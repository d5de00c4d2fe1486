"""A stream cut on one replica resumes on another: every event exactly once, ids contiguous.

For any cut point k and any pair of distinct replicas: the answer is sent to replica A, the client
drops its connection after k frames, and resumes on replica B with `Last-Event-ID: <k-th id>` —
while the answer runs, once it has finished, and once its log has expired (`KAIWA_LOG_RETENTION`
is short here), when the resume ends with the stored outcome under its original id.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.scale.rig import Cluster, slow_script
from tests.scale.sse import SseClient, Transcript

RETENTION = 1.0
SCRIPT = slow_script(16, 0.04)
EVENTS = SCRIPT.pieces + 2  # response.created, the deltas, output_text.completed
EXAMPLES = settings(
    max_examples=4,
    deadline=None,
    # No shrinking: each example takes a second or more, and the failure is shown as it was.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    # The cluster is healed once per test, not per example: examples only add chats.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
cuts = st.integers(min_value=0, max_value=EVENTS - 1)
origins = st.integers(min_value=0, max_value=2)
hops = st.integers(min_value=1, max_value=2)


@pytest.fixture(scope="module")
def scale_env() -> dict[str, str]:
    return {"KAIWA_LOG_RETENTION": str(RETENTION)}


@pytest.fixture(scope="module")
def agent(module_cluster: Cluster) -> str:
    return module_cluster.create_agent("resume anywhere", SCRIPT.script)


async def cut_then_resume(
    cluster: Cluster, agent: str, k: int, origin: int, hop: int, *, wait: str
) -> tuple[Transcript, int]:
    """Send to replica `origin`, keep k frames, optionally wait, resume on `origin + hop`."""
    chat = cluster.create_chat(agent)
    a = cluster.replicas[origin]
    b = cluster.replicas[(origin + hop) % len(cluster.replicas)]
    async with SseClient(cluster.api_key, deadline=20) as client:
        first = await client.send(a.base_url, chat, "再開して", agent, stop_after=k)
        transcript = Transcript.begin(first)
        assert len(transcript.frames) == k, transcript.describe()
        if wait != "running":
            await asyncio.to_thread(cluster.wait_ended, chat, transcript.response_id)
        if wait == "expired":
            await asyncio.sleep(RETENTION + 1.0)
        read = await client.events(
            b.base_url, chat, transcript.response_id, last_event_id=transcript.last_id
        )
        transcript.add(read)
    return transcript, chat


@given(k=cuts, origin=origins, hop=hops)
@EXAMPLES
def test_a_running_answer_resumes_on_another_replica(
    cluster: Cluster, agent: str, k: int, origin: int, hop: int
) -> None:
    transcript, _ = asyncio.run(cut_then_resume(cluster, agent, k, origin, hop, wait="running"))
    transcript.check_completed(SCRIPT.text)
    assert len(transcript.frames) == EVENTS


@given(k=cuts, origin=origins, hop=hops)
@EXAMPLES
def test_a_finished_answer_replays_on_another_replica(
    cluster: Cluster, agent: str, k: int, origin: int, hop: int
) -> None:
    transcript, _ = asyncio.run(cut_then_resume(cluster, agent, k, origin, hop, wait="finished"))
    transcript.check_completed(SCRIPT.text)
    assert len(transcript.frames) == EVENTS


@given(k=cuts, origin=origins, hop=hops)
@settings(EXAMPLES, max_examples=3)
def test_an_expired_answer_ends_with_its_stored_outcome_on_another_replica(
    cluster: Cluster, agent: str, k: int, origin: int, hop: int
) -> None:
    started = time.monotonic()
    transcript, chat = asyncio.run(cut_then_resume(cluster, agent, k, origin, hop, wait="expired"))
    assert time.monotonic() - started > RETENTION
    # The k frames seen, then only the stored ending, under the id it had in the log.
    assert transcript.ids == [*range(1, k + 1), EVENTS], transcript.describe()
    assert transcript.done, transcript.describe()
    ending = transcript.frames[-1]
    assert ending.type == "response.output_text.completed", transcript.describe()
    assert (ending.data["final_text"], ending.data["status"]) == (SCRIPT.text, "completed")
    [_, answer] = cluster.messages(chat)
    assert (answer["content"], answer["meta"]["status"]) == (SCRIPT.text, "completed")
