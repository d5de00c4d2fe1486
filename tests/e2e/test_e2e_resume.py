"""Resume, disconnect and stop against a real server process (§3.3).

One kaiwa process serves the module. A `scripted` agent answers in many small pieces with short
pauses between them, long enough to lose the connection in the middle; a proxy on loopback cuts
the client's socket after a set number of bytes, usually in the middle of a frame. An `openai`
provider points at a fake OpenAI server that streams slowly, so that a test can see whether the
upstream request was closed when the answer is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.e2e.tcp_proxy import CuttingProxy
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest, Reply, Stall

PING_INTERVAL = 0.2
PIECES = [f"{n}番目の文です。" for n in range(1, 31)]
ANSWER = "".join(PIECES)
SCRIPT = {
    "answer": [item for piece in PIECES for item in ({"text": piece}, {"delay": 0.05})],
    "title": "再開の確認",
}
QUICK_SCRIPT = {"answer": [{"text": "短い答えです。"}], "title": "短い"}
# Past the headers, the first ping and response.created (with its resume token), a few deltas in,
# and not on a frame's boundary.
CUT_AFTER = 1_999
SLOW_CHUNKS = [f"第{n}節。" for n in range(1, 21)]
SLOW_DELAY = 0.15
DEADLINE = 15.0
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Frame:
    id: int
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event["type"])


@dataclass(frozen=True)
class Read:
    """What a client got of a stream: every whole frame, and whether `[DONE]` was among them."""

    raw: bytes
    frames: list[Frame]
    done: bool

    @classmethod
    def parse(cls, raw: bytes) -> Read:
        """Whole frames only: a block the cut left without its blank line is not an event yet."""
        *blocks, _unfinished = raw.split(b"\n\n")
        frames: list[Frame] = []
        done = False
        for block in blocks:
            assert not done, f"a frame after [DONE]: {block!r}"
            while block.startswith(b": ping\n"):  # keep-alives sit before a frame's fields
                block = block.removeprefix(b": ping\n")
            if block == b"data: [DONE]":
                done = True
                continue
            id_line, event_line, data_line = block.decode("utf-8").split("\n")
            assert id_line.startswith("id: "), block
            event = json.loads(data_line.removeprefix("data: "))
            assert event_line == f"event: {event['type']}", block
            frames.append(Frame(int(id_line[4:]), event))
        return cls(raw, frames, done)

    @property
    def ids(self) -> list[int]:
        return [frame.id for frame in self.frames]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [frame.event for frame in self.frames if frame.type == type_]

    @property
    def text(self) -> str:
        return "".join(event["delta"] for event in self.of("response.output_text.delta"))


@dataclass
class Setup:
    server: Any
    fake: FakeOpenAI
    scripted_agent: str
    quick_agent: str
    slow_agent: str

    def chat(self, agent_id: str, name: str) -> int:
        chat_id = int(self.server.create_chat(name, agent_id=agent_id)["id"])
        # Renamed by hand: no title is generated, so the fake sees only the answer's request.
        self.server.ok("PUT", f"/api/v1/chats/{chat_id}", json={"name": name})
        return chat_id

    def events(
        self, chat_id: int, response_id: str, *, headers: dict[str, str], **params: str
    ) -> Read:
        """Follow a response's events to the end (bounded)."""
        path = f"/api/v1/chats/{chat_id}/responses/{response_id}/events"
        with self.server.client.stream("GET", path, headers=headers, params=params) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            return Read.parse(read_to_end(response.iter_raw()))

    def status(self, chat_id: int, response_id: str) -> dict[str, Any]:
        path = f"/api/v1/chats/{chat_id}/responses/{response_id}"
        data: dict[str, Any] = self.server.ok("GET", path)
        return data

    def wait_finished(self, chat_id: int, response_id: str) -> dict[str, Any]:
        """Poll the status endpoint until the response has ended (bounded)."""
        ends_at = time.monotonic() + DEADLINE
        while (status := self.status(chat_id, response_id))["status"] == "in_progress":
            assert time.monotonic() < ends_at, f"still running after {DEADLINE:g} s: {status}"
            time.sleep(0.05)
        return status

    def assistant(self, chat_id: int) -> dict[str, Any]:
        rows = self.server.messages(chat_id)
        assert [row["role"] for row in rows] == ["user", "assistant"], rows
        answer: dict[str, Any] = rows[1]
        return answer


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Any) -> Iterator[Setup]:
    with FakeOpenAI(default=Reply(chunks=SLOW_CHUNKS, chunk_delay=SLOW_DELAY)) as fake:
        config = f'[providers.slow]\ntype = "openai"\nbase_url = "{fake.base_url}"\n'
        config += 'api_key = "sk-test"\n'
        server = kaiwa_launcher.start(
            "resume", config=config, env={"KAIWA_PING_INTERVAL": str(PING_INTERVAL)}
        )
        try:
            scripted = server.create_agent(
                name="scripted", llm_model="scripted/x", meta={"model_settings": {"script": SCRIPT}}
            )
            quick = server.create_agent(
                name="quick",
                llm_model="scripted/x",
                meta={"model_settings": {"script": QUICK_SCRIPT}},
            )
            slow = server.create_agent(name="slow", llm_model="slow/gpt-test")
            yield Setup(server, fake, scripted["id"], quick["id"], slow["id"])
        finally:
            server.stop()


