"""`kaiwa.client` against a real `kaiwa serve` process: the documented usage word for word, on the
demo agent in Japanese; non-stream send and regenerate; `stream.cancel()`; a connection cut
mid-answer by a proxy, after which the caller still gets every event exactly once; a form asked
for and answered; an uploaded file attached to a message; a knowledge base searched; a batch run
in the background and another cancelled. Each test has its sync and async twin, side by side.

The cut: the client's base URL is a `CuttingProxy`, which kills the connection after a set number
of bytes, usually inside a frame. The proxy counts every connection's bytes together, so it would
also kill the reconnection; a small transport sends the reconnection (the events endpoint)
straight to the server instead: the network path failed once, then healed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.tcp_proxy import CuttingProxy

from kaiwa.client import (
    APIConnectionError,
    AsyncClient,
    AsyncStream,
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    ResumePolicy,
    Stream,
)
from kaiwa.protocol import (
    ChatTitleUpdated,
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ReasoningStepEnd,
    ResponseCreated,
)
from kaiwa.protocol.errors import FieldError

JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
PIECES = [f"{n}番目の文です。" for n in range(1, 31)]
ANSWER = "".join(PIECES)
LONG_SCRIPT = {
    "answer": [item for piece in PIECES for item in ({"text": piece}, {"delay": 0.05})],
    "title": "再開の確認",
}
QUICK_ANSWER = "短い答えです。"
QUICK_SCRIPT = {"answer": [{"text": "短い"}, {"text": "答えです。"}], "title": "短い"}
FIRST_PART = "最初の部分。"
SLOW_SCRIPT = {"answer": [{"text": FIRST_PART}, *[{"delay": 0.5}] * 20, {"text": "届かない"}]}
# Past the headers, the first ping and response.created (with its resume token), a few deltas
# in, and not on a frame's boundary.
CUT_AFTER = 1_999
FAST_RESUME = ResumePolicy(attempts=3, backoff=0.05)
DEADLINE = 15.0
FORM_SCHEMA = {
    "title": "予約",
    "fields": [
        {"name": "name", "label": "お名前", "type": "shortText", "required": True},
        {"name": "count", "label": "人数", "type": "number", "required": True},
        {"name": "day", "label": "日付", "type": "date"},
    ],
}
FORM_THANKS = "ご記入ありがとうございます"
NOTE = "配送について。ご注文から3営業日以内に発送します。離島は追加で2日かかります。"
HOURS = "当店の営業時間は平日の10時から18時までです。土曜日は11時から17時まで営業しています。"
PRICES = "Proプランの価格は月額2,000円です。年払いにすると2か月分が無料になります。"


@dataclass
class Setup:
    server: Any
    long_agent: str
    slow_agent: str
    quick_agent: str
    form_agent: str
    """The built-in model with a `request_form` tool: it asks for the form first, once per chat."""
    lookup_agent: str

    @property
    def key(self) -> str:
        return str(self.server.api_key)

    @property
    def demo_agent(self) -> str:
        return str(self.server.agent_id)


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Any) -> Iterator[Setup]:
    env = {"KAIWA_PING_INTERVAL": "0.2", "KAIWA_EMBEDDINGS__PROVIDER": "none"}
    server = kaiwa_launcher.start("client", env=env)
    try:
        long = server.create_agent(
            name="long", llm_model="scripted/x", meta={"model_settings": {"script": LONG_SCRIPT}}
        )
        slow = server.create_agent(
            name="slow", llm_model="scripted/x", meta={"model_settings": {"script": SLOW_SCRIPT}}
        )
        quick = server.create_agent(
            name="quick", llm_model="scripted/x", meta={"model_settings": {"script": QUICK_SCRIPT}}
        )
        form = server.create_agent(
            name="予約",
            llm_model="builtin/extractive",
            unified_tools=[{"type": "request_form", "custom_form_schema": FORM_SCHEMA}],
        )
        lookup = server.create_agent(
            name="clerk", llm_model="builtin/extractive", unified_tools=[{"type": "lookup"}]
        )
        yield Setup(server, long["id"], slow["id"], quick["id"], form["id"], lookup["id"])
    finally:
        server.stop()


def stored_answer(client: Client, chat_id: int) -> str:
    """The content of the chat's last assistant message, once its response has ended."""
    ends_at = time.monotonic() + DEADLINE
    while True:
        rows = client.messages.list(chat_id).items
        last = [row for row in rows if row.role == "assistant"][-1]
        if last.meta.status != "in_progress":
            return last.content
        assert time.monotonic() < ends_at, f"still running after {DEADLINE:g} s"
        time.sleep(0.05)


