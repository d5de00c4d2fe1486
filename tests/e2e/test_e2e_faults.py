"""Faults of the model server and of kaiwa itself, against a real server process.

One kaiwa process serves the fault table. Its `kaiwa.toml` names three `openai` providers: `flaky`
and `patient` point at one fake OpenAI server scripted per test (`flaky` with a short
`chunk_timeout`, `patient` with one longer than the server's idle timeout, so that the idle timeout
is what ends a stall), and `refused` at a loopback port nobody listens on. Every fault must end the
stream with `response.error` and its code, then `[DONE]`; store the answer as failed with exactly
the text streamed before the fault; and leave the server answering the next request.

The last tests stop a server of their own mid-answer, with SIGTERM (graceful: the answer ends
cancelled, its partial text kept) and with SIGKILL (the answer is marked failed at the next start),
and start a new process on the same data each time.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.fakes.openai_server import (
    Behaviour,
    CloseAbruptly,
    FakeOpenAI,
    Malformed,
    Reply,
    Stall,
    Status,
)

API_KEY = "sk-fault-test"
CHUNKS = ["営業時間は", "平日の午前9時", "から午後6時", "までです。"]
ANSWER = "".join(CHUNKS)
BEFORE_FAULT = "".join(CHUNKS[:2])
CHUNK_TIMEOUT = 0.5
FIRST_BYTE_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
STALL_SECONDS = 4.0
QUICK_SCRIPT = {"answer": [{"text": "問題"}, {"text": "ありません。"}], "title": "確認"}
DONE = b"data: [DONE]\n\n"
UPSTREAM_ERROR = 10009
TIMEOUT = 10008
SERVER_ERROR = 10005


def closed_port() -> int:
    """A loopback port that was free a moment ago and that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_upstream_disconnect(fake: FakeOpenAI) -> None:
    """Until kaiwa has closed a request to the fake before its end (bounded)."""

    async def wait() -> None:
        async with asyncio.timeout(5.0):
            await fake.wait_for_disconnect()

    asyncio.run(wait())


def without_pings(body: bytes) -> bytes:
    """`body` less its keep-alive lines (each `: ping` alone, before a frame or `[DONE]`)."""
    return re.sub(rb"(?m)^: ping\n", b"", body)


def _provider(name: str, base_url: str, **options: float | int) -> str:
    lines = [f"[providers.{name}]", 'type = "openai"', f'base_url = "{base_url}"']
    lines.append(f'api_key = "{API_KEY}"')
    lines += [f"{option} = {value}" for option, value in options.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Setup:
    server: Any
    fake: FakeOpenAI
    agents: dict[str, str]
    """Agent id by provider name; `scripted` is the healthy one."""

    def chat(self, provider: str, name: str) -> int:
        chat_id = int(self.server.create_chat(name, agent_id=self.agents[provider])["id"])
        # Renamed by hand: no title is generated, so the fake sees only the answer's requests.
        self.server.ok("PUT", f"/api/v1/chats/{chat_id}", json={"name": name})
        return chat_id

    def assistant(self, chat_id: int) -> dict[str, Any]:
        rows = self.server.messages(chat_id)
        assert [row["role"] for row in rows] == ["user", "assistant"], rows
        answer: dict[str, Any] = rows[1]
        return answer

    def assert_healthy(self) -> None:
        """The server still answers, and a request on another provider succeeds."""
        assert self.server.client.get("/healthz").status_code == 200
        chat_id = self.chat("scripted", "healthy")
        streamed = self.server.stream(chat_id, "大丈夫ですか", agent_id=self.agents["scripted"])
        assert streamed.done
        assert streamed.types[-1] == "response.output_text.completed"
        assert streamed.events[-1]["final_text"] == "問題ありません。"


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Any) -> Iterator[Setup]:
    with FakeOpenAI() as fake:
        quick = {"connect_timeout": 0.5, "first_byte_timeout": FIRST_BYTE_TIMEOUT, "max_retries": 1}
        config = (
            _provider("flaky", fake.base_url, chunk_timeout=CHUNK_TIMEOUT, **quick)
            + _provider("patient", fake.base_url, chunk_timeout=STALL_SECONDS * 3, **quick)
            + _provider("refused", f"http://127.0.0.1:{closed_port()}/v1", **quick)
        )
        server = kaiwa_launcher.start(
            "faults", config=config, env={"KAIWA_IDLE_TIMEOUT": str(IDLE_TIMEOUT)}
        )
        try:
            agents = {
                provider: server.create_agent(name=provider, llm_model=f"{provider}/gpt-test")["id"]
                for provider in ("flaky", "patient", "refused")
            }
            agents["scripted"] = server.create_agent(
                name="scripted",
                llm_model="scripted/x",
                meta={"model_settings": {"script": QUICK_SCRIPT}},
            )["id"]
            yield Setup(server, fake, agents)
        finally:
            server.stop()