@pytest.fixture
def fake(setup: Setup) -> FakeOpenAI:
    setup.fake.reset()
    return setup.fake


def read_to_end(pieces: Iterator[bytes]) -> bytes:
    """The rest of a body (`response.iter_raw()`) to its end, or to the cut; never longer than
    the deadline."""
    ends_at = time.monotonic() + DEADLINE
    raw = b""
    try:
        for piece in pieces:
            raw += piece
            assert time.monotonic() < ends_at, f"still open after {DEADLINE:g} s: {raw[-300:]!r}"
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the cut
    return raw


def read_until(pieces: Iterator[bytes], until: Callable[[Read], bool]) -> bytes:
    """A body (`response.iter_raw()`) up to the piece after which `until` holds (bounded)."""
    ends_at = time.monotonic() + DEADLINE
    raw = b""
    for piece in pieces:
        raw += piece
        if until(Read.parse(raw)):
            return raw
        assert time.monotonic() < ends_at, f"never happened: {raw[-300:]!r}"
    pytest.fail(f"the stream ended first: {raw[-300:]!r}")


def send(
    client: httpx.Client,
    setup: Setup,
    chat_id: int,
    agent_id: str,
    *,
    until: Callable[[Read], bool] | None = None,
    **options: Any,
) -> tuple[str, Read]:
    """Send a message with `stream: true`; read to the end, or only until `until` holds and
    then drop the connection. Returns the response id and what was read."""
    body = {"message": "長めに答えてください", "agent_id": agent_id, "stream": True, **options}
    headers = {"x-api-key": setup.server.api_key}
    path = f"/api/v1/chats/{chat_id}/messages"
    with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        response_id = response.headers["x-kaiwa-response-id"]
        pieces = response.iter_raw()
        raw = read_to_end(pieces) if until is None else read_until(pieces, until)
    # Leaving the block with the body unread closes the connection.
    return response_id, Read.parse(raw)


def deltas(count: int) -> Callable[[Read], bool]:
    return lambda read: len(read.of("response.output_text.delta")) >= count


def wait_for_upstream_request(fake: FakeOpenAI) -> None:
    """Until kaiwa has sent the fake a request (bounded)."""
    deadline = time.monotonic() + 5.0
    while not fake.requests:
        assert time.monotonic() < deadline, "kaiwa never called the model"
        time.sleep(0.005)


def wait_for_upstream_disconnect(fake: FakeOpenAI) -> RecordedRequest:
    """The first request to the fake that kaiwa closed before its end (bounded)."""

    async def wait() -> RecordedRequest:
        async with asyncio.timeout(5.0):
            return await fake.wait_for_disconnect()

    return asyncio.run(wait())