def check_answer(events: list[Event], text: str) -> None:
    assert all(not isinstance(event, dict) for event in events)
    assert isinstance(events[0], ResponseCreated)
    assert isinstance(events[-1], OutputTextCompleted)
    deltas = "".join(event.delta for event in events if isinstance(event, OutputTextDelta))
    assert deltas == text == events[-1].final_text
    assert JAPANESE.search(text), text


# -- the documented usage, word for word -----------------------------------------------------------


def test_the_documented_usage_works_on_the_demo_agent(setup: Setup) -> None:
    KEY, AGENT = setup.key, setup.demo_agent
    events: list[Event] = []

    client = Client(base_url=setup.server.base_url, api_key=KEY)
    chat = client.chats.create(name="support", agent_id=AGENT)
    with client.messages.stream(chat.id, message="営業時間は?", agent_id=AGENT) as stream:
        for event in stream:  # typed events from kaiwa.protocol, never dicts
            events.append(event)
        text = stream.final_text()
    second = client.messages.send(chat.id, message="何時まで開いていますか?", agent_id=AGENT)
    rows = client.messages.list(chat.id).items
    client.close()

    check_answer(events, text)
    assert any(isinstance(event, ChatTitleUpdated) for event in events)
    assert isinstance(second, str)
    assert JAPANESE.search(second), second
    assert [row.role for row in rows] == ["user", "assistant", "user", "assistant"]
    assert [rows[1].content, rows[3].content] == [text, second]


async def test_the_documented_usage_works_on_the_demo_agent_async(setup: Setup) -> None:
    KEY, AGENT = setup.key, setup.demo_agent
    events: list[Event] = []

    client = AsyncClient(base_url=setup.server.base_url, api_key=KEY)
    chat = await client.chats.create(name="support", agent_id=AGENT)
    async with client.messages.stream(chat.id, message="営業時間は?", agent_id=AGENT) as stream:
        async for event in stream:  # typed events from kaiwa.protocol, never dicts
            events.append(event)
        text = await stream.final_text()
    second = await client.messages.send(chat.id, message="何時まで開いていますか?", agent_id=AGENT)
    rows = (await client.messages.list(chat.id)).items
    await client.close()

    check_answer(events, text)
    assert any(isinstance(event, ChatTitleUpdated) for event in events)
    assert isinstance(second, str)
    assert JAPANESE.search(second), second
    assert [row.role for row in rows] == ["user", "assistant", "user", "assistant"]
    assert [rows[1].content, rows[3].content] == [text, second]


# -- regenerate --------------------------------------------------------------------------------


def test_regenerate_answers_again_and_keeps_the_old_answer(setup: Setup) -> None:
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = client.chats.create(name="regenerate", agent_id=setup.quick_agent)
        first = client.messages.send(chat.id, "短く答えてください", agent_id=setup.quick_agent)
        again = client.messages.regenerate(chat.id, agent_id=setup.quick_agent)
        with client.messages.stream_regenerate(chat.id, agent_id=setup.quick_agent) as stream:
            third = stream.final_text()
        rows = list(client.messages.iter_all(chat.id))

    assert first == again == third == QUICK_ANSWER
    answers = [row for row in rows if row.role == "assistant"]
    assert [row.meta.superseded for row in answers] == [True, True, False]
    assert [row.role for row in rows].count("user") == 1


async def test_regenerate_answers_again_and_keeps_the_old_answer_async(setup: Setup) -> None:
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = await client.chats.create(name="regenerate", agent_id=setup.quick_agent)
        first = await client.messages.send(
            chat.id, "短く答えてください", agent_id=setup.quick_agent
        )
        again = await client.messages.regenerate(chat.id, agent_id=setup.quick_agent)
        async with client.messages.stream_regenerate(chat.id, agent_id=setup.quick_agent) as stream:
            third = await stream.final_text()
        rows = [row async for row in client.messages.iter_all(chat.id)]

    assert first == again == third == QUICK_ANSWER
    answers = [row for row in rows if row.role == "assistant"]
    assert [row.meta.superseded for row in answers] == [True, True, False]
    assert [row.role for row in rows].count("user") == 1


# -- idempotency keys --------------------------------------------------------------------------