@pytest.fixture
def fake(setup: Setup) -> FakeOpenAI:
    setup.fake.reset()
    return setup.fake


@dataclass(frozen=True)
class Fault:
    provider: str
    default: Behaviour | None
    """What the fake answers to every request; None leaves it answering normally."""
    first: Behaviour | None
    """What it answers to the first request only."""
    code: int
    partial: str
    """The text streamed, and stored, before the fault."""
    requests: int
    """Requests the fake should have seen: retries happen only before the first chunk."""
    closes_upstream: bool = False
    """The fault leaves the upstream request hanging: kaiwa must close it."""


FAULTS = {
    "connection refused": Fault("refused", None, None, UPSTREAM_ERROR, "", 0),
    "429 every time": Fault("flaky", Status(429, retry_after=0.01), None, UPSTREAM_ERROR, "", 2),
    "500 every time": Fault("flaky", Status(500, retry_after=0.01), None, UPSTREAM_ERROR, "", 2),
    "stall before the first byte": Fault(
        "flaky",
        None,
        Stall(chunks=CHUNKS, before_headers=True, seconds=STALL_SECONDS),
        UPSTREAM_ERROR,
        "",
        1,
        closes_upstream=True,
    ),
    "stall past chunk_timeout": Fault(
        "flaky",
        None,
        Stall(chunks=CHUNKS, after_chunks=2, seconds=STALL_SECONDS),
        UPSTREAM_ERROR,
        BEFORE_FAULT,
        1,
        closes_upstream=True,
    ),
    "stall past the idle timeout": Fault(
        "patient",
        None,
        Stall(chunks=CHUNKS, after_chunks=2, seconds=STALL_SECONDS),
        TIMEOUT,
        BEFORE_FAULT,
        1,
        closes_upstream=True,
    ),
    "malformed chunk": Fault(
        "flaky", None, Malformed(chunks=CHUNKS, after_chunks=2), UPSTREAM_ERROR, BEFORE_FAULT, 1
    ),
    "abrupt close": Fault(
        "flaky", None, CloseAbruptly(chunks=CHUNKS, after_chunks=2), UPSTREAM_ERROR, BEFORE_FAULT, 1
    ),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_model_server_fault_fails_the_answer_with_its_partial_text(
    setup: Setup, fake: FakeOpenAI, fault: Fault
) -> None:
    server = setup.server
    if fault.default is not None:
        fake.default = fault.default
    if fault.first is not None:
        fake.enqueue(fault.first)
    chat_id = setup.chat(fault.provider, "fault")

    started = time.monotonic()
    streamed = server.stream(chat_id, "営業時間は?", agent_id=setup.agents[fault.provider])
    elapsed = time.monotonic() - started

    assert streamed.status == 200
    assert streamed.done
    assert streamed.raw.endswith(DONE)
    assert streamed.types[0] == "response.created"
    assert streamed.types[-1] == "response.error"
    assert "response.output_text.completed" not in streamed.types
    (error,) = streamed.of("response.error")
    assert error["code"] == fault.code, error
    assert error["message"]
    assert API_KEY.encode() not in streamed.raw
    text = "".join(event["delta"] for event in streamed.of("response.output_text.delta"))
    assert text == fault.partial
    # A timeout ended the stall, not the end of the stall.
    assert elapsed < STALL_SECONDS, elapsed
    assert len(fake.requests) == fault.requests
    if fault.closes_upstream:
        wait_for_upstream_disconnect(fake)

    stored = setup.assistant(chat_id)
    assert stored["meta"]["status"] == "failed"
    assert stored["content"] == fault.partial
    response_id = streamed.events[0]["response_id"]
    status = server.ok("GET", f"/api/v1/chats/{chat_id}/responses/{response_id}")
    assert status["status"] == "failed"
    assert status["error"]["code"] == fault.code
    assert status["final_text"] == fault.partial
    # A reader resuming from the start gets the same events, from the log.
    replay = server.api("GET", f"/api/v1/chats/{chat_id}/responses/{response_id}/events")
    assert replay.status_code == 200
    assert without_pings(replay.content) == without_pings(streamed.raw)

    setup.assert_healthy()


@pytest.mark.parametrize("code", [429, 500])
def test_a_model_server_error_then_success_is_retried_and_completes(
    setup: Setup, fake: FakeOpenAI, code: int
) -> None:
    server = setup.server
    fake.enqueue(Status(code, retry_after=0.01), Reply(chunks=CHUNKS))
    chat_id = setup.chat("flaky", "retried")

    streamed = server.stream(chat_id, "営業時間は?", agent_id=setup.agents["flaky"])

    assert streamed.done
    assert streamed.types[-1] == "response.output_text.completed"
    assert "response.error" not in streamed.types
    (completed,) = streamed.of("response.output_text.completed")
    assert completed["status"] == "completed"
    assert completed["final_text"] == ANSWER
    assert len(fake.requests) == 2
    stored = setup.assistant(chat_id)
    assert stored["meta"]["status"] == "completed"
    assert stored["content"] == ANSWER


# -- the server itself stops mid-answer ----------------------------------------------------------

SLOW_SCRIPT = {"answer": [{"text": "途中まで"}, {"delay": 60}, {"text": "終わり"}], "title": "停止"}
CHECKPOINT_INTERVAL = 0.1
PARTIAL = "途中まで"
SHUTDOWN_GRACE = 0.3


@dataclass
class Stopped:
    """A slow answer whose server process was stopped mid-answer, and a new process since."""

    chat_id: int
    response_id: str
    resume_token: str
    received: bytes
    """What the client read of the stream, up to the stop."""


class Lifecycle:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.agent_id: str = server.create_agent(
            name="slow", llm_model="scripted/slow", meta={"model_settings": {"script": SLOW_SCRIPT}}
        )["id"]

    def stop_mid_answer(self, sig: signal.Signals) -> Stopped:
        """Start the slow answer, send `sig` once its first delta arrived, read what comes until
        the connection ends (bounded), then start a new process on the same data directory."""
        server = self.server
        chat_id = int(server.create_chat("lifecycle", agent_id=self.agent_id)["id"])
        body = {"message": "ゆっくり答えてください", "agent_id": self.agent_id, "stream": True}
        received = b""
        with server.client.stream(
            "POST",
            f"/api/v1/chats/{chat_id}/messages",
            json=body,
            headers={"x-api-key": server.api_key},
        ) as response:
            response_id = response.headers["x-kaiwa-response-id"]
            pieces = response.iter_raw()
            for piece in pieces:
                received += piece
                if b"event: response.output_text.delta" in received:
                    break
            else:
                pytest.fail(f"the stream ended before its first delta: {received[-300:]!r}")
            if sig == signal.SIGKILL:
                time.sleep(CHECKPOINT_INTERVAL * 4)  # let a checkpoint store the text so far
            server.process.send_signal(sig)
            signalled = time.monotonic()
            try:
                for piece in pieces:
                    received += piece
                    assert time.monotonic() - signalled < 10, received[-300:]
            except httpx.HTTPError:
                pass  # a killed server leaves the chunked body unfinished
        server.process.wait(timeout=10)
        server.stop()  # the process is gone: this only drops the pooled connections
        server.start()
        _, created = _frame(without_pings(received).split(b"\n\n")[0])
        assert created["type"] == "response.created"
        return Stopped(chat_id, response_id, created["resume_token"], received)

    def status(self, stopped: Stopped) -> dict[str, Any]:
        path = f"/api/v1/chats/{stopped.chat_id}/responses/{stopped.response_id}"
        data: dict[str, Any] = self.server.ok("GET", path)
        return data

    def replay(self, stopped: Stopped, **headers: str) -> list[bytes]:
        """The events endpoint's frames, by resume token (no key), with `headers`."""
        path = f"/api/v1/chats/{stopped.chat_id}/responses/{stopped.response_id}/events"
        reply = self.server.client.get(
            path, params={"token": stopped.resume_token}, headers=headers
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
        *blocks, rest = without_pings(reply.content).split(b"\n\n")
        assert rest == b"", reply.content
        assert blocks[-1] == b"data: [DONE]", reply.content
        return blocks[:-1]

    def assistant(self, stopped: Stopped) -> dict[str, Any]:
        rows = self.server.messages(stopped.chat_id)
        assert [row["role"] for row in rows] == ["user", "assistant"], rows
        answer: dict[str, Any] = rows[1]
        return answer


@pytest.fixture(scope="module")
def lifecycle(kaiwa_launcher: Any) -> Iterator[Lifecycle]:
    server = kaiwa_launcher.start(
        "lifecycle",
        env={
            "KAIWA_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE),
            "KAIWA_PING_INTERVAL": "0.2",
            "KAIWA_CHECKPOINT_INTERVAL": str(CHECKPOINT_INTERVAL),
        },
    )
    try:
        yield Lifecycle(server)
    finally:
        server.stop()


def _frame(block: bytes) -> tuple[int, dict[str, Any]]:
    id_line, event_line, data_line = block.decode("utf-8").split("\n")
    event: dict[str, Any] = json.loads(data_line.removeprefix("data: "))
    assert event_line == f"event: {event['type']}", block
    return int(id_line.removeprefix("id: ")), event


@pytest.fixture(scope="module")
def after_sigterm(lifecycle: Lifecycle) -> Stopped:
    return lifecycle.stop_mid_answer(signal.SIGTERM)


def test_sigterm_mid_answer_ends_the_stream_cancelled_and_keeps_the_partial_answer(
    lifecycle: Lifecycle, after_sigterm: Stopped
) -> None:
    received = after_sigterm.received
    assert received.endswith(b"\n\n" + DONE), received[-300:]
    frames = without_pings(received).split(b"\n\n")[:-2]
    last_id, last = _frame(frames[-1])
    assert last_id == len(frames)
    assert last["type"] == "response.output_text.completed"
    assert last["status"] == "cancelled"
    assert last["final_text"] == PARTIAL

    # After a restart the events are gone; the stored outcome stands in for them.
    status = lifecycle.status(after_sigterm)
    assert status["status"] == "cancelled"
    assert status["final_text"] == PARTIAL
    stored = lifecycle.assistant(after_sigterm)
    assert stored["meta"]["status"] == "cancelled"
    assert stored["content"] == PARTIAL
    (block,) = lifecycle.replay(after_sigterm, **{"Last-Event-ID": str(last_id - 1)})
    replay_id, replayed = _frame(block)
    assert replay_id == last_id
    assert replayed["type"] == "response.output_text.completed"
    assert replayed["status"] == "cancelled"
    assert replayed["final_text"] == PARTIAL


def test_after_a_restart_a_cursor_at_the_last_event_gets_no_second_ending(
    lifecycle: Lifecycle, after_sigterm: Stopped
) -> None:
    frames = without_pings(after_sigterm.received).split(b"\n\n")[:-2]
    last_id, _ = _frame(frames[-1])
    # A client that read `completed` but lost the connection before `[DONE]` reconnects.
    replayed = lifecycle.replay(after_sigterm, **{"Last-Event-ID": str(last_id)})
    assert [_frame(block) for block in replayed] == []


def test_a_response_cut_by_sigkill_is_failed_after_restart(lifecycle: Lifecycle) -> None:
    stopped = lifecycle.stop_mid_answer(signal.SIGKILL)

    assert DONE not in stopped.received
    status = lifecycle.status(stopped)
    assert status["status"] == "failed"
    assert status["error"]["code"] == SERVER_ERROR
    assert status["finished_at"] is not None
    stored = lifecycle.assistant(stopped)
    assert stored["meta"]["status"] == "failed"
    assert stored["content"] == PARTIAL  # kept by a checkpoint before the kill
    # Numbered after the client's cursor, whatever it is; the resume token outlived the process.
    for headers, first_id in (({}, 1), ({"Last-Event-ID": "2"}, 3)):
        (block,) = lifecycle.replay(stopped, **headers)
        event_id, event = _frame(block)
        assert event_id == first_id
        assert event["type"] == "response.error"
        assert event["code"] == SERVER_ERROR
