"""The rig itself: three replicas behind HAProxy (deploy/haproxy.cfg), its Redis and its helpers.

These pass on a kaiwa that knows nothing of replicas: every request here is answered whole by the
replica that received it.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from tests.scale.rig import Cluster, Nginx, free_port, missing_binaries, slow_script
from tests.scale.sse import SseClient, converse

SCRIPT = slow_script(12, 0.02)


def test_every_replica_is_up_behind_haproxy(cluster: Cluster) -> None:
    assert cluster.lb.statuses() == {"kaiwa1": "UP", "kaiwa2": "UP", "kaiwa3": "UP"}
    for base_url in [replica.base_url for replica in cluster.replicas] + [cluster.lb.base_url]:
        assert httpx.get(f"{base_url}/readyz", timeout=5, trust_env=False).status_code == 200
    assert len({replica.pid for replica in cluster.replicas}) == 3


async def test_a_stream_through_haproxy_ends_with_done_and_contiguous_ids(cluster: Cluster) -> None:
    agent = cluster.create_agent("rig", SCRIPT.script)
    chat = cluster.create_chat(agent)
    async with SseClient(cluster.api_key) as client:
        transcript = await converse(client, cluster.lb.base_url, chat, agent, "こんにちは")
    transcript.check_completed(SCRIPT.text)
    assert [read.ending for read in transcript.reads] == ["done"]
    assert transcript.types == (
        ["response.created"]
        + ["response.output_text.delta"] * SCRIPT.pieces
        + ["response.output_text.completed"]
    )
    [user, answer] = cluster.messages(chat)
    assert (user["role"], answer["role"]) == ("user", "assistant")
    assert (answer["content"], answer["meta"]["status"]) == (SCRIPT.text, "completed")


def test_haproxy_spreads_requests_over_every_replica(cluster: Cluster) -> None:
    before = [len(replica.requests("GET", "/api/v1/chats")) for replica in cluster.replicas]
    for _ in range(12):
        cluster.ok("GET", "/api/v1/chats", via=cluster.lb.base_url, params={"limit": 1})
    after = [len(replica.requests("GET", "/api/v1/chats")) for replica in cluster.replicas]
    served = [b - a for a, b in zip(before, after, strict=True)]
    assert sum(served) == 12
    assert min(served) >= 2, served


async def test_a_killed_replica_leaves_the_rotation_and_requests_still_succeed(
    cluster: Cluster,
) -> None:
    victim = cluster.replicas[1]
    victim.kill(signal.SIGKILL)
    assert not victim.running
    # Before the health check notices, requests routed to it are redispatched (connection refused).
    for _ in range(6):
        cluster.ok("GET", "/api/v1/chats", via=cluster.lb.base_url, params={"limit": 1})
    cluster.lb.wait_status("kaiwa2", "DOWN", timeout=10)
    agent = cluster.create_agent("after kill", SCRIPT.script)
    async with SseClient(cluster.api_key) as client:
        for _ in range(3):
            chat = cluster.create_chat(agent)
            transcript = await converse(client, cluster.lb.base_url, chat, agent, "まだ?")
            transcript.check_completed(SCRIPT.text)


def test_a_replica_stops_on_sigterm_and_restarts_on_its_port(cluster: Cluster) -> None:
    replica = cluster.replicas[2]
    port, old_pid = replica.port, replica.pid
    # uvicorn raises the signal again once it has shut down cleanly.
    assert replica.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in replica.log_text(since_start=True)
    cluster.lb.wait_status("kaiwa3", "DOWN", timeout=10)
    replica.start()
    assert (replica.port, replica.running) == (port, True)
    assert replica.pid != old_pid
    cluster.lb.wait_status("kaiwa3", "UP", timeout=10)


def test_redis_pause_restart_and_pubsub_helpers(cluster: Cluster) -> None:
    redis = cluster.redis
    with redis.client() as client:
        client.set("rig:key", "1")
        started = time.monotonic()
        redis.pause(1.0)
        assert client.ping()
        assert time.monotonic() - started >= 0.8, "PING answered during CLIENT PAUSE"

        subscriber = redis.client().pubsub()
        subscriber.subscribe("rig:channel")
        try:
            assert redis.kill_pubsub_clients() >= 1
        finally:
            subscriber.close()

    port, old_pid = redis.port, redis.pid
    redis.restart(down_for=0.2)
    assert (redis.port, redis.running) == (port, True)
    assert redis.pid != old_pid
    with redis.client() as client:
        assert client.ping()
        assert client.get("rig:key") is None, "a restarted Redis comes back empty"


@pytest.fixture
def nginx_binary() -> None:
    if missing_binaries("nginx"):
        message = "nginx not found (apt-get install nginx)"
        if os.environ.get("KAIWA_TEST_REQUIRE_LOAD_BALANCERS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


async def test_a_stream_through_nginx_with_the_reference_config(
    cluster: Cluster, nginx_binary: None
) -> None:
    nginx = Nginx("nginx", cluster.root / "nginx", dict(os.environ), port=free_port())
    checked = nginx.check(cluster.replicas)
    assert checked.returncode == 0, checked.stderr
    nginx.start(cluster.replicas)
    try:
        agent = cluster.create_agent("nginx", SCRIPT.script)
        async with SseClient(cluster.api_key) as client:
            for _ in range(3):
                chat = cluster.create_chat(agent)
                transcript = await converse(client, nginx.base_url, chat, agent, "nginx 経由")
                transcript.check_completed(SCRIPT.text)
                assert [read.ending for read in transcript.reads] == ["done"]
    finally:
        nginx.stop()