def test_every_send_has_its_own_key_and_a_repeated_key_answers_once(setup: Setup) -> None:
    agent = setup.quick_agent
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = client.chats.create(name="idempotent", agent_id=agent)
        # The same message twice without a key of the caller's: two turns.
        client.messages.send(chat.id, "同じ質問", agent_id=agent)
        client.messages.send(chat.id, "同じ質問", agent_id=agent)
        # With one key of the caller's, repeated: one turn, the same answer.
        first = client.messages.send(chat.id, "一度だけ", agent_id=agent, idempotency_key="k1")
        with client.messages.stream(
            chat.id, "一度だけ", agent_id=agent, idempotency_key="k1-stream"
        ) as stream:
            streamed = stream.final_text()
        again = client.messages.send(chat.id, "一度だけ", agent_id=agent, idempotency_key="k1")
        with client.messages.stream(
            chat.id, "一度だけ", agent_id=agent, idempotency_key="k1-stream"
        ) as replay:
            replayed = replay.final_text()
        with pytest.raises(ConflictError, match="different request"):
            client.messages.send(chat.id, "別の質問", agent_id=agent, idempotency_key="k1")
        rows = list(client.messages.iter_all(chat.id))
    assert first == again == streamed == replayed == QUICK_ANSWER
    assert [row.content for row in rows if row.role == "user"] == [
        "同じ質問",
        "同じ質問",
        "一度だけ",
        "一度だけ",
    ]


async def test_every_send_has_its_own_key_and_a_repeated_key_answers_once_async(
    setup: Setup,
) -> None:
    agent = setup.quick_agent
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = await client.chats.create(name="idempotent", agent_id=agent)
        await client.messages.send(chat.id, "同じ質問", agent_id=agent)
        await client.messages.send(chat.id, "同じ質問", agent_id=agent)
        first = await client.messages.send(
            chat.id, "一度だけ", agent_id=agent, idempotency_key="k2"
        )
        again = await client.messages.send(
            chat.id, "一度だけ", agent_id=agent, idempotency_key="k2"
        )
        batch = {"agent_id": agent, "requests": [{"custom_id": "a", "message": "q"}]}
        one = await client.batches.create(**batch, idempotency_key="b2")  # type: ignore[arg-type]
        two = await client.batches.create(**batch, idempotency_key="b2")  # type: ignore[arg-type]
        rows = [row async for row in client.messages.iter_all(chat.id)]
    assert first == again == QUICK_ANSWER
    assert one.id == two.id
    assert [row.content for row in rows if row.role == "user"] == [
        "同じ質問",
        "同じ質問",
        "一度だけ",
    ]


# -- stream.cancel() ---------------------------------------------------------------------------


def test_stream_cancel_stops_the_answer_and_the_stream_ends_cancelled(setup: Setup) -> None:
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = client.chats.create(name="cancel", agent_id=setup.slow_agent)
        started = time.monotonic()
        with client.messages.stream(chat.id, "ゆっくり", agent_id=setup.slow_agent) as stream:
            for event in stream:
                if isinstance(event, OutputTextDelta):
                    status = stream.cancel()
                    break
            text = stream.final_text()
        stored = stored_answer(client, chat.id)
        after = client.responses.status(chat.id, str(stream.response_id))

    assert time.monotonic() - started < 8, "the answer was stopped, not waited out"
    assert status.id == stream.response_id
    assert text == FIRST_PART == stored
    assert stream.state.status == "cancelled"
    assert after.status == "cancelled"


async def test_stream_cancel_stops_the_answer_and_the_stream_ends_cancelled_async(
    setup: Setup,
) -> None:
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = await client.chats.create(name="cancel", agent_id=setup.slow_agent)
        started = time.monotonic()
        async with client.messages.stream(chat.id, "ゆっくり", agent_id=setup.slow_agent) as stream:
            async for event in stream:
                if isinstance(event, OutputTextDelta):
                    status = await stream.cancel()
                    break
            text = await stream.final_text()
        after = await client.responses.status(chat.id, str(stream.response_id))
    with Client(base_url=setup.server.base_url, api_key=setup.key) as sync_client:
        stored = await asyncio.to_thread(stored_answer, sync_client, chat.id)

    assert time.monotonic() - started < 8, "the answer was stopped, not waited out"
    assert status.id == stream.response_id
    assert text == FIRST_PART == stored
    assert stream.state.status == "cancelled"
    assert after.status == "cancelled"