# -- a cut mid-stream, resumed with Last-Event-ID ------------------------------------------------


@dataclass(frozen=True)
class CutAndResumed:
    chat_id: int
    response_id: str
    before: Read
    after: Read


@pytest.fixture(scope="module")
def cut_and_resumed(setup: Setup) -> CutAndResumed:
    server = setup.server
    chat_id = setup.chat(setup.scripted_agent, "cut")
    with (
        CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy,
        httpx.Client(
            base_url=f"http://127.0.0.1:{proxy.port}", timeout=10.0, trust_env=False
        ) as client,
    ):
        response_id, before = send(client, setup, chat_id, setup.scripted_agent)
        assert proxy.cut.is_set(), "the stream ended before the proxy cut it"
    last_id = before.ids[-1]
    after = setup.events(
        chat_id,
        response_id,
        headers={"x-api-key": server.api_key, "Last-Event-ID": str(last_id)},
    )
    return CutAndResumed(chat_id, response_id, before, after)


def test_resume_after_a_cut_mid_stream_has_no_gap_and_no_duplicate(
    cut_and_resumed: CutAndResumed,
) -> None:
    before, after = cut_and_resumed.before, cut_and_resumed.after
    # The cut came in the middle of the answer, and in the middle of a frame.
    assert not before.done
    assert before.frames[0].type == "response.created"
    assert 1 <= len(before.of("response.output_text.delta")) < len(PIECES) // 2
    assert not before.raw.endswith(b"\n\n"), before.raw[-200:]

    assert after.done
    assert after.raw.endswith(DONE)
    ids = before.ids + after.ids
    assert ids == list(range(1, len(ids) + 1))
    events = [frame.event for frame in before.frames + after.frames]
    assert all(event["response_id"] == cut_and_resumed.response_id for event in events)
    assert after.frames[-1].type == "response.output_text.completed"
    (completed,) = after.of("response.output_text.completed")
    assert completed["status"] == "completed"
    joined = before.text + after.text
    assert joined == ANSWER
    assert completed["final_text"] == joined


def test_a_dropped_stream_does_not_stop_the_answer_by_default(
    setup: Setup, cut_and_resumed: CutAndResumed
) -> None:
    status = setup.wait_finished(cut_and_resumed.chat_id, cut_and_resumed.response_id)
    assert status["status"] == "completed"
    assert status["final_text"] == ANSWER
    stored = setup.assistant(cut_and_resumed.chat_id)
    assert stored["meta"]["status"] == "completed"
    assert stored["content"] == ANSWER


def test_every_cursor_form_resumes_at_the_same_place(
    setup: Setup, cut_and_resumed: CutAndResumed
) -> None:
    chat_id, response_id = cut_and_resumed.chat_id, cut_and_resumed.response_id
    cursor = str(cut_and_resumed.before.ids[-1])
    (created,) = cut_and_resumed.before.of("response.created")
    key = {"x-api-key": setup.server.api_key}

    by_query = setup.events(chat_id, response_id, headers=key, after=cursor)
    # What an EventSource opened with the token sends when it reconnects.
    by_token = setup.events(
        chat_id, response_id, headers={"Last-Event-ID": cursor}, token=created["resume_token"]
    )
    at_the_end = setup.events(
        chat_id, response_id, headers={**key, "Last-Event-ID": str(cut_and_resumed.after.ids[-1])}
    )

    assert by_query.done
    assert by_query.frames == cut_and_resumed.after.frames
    assert by_token.done
    assert by_token.frames == cut_and_resumed.after.frames
    assert at_the_end.done
    assert at_the_end.frames == []


# -- reload: a new page resumes from the start with the resume token -----------------------------


