"""Stopping the server (SIGTERM, as a deploy or `docker stop` does) while a stream is open.

The contract says a stream always ends with `data: [DONE]`, and the runtime's own shutdown is
meant to end each running response's log with its partial answer. The server of this module is
its own, since the test stops it.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx

DONE = b"data: [DONE]\n\n"
SCRIPT = {"answer": [{"text": "途中まで"}, {"delay": 30}, {"text": "終わり"}], "title": "停止"}
AFTER_SIGTERM = 3.0


def test_sigterm_ends_an_open_stream_with_done_and_exits(kaiwa_launcher: Any) -> None:
    server = kaiwa_launcher.start(
        "shutdown", env={"KAIWA_PING_INTERVAL": "0.2", "KAIWA_SHUTDOWN_GRACE": "0.5"}
    )
    try:
        agent = server.create_agent(
            name="slow", llm_model="scripted/slow", meta={"model_settings": {"script": SCRIPT}}
        )
        chat = server.create_chat("shutdown", agent_id=agent["id"])
        body = {"message": "長い答えをお願いします", "agent_id": agent["id"]}
        received = b""
        cut = False
        with server.client.stream(
            "POST",
            f"/api/v1/chats/{chat['id']}/messages",
            json=body,
            headers={"x-api-key": server.api_key},
        ) as response:
            pieces = response.iter_raw()
            for piece in pieces:
                received += piece
                if b"response.output_text.delta" in received:
                    break
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                for piece in pieces:
                    received += piece
                    if time.monotonic() - signalled > AFTER_SIGTERM:
                        break
            except httpx.RemoteProtocolError:
                cut = True
        ended_after = time.monotonic() - signalled

        assert not cut, "the server cut the stream without ending its chunked body"
        assert received.endswith(DONE), received[-300:]
        assert ended_after < AFTER_SIGTERM
        tail = received[: -len(DONE)].rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert b"event: response.output_text.completed" in tail or b"event: response.error" in tail
        assert server.process.wait(timeout=AFTER_SIGTERM) is not None
    finally:
        if server.process is not None and server.process.poll() is None:
            # A second signal, SIGINT, makes uvicorn skip the graceful wait.
            server.process.send_signal(signal.SIGINT)
        server.stop()


def test_during_the_shutdown_delay_only_readiness_changes(kaiwa_launcher: Any) -> None:
    """Behind a load balancer: after SIGTERM, `/readyz` fails at once so the balancer moves away,
    while everything else is served as before until the delay ends and the port closes."""
    delay = 2.0
    server = kaiwa_launcher.start("lame duck", env={"KAIWA_SHUTDOWN_DELAY": str(delay)})
    try:
        chat = server.create_chat("delay")
        assert server.client.get("/readyz").status_code == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        ready = server.client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["error_code"] == 10005
        assert server.client.get("/healthz").status_code == 200
        answer = server.stream(chat["id"], "まだ答えられますか?")
        assert answer.status == 200
        assert answer.done
        assert answer.types[-1] == "response.output_text.completed"
        assert time.monotonic() - signalled < delay, "the delay ended before the checks"

        assert server.process.wait(timeout=delay + 10) == 0
        assert time.monotonic() - signalled >= delay
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
        server.stop()