# -- a connection cut mid-answer -----------------------------------------------------------------


class Healed(httpx.HTTPTransport):
    """Sends the events endpoint (the reconnection) straight to the server, not via the proxy."""

    def __init__(self, server_port: int) -> None:
        super().__init__()
        self.server_port = server_port
        self.reconnections: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            request.url = request.url.copy_with(port=self.server_port)
            self.reconnections.append(request)
        return super().handle_request(request)


class AsyncHealed(httpx.AsyncHTTPTransport):
    """`Healed`, for `AsyncClient`."""

    def __init__(self, server_port: int) -> None:
        super().__init__()
        self.server_port = server_port
        self.reconnections: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            request.url = request.url.copy_with(port=self.server_port)
            self.reconnections.append(request)
        return await super().handle_async_request(request)


def check_whole_once(seen: list[tuple[int | None, Event]], text: str, stored: str) -> None:
    ids = [event_id for event_id, _ in seen]
    assert ids == list(range(1, len(seen) + 1)), ids
    events = [event for _, event in seen]
    assert isinstance(events[0], ResponseCreated)
    completed = events[-1]
    assert isinstance(completed, OutputTextCompleted)
    assert completed.status == "completed"
    deltas = [event.delta for event in events if isinstance(event, OutputTextDelta)]
    assert deltas == PIECES, "every delta exactly once, in order"
    assert text == completed.final_text == stored == ANSWER


def test_a_cut_mid_answer_is_resumed_and_every_event_arrives_once(setup: Setup) -> None:
    server = setup.server
    seen: list[tuple[int | None, Event]] = []
    transport = Healed(server.port)
    with CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy:
        client = Client(
            base_url=f"http://127.0.0.1:{proxy.port}",
            api_key=setup.key,
            resume=FAST_RESUME,
            transport=transport,
        )
        with client:
            chat = client.chats.create(name="cut", agent_id=setup.long_agent)
            with client.messages.stream(chat.id, "長めに", agent_id=setup.long_agent) as stream:
                for event in stream:
                    seen.append((stream.last_event_id, event))
                text = stream.final_text()
            assert proxy.cut.is_set(), "the stream ended before the proxy cut it"
    with Client(base_url=server.base_url, api_key=setup.key) as direct:
        stored = stored_answer(direct, chat.id)

    check_whole_once(seen, text, stored)
    (reconnection,) = transport.reconnections
    cursor = int(reconnection.headers["last-event-id"])
    assert 1 <= cursor < len(seen) // 2, "the cut came in the middle of the answer"


async def test_a_cut_mid_answer_is_resumed_and_every_event_arrives_once_async(
    setup: Setup,
) -> None:
    server = setup.server
    seen: list[tuple[int | None, Event]] = []
    transport = AsyncHealed(server.port)
    with CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy:
        async with AsyncClient(
            base_url=f"http://127.0.0.1:{proxy.port}",
            api_key=setup.key,
            resume=FAST_RESUME,
            transport=transport,
        ) as client:
            chat = await client.chats.create(name="cut", agent_id=setup.long_agent)
            stream = client.messages.stream(chat.id, "長めに", agent_id=setup.long_agent)
            async with stream:
                async for event in stream:
                    seen.append((stream.last_event_id, event))
                text = await stream.final_text()
            assert proxy.cut.is_set(), "the stream ended before the proxy cut it"
    with Client(base_url=server.base_url, api_key=setup.key) as direct:
        stored = await asyncio.to_thread(stored_answer, direct, chat.id)

    check_whole_once(seen, text, stored)
    (reconnection,) = transport.reconnections
    cursor = int(reconnection.headers["last-event-id"])
    assert 1 <= cursor < len(seen) // 2, "the cut came in the middle of the answer"


def read_into(seen: list[Event], stream: Stream) -> None:
    for event in stream:
        seen.append(event)


async def read_into_async(seen: list[Event], stream: AsyncStream) -> None:
    async for event in stream:
        seen.append(event)