def test_reload_resumes_from_the_start_with_the_resume_token_alone(setup: Setup) -> None:
    server = setup.server
    chat_id = setup.chat(setup.scripted_agent, "reload")
    response_id, first = send(
        server.client,
        setup,
        chat_id,
        setup.scripted_agent,
        until=lambda read: bool(read.frames),
    )
    (created,) = first.of("response.created")
    assert created["response_id"] == response_id
    token = created["resume_token"]
    assert token

    # The page is gone; no reader is attached, and the answer goes on all the same.
    assert setup.status(chat_id, response_id)["status"] == "in_progress"
    status = setup.wait_finished(chat_id, response_id)
    assert status["status"] == "completed"

    # What a reloaded page (an EventSource) does: no key header, no cursor, only the token.
    by_token = setup.events(chat_id, response_id, headers={}, token=token)
    with_key = setup.events(chat_id, response_id, headers={"x-api-key": server.api_key})

    assert by_token.done
    assert by_token.ids == list(range(1, len(by_token.ids) + 1))
    assert by_token.frames[0].event == created
    assert by_token.frames == with_key.frames
    (completed,) = by_token.of("response.output_text.completed")
    assert completed["status"] == "completed"
    assert completed["final_text"] == by_token.text == ANSWER


def test_a_resume_token_is_refused_for_another_response(setup: Setup) -> None:
    server = setup.server
    chat_id = setup.chat(setup.quick_agent, "token scope")
    first_id, first = send(server.client, setup, chat_id, setup.quick_agent)
    assert first.done
    other_chat = setup.chat(setup.quick_agent, "token scope 2")
    other_id, _ = send(server.client, setup, other_chat, setup.quick_agent)
    (created,) = first.of("response.created")

    path = f"/api/v1/chats/{other_chat}/responses/{other_id}/events"
    refused = server.client.get(path, params={"token": created["resume_token"]})

    assert refused.status_code in (401, 403), refused.text
    assert refused.json()["error_code"] == 10001
    assert first_id != other_id


# -- on_disconnect=cancel and the stop endpoint, with a slow upstream model ------------------------


def test_on_disconnect_cancel_closes_upstream_and_keeps_the_partial_answer(
    setup: Setup, fake: FakeOpenAI
) -> None:
    server = setup.server
    chat_id = setup.chat(setup.slow_agent, "disconnect cancel")
    response_id, seen = send(
        server.client,
        setup,
        chat_id,
        setup.slow_agent,
        until=deltas(2),
        on_disconnect="cancel",
    )
    assert not seen.done

    wait_for_upstream_disconnect(fake)
    assert len(fake.requests) == 1
    status = setup.wait_finished(chat_id, response_id)
    assert status["status"] == "cancelled"

    stored = setup.assistant(chat_id)
    assert stored["meta"]["status"] == "cancelled"
    partial = stored["content"]
    assert partial.startswith(seen.text)
    assert "".join(SLOW_CHUNKS).startswith(partial)
    assert len(partial) < len("".join(SLOW_CHUNKS))
    assert status["final_text"] == partial

    resumed = setup.events(chat_id, response_id, headers={"x-api-key": server.api_key})
    assert resumed.done
    assert resumed.frames[-1].type == "response.output_text.completed"
    (completed,) = resumed.of("response.output_text.completed")
    assert completed["status"] == "cancelled"
    assert completed["final_text"] == partial == resumed.text