def test_when_every_reconnection_is_cut_the_stream_gives_up(setup: Setup) -> None:
    server = setup.server
    seen: list[Event] = []
    with CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy:
        client = Client(
            base_url=f"http://127.0.0.1:{proxy.port}", api_key=setup.key, resume=FAST_RESUME
        )
        with Client(base_url=server.base_url, api_key=setup.key) as direct:
            chat = direct.chats.create(name="gives up", agent_id=setup.long_agent)
        stream = client.messages.stream(chat.id, "長めに", agent_id=setup.long_agent)
        with client, stream, pytest.raises(APIConnectionError, match="3 attempts"):
            read_into(seen, stream)

    assert seen, "what arrived before the cut was handed out"
    assert stream.last_event_id == len(seen)
    # The answer itself went on: a later reader gets all of it.
    with Client(base_url=server.base_url, api_key=setup.key) as direct:
        assert stored_answer(direct, chat.id) == ANSWER
        with direct.responses.stream(
            chat.id, str(stream.response_id), after=stream.last_event_id
        ) as rest:
            assert rest.final_text() == ANSWER


async def test_when_every_reconnection_is_cut_the_stream_gives_up_async(setup: Setup) -> None:
    server = setup.server
    seen: list[Event] = []
    with CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy:
        async with AsyncClient(base_url=server.base_url, api_key=setup.key) as direct:
            chat = await direct.chats.create(name="gives up", agent_id=setup.long_agent)
        async with AsyncClient(
            base_url=f"http://127.0.0.1:{proxy.port}", api_key=setup.key, resume=FAST_RESUME
        ) as client:
            stream = client.messages.stream(chat.id, "長めに", agent_id=setup.long_agent)
            async with stream:
                with pytest.raises(APIConnectionError, match="3 attempts"):
                    await read_into_async(seen, stream)

    assert seen, "what arrived before the cut was handed out"
    assert stream.last_event_id == len(seen)
    async with AsyncClient(base_url=server.base_url, api_key=setup.key) as direct:
        rest = direct.responses.stream(chat.id, str(stream.response_id), after=stream.last_event_id)
        async with rest:
            assert await rest.final_text() == ANSWER


# -- forms -----------------------------------------------------------------------------------------


def test_a_form_is_asked_for_then_answered_and_the_turn_goes_on(setup: Setup) -> None:
    agent = setup.form_agent
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = client.chats.create(name="form", agent_id=agent)
        with client.messages.stream(chat.id, "予約をお願いします", agent_id=agent) as stream:
            asked = stream.final_text()
        form = stream.form_request()
        assert form is not None
        with pytest.raises(BadRequestError) as refused:
            client.forms.submit(chat.id, form.id, {"name": "山田", "count": "two"})
        assert refused.value.errors == (FieldError(field="count", reason="type"),)
        with client.forms.stream(
            chat.id, form.id, {"name": "山田", "count": 2, "day": "2025-04-01"}
        ) as rest:
            events = list(rest)
            text = rest.final_text()
        with pytest.raises(ConflictError):
            client.forms.submit(chat.id, form.id, {"name": "山田", "count": 2})
        rows = client.messages.list(chat.id).items

    assert stream.state.status == "awaiting_form"
    assert (form.title, [field.name for field in form.fields]) == ("予約", ["name", "count", "day"])
    assert (form.fields[1].type, form.fields[1].required) == ("number", True)
    assert refused.value.message.startswith("values.count:")
    assert isinstance(events[0], ResponseCreated)
    assert events[0].response_id != stream.response_id, "the rest is a new response"
    step_end = events[1]
    assert isinstance(step_end, ReasoningStepEnd)
    assert step_end.step.id == form.step_id
    assert step_end.step.result.data == {"name": "山田", "count": 2, "day": "2025-04-01"}
    assert FORM_THANKS in text
    assert rest.form_request() is None
    assert [row.role for row in rows] == ["user", "assistant", "assistant"]
    assert [row.content for row in rows[1:]] == [asked, text]
    assert rows[2].meta.status == "completed"


async def test_a_form_is_asked_for_then_answered_and_the_turn_goes_on_async(setup: Setup) -> None:
    agent = setup.form_agent
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = await client.chats.create(name="form", agent_id=agent)
        async with client.messages.stream(chat.id, "予約をお願いします", agent_id=agent) as stream:
            await stream.final_text()
        form = stream.form_request()
        assert form is not None
        with pytest.raises(BadRequestError) as refused:
            await client.forms.submit(chat.id, form.id, {"count": 2})
        assert refused.value.errors == (FieldError(field="name", reason="required"),)
        text = await client.forms.submit(chat.id, form.id, {"name": "山田", "count": 2.5})
        with pytest.raises(ConflictError):
            await client.forms.submit(chat.id, form.id, {"name": "山田", "count": 2})

    assert refused.value.message.startswith("values.name:")
    assert FORM_THANKS in text


# -- uploads ---------------------------------------------------------------------------------------


def test_an_uploaded_file_is_attached_and_read_by_the_lookup_tool(
    setup: Setup, tmp_path: Path
) -> None:
    agent = setup.lookup_agent
    path = tmp_path / "配送メモ.txt"
    path.write_text(NOTE, encoding="utf-8")
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        uploaded = client.files.upload(path)
        chat = client.chats.create(name="upload", agent_id=agent)
        with client.messages.stream(
            chat.id,
            "離島への配送は何日かかりますか",
            agent_id=agent,
            attached_file_uuids=[uploaded.uuid],
        ) as stream:
            text = stream.final_text()
        user = client.messages.list(chat.id).items[0]
        downloaded = client.files.download(uploaded.uuid)

    assert (uploaded.original_name, uploaded.content_type) == ("配送メモ.txt", "text/plain")
    assert (uploaded.size, uploaded.scope) == (len(NOTE.encode()), "persistent")
    (step,) = stream.state.steps
    assert step["type"] == "consultant_lookup"
    assert step["result"]["data"]["results"][0]["id"] == uploaded.uuid
    assert "離島は追加で2日かかります" in text
    assert [file.uuid for file in user.attached_files] == [uploaded.uuid]
    assert user.attached_files[0].original_name == "配送メモ.txt"
    assert downloaded == NOTE.encode()


async def test_an_uploaded_file_is_attached_and_read_by_the_lookup_tool_async(
    setup: Setup,
) -> None:
    agent = setup.lookup_agent
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        uploaded = await client.files.upload(NOTE.encode(), filename="配送.txt", scope="ephemeral")
        chat = await client.chats.create(name="upload", agent_id=agent)
        text = await client.messages.send(
            chat.id,
            "離島への配送は何日かかりますか",
            agent_id=agent,
            attached_file_uuids=[uploaded.uuid],
        )
        downloaded = await client.files.download(uploaded.uuid)
        with pytest.raises(NotFoundError):
            await client.files.download("00000000-0000-4000-8000-000000000000")

    assert uploaded.scope == "ephemeral"
    assert uploaded.expires_at is not None
    assert "離島は追加で2日かかります" in text
    assert downloaded == NOTE.encode()


# -- knowledge bases -------------------------------------------------------------------------------