def test_stop_ends_the_open_stream_as_cancelled_and_closes_upstream(
    setup: Setup, fake: FakeOpenAI
) -> None:
    server = setup.server
    chat_id = setup.chat(setup.slow_agent, "stop")
    body = {"message": "止めてください", "agent_id": setup.slow_agent, "stream": True}
    path = f"/api/v1/chats/{chat_id}/messages"
    with server.client.stream(
        "POST", path, json=body, headers={"x-api-key": server.api_key}
    ) as response:
        response_id = response.headers["x-kaiwa-response-id"]
        pieces = response.iter_raw()
        raw = read_until(pieces, deltas(2))
        stopped = server.ok("POST", f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel")
        raw += read_to_end(pieces)
    read = Read.parse(raw)

    assert stopped["status"] == "cancelled"
    assert read.done
    assert raw.endswith(DONE)
    assert read.ids == list(range(1, len(read.ids) + 1))
    assert read.frames[-1].type == "response.output_text.completed"
    (completed,) = read.of("response.output_text.completed")
    assert completed["status"] == "cancelled"
    assert completed["final_text"] == read.text == stopped["final_text"]
    assert len(read.text) < len("".join(SLOW_CHUNKS))
    wait_for_upstream_disconnect(fake)
    stored = setup.assistant(chat_id)
    assert stored["meta"]["status"] == "cancelled"
    assert stored["content"] == read.text

    # Idempotent: a second stop changes nothing.
    again = server.ok("POST", f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel")
    assert again["status"] == "cancelled"
    assert again["final_text"] == read.text


def test_stop_while_waiting_for_the_first_byte_closes_upstream(
    setup: Setup, fake: FakeOpenAI
) -> None:
    server = setup.server
    fake.enqueue(Stall(chunks=SLOW_CHUNKS, before_headers=True, seconds=DEADLINE))
    chat_id = setup.chat(setup.slow_agent, "stop early")
    body = {"message": "止めてください", "agent_id": setup.slow_agent, "stream": True}
    with server.client.stream(
        "POST",
        f"/api/v1/chats/{chat_id}/messages",
        json=body,
        headers={"x-api-key": server.api_key},
    ) as response:
        response_id = response.headers["x-kaiwa-response-id"]
        pieces = response.iter_raw()
        raw = read_until(pieces, lambda read: bool(read.frames))
        # `response.created` leaves before the producer starts: stop once the model is asked.
        wait_for_upstream_request(fake)
        stopped = server.ok("POST", f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel")
        raw += read_to_end(pieces)
    read = Read.parse(raw)

    assert stopped["status"] == "cancelled"
    assert read.done
    assert [frame.type for frame in read.frames] == [
        "response.created",
        "response.output_text.completed",
    ]
    assert read.frames[-1].event["status"] == "cancelled"
    assert read.frames[-1].event["final_text"] == ""
    wait_for_upstream_disconnect(fake)
    assert setup.assistant(chat_id)["meta"]["status"] == "cancelled"


def test_interrupting_a_running_answer_ends_its_stream_with_10010(
    setup: Setup, fake: FakeOpenAI
) -> None:
    server = setup.server
    fake.enqueue(
        Reply(chunks=SLOW_CHUNKS, chunk_delay=SLOW_DELAY), Reply(chunks=["割り込み後の", "答え。"])
    )
    chat_id = setup.chat(setup.slow_agent, "interrupt")
    body = {"message": "長い質問", "agent_id": setup.slow_agent, "stream": True}
    path = f"/api/v1/chats/{chat_id}/messages"
    with server.client.stream(
        "POST", path, json=body, headers={"x-api-key": server.api_key}
    ) as response:
        pieces = response.iter_raw()
        raw = read_until(pieces, deltas(2))
        busy = server.api("POST", path, json={**body, "message": "次の質問"})
        second = server.stream(chat_id, "次の質問", agent_id=setup.slow_agent, if_busy="interrupt")
        raw += read_to_end(pieces)
    first = Read.parse(raw)

    assert busy.status_code == 409
    assert busy.json()["error_code"] == 10004
    assert first.done
    assert first.frames[-1].type == "response.error"
    assert first.frames[-1].event["code"] == 10010
    assert second.done
    assert second.types[-1] == "response.output_text.completed"
    assert second.events[-1]["final_text"] == "割り込み後の答え。"
    assert wait_for_upstream_disconnect(fake) is fake.requests[0]
    rows = server.messages(chat_id)
    assert [row["role"] for row in rows] == ["user", "assistant", "user", "assistant"]
    assert rows[1]["meta"]["status"] == "cancelled"
    assert rows[1]["content"] == first.text
    assert rows[3]["meta"]["status"] == "completed"