def test_a_knowledge_base_is_filled_searched_and_deleted(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "料金.md"
    path.write_text("# 料金\n\n" + PRICES, encoding="utf-8")
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        kb = client.knowledge_bases.create(name="FAQ", description="よくある質問")
        hours = client.knowledge_bases.documents.add_text(kb.id, HOURS, title="営業時間")
        prices = client.knowledge_bases.documents.upload(kb.id, path, title="料金")
        accepted = (hours.status, prices.status)
        hours = client.knowledge_bases.documents.wait_ready(kb.id, hours.id, timeout=DEADLINE)
        prices = client.knowledge_bases.documents.wait_ready(kb.id, prices.id, timeout=DEADLINE)
        hits = client.knowledge_bases.search(kb.id, "土曜日は何時まで営業していますか", top_k=2)
        listed = client.knowledge_bases.documents.list(kb.id)
        renamed = client.knowledge_bases.update(kb.id, name="FAQ 2")
        client.knowledge_bases.documents.delete(kb.id, prices.id)
        after_delete = client.knowledge_bases.get(kb.id)
        every = [item.id for item in client.knowledge_bases.iter_all()]
        client.knowledge_bases.delete(kb.id)
        with pytest.raises(NotFoundError):
            client.knowledge_bases.get(kb.id)

    assert set(accepted) <= {"processing", "ready"}
    assert (hours.status, prices.status) == ("ready", "ready")
    assert (prices.title, prices.source) == ("料金", "料金.md")
    assert hits[0].document_id == hours.id
    assert "11時から17時" in hits[0].snippet
    assert 0 < hits[0].score <= 1
    assert {document.id for document in listed.items} == {hours.id, prices.id}
    assert (renamed.name, renamed.description, renamed.document_count) == (
        "FAQ 2",
        "よくある質問",
        2,
    )
    assert after_delete.document_count == 1
    assert kb.id in every


async def test_a_knowledge_base_is_filled_searched_and_deleted_async(setup: Setup) -> None:
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        kb = await client.knowledge_bases.create(name="料金")
        document = await client.knowledge_bases.documents.upload(
            kb.id, PRICES.encode(), filename="料金.txt"
        )
        ready = await client.knowledge_bases.documents.wait_ready(
            kb.id, document.id, timeout=DEADLINE
        )
        hits = await client.knowledge_bases.search(kb.id, "Proプランの価格は?")
        documents = [d.id async for d in client.knowledge_bases.documents.iter_all(kb.id)]
        await client.knowledge_bases.delete(kb.id)

    assert ready.status == "ready"
    assert ready.source == "料金.txt"
    assert hits[0].document_id == document.id
    assert "月額2,000円" in hits[0].snippet
    assert documents == [document.id]


# -- batches ---------------------------------------------------------------------------------------


def test_a_batch_runs_in_the_background_and_another_is_cancelled(setup: Setup) -> None:
    with Client(base_url=setup.server.base_url, api_key=setup.key) as client:
        chat = client.chats.create(name="続き", agent_id=setup.quick_agent)
        client.messages.send(chat.id, "最初の質問", agent_id=setup.quick_agent)
        batch = client.batches.create(
            setup.quick_agent,
            [
                {"custom_id": "q-1", "message": "営業時間は?"},
                {"custom_id": "q-2", "message": "送料は?", "name": "送料の質問"},
                {"custom_id": "q-3", "message": "続けて", "history_id": chat.id},
            ],
        )
        done = client.batches.wait(batch.id, timeout=DEADLINE)
        results = list(client.batches.iter_results(batch.id, page_size=2))
        with client.responses.stream(results[0].chat_id or 0, str(results[0].response_id)) as s:
            replayed = s.final_text()
        continued = client.messages.list(chat.id).items

        slow = client.batches.create(
            setup.slow_agent, [{"custom_id": f"s-{n}", "message": "ゆっくり"} for n in range(3)]
        )
        ends_at = time.monotonic() + DEADLINE
        while not any(r.response_id for r in client.batches.results(slow.id).items):
            assert time.monotonic() < ends_at, "no item of the slow batch started"
            time.sleep(0.05)
        started = time.monotonic()
        client.batches.cancel(slow.id)
        stopped = client.batches.wait(slow.id, timeout=DEADLINE)
        stopped_results = client.batches.results(slow.id).items
        listed = [item.id for item in client.batches.list(limit=2).items]
        with pytest.raises(BadRequestError, match="already ended"):
            client.batches.cancel(slow.id)

    assert batch.status in ("pending", "processing")
    assert (done.status, done.completed_requests, done.ended) == ("completed", 3, True)
    assert [r.custom_id for r in results] == ["q-1", "q-2", "q-3"]
    assert all(r.response == QUICK_ANSWER for r in results)
    assert all(r.usage is not None and r.usage.total_calls == 1 for r in results)
    assert results[2].chat_id == chat.id
    assert replayed == QUICK_ANSWER
    assert [m.content for m in continued] == ["最初の質問", QUICK_ANSWER, "続けて", QUICK_ANSWER]
    assert time.monotonic() - started < 8, "the batch was stopped, not waited out"
    assert (stopped.status, stopped.cancelled_requests) == ("cancelled", 3)
    assert {r.status for r in stopped_results} == {"cancelled"}
    assert listed == [slow.id, batch.id]


async def test_a_batch_runs_in_the_background_and_another_is_cancelled_async(setup: Setup) -> None:
    async with AsyncClient(base_url=setup.server.base_url, api_key=setup.key) as client:
        batch = await client.batches.create(
            setup.quick_agent, [{"custom_id": f"q-{n}", "message": "質問"} for n in range(3)]
        )
        done = await client.batches.wait(batch.id, timeout=DEADLINE)
        results = [r async for r in client.batches.iter_results(batch.id, page_size=2)]
        slow = await client.batches.create(
            setup.slow_agent, [{"custom_id": "s", "message": "ゆっくり"}]
        )
        cancelled = await client.batches.cancel(slow.id)
        stopped = await client.batches.wait(slow.id, timeout=DEADLINE)

    assert (done.status, done.completed_requests) == ("completed", 3)
    assert [r.response for r in results] == [QUICK_ANSWER] * 3
    assert cancelled.status == "cancelled"
    assert (stopped.status, stopped.cancelled_requests, stopped.ended) == ("cancelled", 1, True)
