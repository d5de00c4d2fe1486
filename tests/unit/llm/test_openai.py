"""The `openai` provider against a real loopback fake of the OpenAI API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any, Literal

import pytest
from tests.fakes.openai_server import (
    CloseAbruptly,
    FakeOpenAI,
    FakeToolCall,
    Malformed,
    Reply,
    Stall,
    Status,
    ToolCalls,
)

from kaiwa.config import ProviderSettings
from kaiwa.llm.base import (
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from kaiwa.llm.openai import OpenAIModel

SECRET = "sk-test-secret-0123456789"
ASK = ModelRequest(messages=[ChatMessage("user", "営業時間は？")])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


def settings_for(base_url: str | None, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "type": "openai",
        "base_url": base_url,
        "api_key": SECRET,
        "connect_timeout": 0.5,
        "first_byte_timeout": 1.0,
        "chunk_timeout": 1.0,
        "max_retries": 2,
    }
    return ProviderSettings(**(values | overrides))


async def collect(
    settings: ProviderSettings, request: ModelRequest = ASK
) -> tuple[list[ModelEvent], ModelError | None]:
    """Every event the model yields, and the error that ended the stream, if any."""
    model = OpenAIModel("fake", "gpt-test", settings)
    events: list[ModelEvent] = []
    try:
        async for event in model.stream(request):
            events.append(event)
    except ModelError as error:
        return events, error
    finally:
        await model.aclose()
    return events, None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_name_is_provider_slash_model() -> None:
    model = OpenAIModel("ollama", "qwen3:8b", settings_for("http://127.0.0.1:1/v1"))
    assert model.name == "ollama/qwen3:8b"


@pytest.mark.parametrize("split_bytes", [False, True], ids=["whole-chunks", "split-bytes"])
async def test_japanese_text_split_across_chunks_arrives_intact_with_usage(
    fake: FakeOpenAI, split_bytes: bool
) -> None:
    chunks = ["営業", "時間は", "平日の9時〜18時です。"]
    fake.enqueue(Reply(chunks=chunks, usage=(12, 5), split_bytes=split_bytes))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [*(TextDelta(text) for text in chunks), Usage(12, 5)]
    assert fake.requests[0].body["stream"] is True
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}


async def test_stream_usage_off_asks_for_no_usage_and_reports_none(fake: FakeOpenAI) -> None:
    events, error = await collect(settings_for(fake.base_url, stream_usage=False))

    assert error is None
    assert "stream_options" not in fake.requests[0].body
    assert not any(isinstance(event, Usage) for event in events)


async def test_api_key_and_base_url_come_from_provider_settings(fake: FakeOpenAI) -> None:
    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events
    assert fake.requests[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_env_key_and_base_url_are_used_when_settings_leave_them_unset(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)

    events, error = await collect(settings_for(None, api_key=None))

    assert error is None
    assert events
    assert fake.requests[0].headers["authorization"] == "Bearer sk-from-env"


async def test_missing_api_key_fails_when_streaming_not_when_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    model = OpenAIModel("openai", "gpt-test", settings_for(None, api_key=None))

    with pytest.raises(ModelError) as caught:
        async for _ in model.stream(ASK):
            pass

    assert caught.value.message == (
        "provider 'openai' has no API key: set OPENAI_API_KEY or api_key in kaiwa.toml"
    )


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retryable_status_before_the_first_token_is_retried(
    fake: FakeOpenAI, status: int
) -> None:
    fake.enqueue(Status(status, retry_after=0.01), Reply(chunks=["はい"], usage=None))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [TextDelta("はい")]
    assert len(fake.requests) == 2


async def test_server_error_forever_fails_after_max_retries_plus_one_requests(
    fake: FakeOpenAI,
) -> None:
    fake.default = Status(500, retry_after=0.01)

    events, error = await collect(settings_for(fake.base_url, max_retries=2))

    assert events == []
    assert error is not None
    assert not error.partial
    assert error.message == (
        f"openai provider 'fake': HTTP 500 from the model server at {fake.base_url}"
    )
    assert len(fake.requests) == 3


async def test_rejected_key_is_not_retried_and_never_shown(fake: FakeOpenAI) -> None:
    fake.enqueue(Status(401, message=f"Incorrect API key provided: {SECRET}"))

    _, error = await collect(settings_for(fake.base_url))

    assert error is not None
    assert "HTTP 401" in error.message
    assert "API key rejected" in error.message
    assert SECRET not in error.message
    assert len(fake.requests) == 1


async def test_connection_refused_names_the_address_quickly() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()

    _, error = await collect(settings_for(base_url, max_retries=0))

    assert error is not None
    assert error.message == f"openai provider 'fake': could not connect to {base_url}"
    assert time.monotonic() - started < 1.0


async def test_retries_stay_inside_first_byte_timeout() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()

    # Backoff alone would take 0.5 + 1 + 2 + ... seconds for ten retries.
    _, error = await collect(settings_for(base_url, max_retries=10, first_byte_timeout=0.3))

    assert error is not None
    assert "first_byte_timeout (0.3 s)" in error.message
    assert time.monotonic() - started < 1.0


async def test_stall_mid_answer_beyond_chunk_timeout_fails_as_partial(fake: FakeOpenAI) -> None:
    fake.enqueue(Stall(chunks=["営業", "時間は"], after_chunks=1, seconds=3))

    events, error = await collect(settings_for(fake.base_url, chunk_timeout=0.2))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert "chunk_timeout (0.2 s)" in error.message


@pytest.mark.parametrize("before_headers", [True, False], ids=["before-headers", "after-headers"])
async def test_stall_before_the_first_chunk_beyond_first_byte_timeout_fails(
    fake: FakeOpenAI, before_headers: bool
) -> None:
    fake.enqueue(Stall(after_chunks=0, seconds=3, before_headers=before_headers))
    started = time.monotonic()

    events, error = await collect(settings_for(fake.base_url, first_byte_timeout=0.3))

    assert events == []
    assert error is not None
    assert not error.partial
    assert "first_byte_timeout (0.3 s)" in error.message
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "data", ['{"id": "chatcmpl-broken", "choices": [{"delta": ', '{"choices": "nonsense"}']
)
async def test_malformed_chunk_fails_with_model_error(fake: FakeOpenAI, data: str) -> None:
    fake.enqueue(Malformed(chunks=["営業", "時間"], after_chunks=1, data=data))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert "malformed" in error.message


async def test_an_error_sent_inside_the_stream_fails_with_its_code_not_its_message(
    fake: FakeOpenAI,
) -> None:
    error_data = '{"error": {"message": "quota of ' + SECRET + '", "code": "rate_limit_exceeded"}}'
    fake.enqueue(Malformed(chunks=["営業", "時間"], after_chunks=1, data=error_data))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert error.message == (
        "openai provider 'fake': the model server sent an error mid-stream "
        "(code rate_limit_exceeded)"
    )


async def test_a_data_line_that_is_not_utf8_is_malformed(fake: FakeOpenAI) -> None:
    fake.enqueue(Malformed(chunks=["営業", "時間"], after_chunks=1, data="\udcff"))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert "malformed" in error.message


async def test_the_connection_serves_the_next_answer_once_one_has_ended(fake: FakeOpenAI) -> None:
    # An answer that ended leaves its connection in the pool for the next one.
    model = OpenAIModel("fake", "gpt-test", settings_for(fake.base_url))
    try:
        for _ in range(2):
            assert [e async for e in model.stream(ASK) if isinstance(e, TextDelta)]
    finally:
        await model.aclose()

    first, second = fake.requests
    assert first.client_port is not None
    assert second.client_port == first.client_port


async def test_abrupt_close_mid_stream_fails_as_partial(fake: FakeOpenAI) -> None:
    fake.enqueue(CloseAbruptly(chunks=["営業", "時間は", "9時"], after_chunks=2))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業"), TextDelta("時間は")]
    assert error is not None
    assert error.partial
    assert error.message == (
        f"openai provider 'fake': the connection to {fake.base_url} broke off mid-answer"
    )
    assert len(fake.requests) == 1


async def test_tool_call_fragments_are_assembled_into_tool_calls(fake: FakeOpenAI) -> None:
    fake.enqueue(
        ToolCalls(
            [
                FakeToolCall("search", {"query": "営業時間", "limit": 3}, id="call_a"),
                FakeToolCall("clock", {}, id="call_b"),
            ],
            fragment=3,
            usage=(20, 9),
        )
    )

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [
        ToolCall("call_a", "search", {"query": "営業時間", "limit": 3}),
        ToolCall("call_b", "clock", {}),
        Usage(20, 9),
    ]


async def test_tool_call_with_broken_json_arguments_is_a_call_marked_invalid(
    fake: FakeOpenAI,
) -> None:
    # The model's mistake, not the provider's: the step fails, the answer goes on.
    fake.enqueue(ToolCalls([FakeToolCall("search", '{"query": "営')]))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    calls = [event for event in events if isinstance(event, ToolCall)]
    assert len(calls) == 1
    assert (calls[0].name, calls[0].arguments) == ("search", {})
    assert calls[0].invalid == "the arguments the model wrote are not a JSON object"


@pytest.mark.parametrize("depth", [300, 5000])
async def test_tool_call_with_arguments_nested_too_deep_is_a_call_marked_invalid(
    fake: FakeOpenAI, depth: int
) -> None:
    # Before: json.loads raised RecursionError a thousand levels down (a 500 in the making),
    # and a few hundred levels were accepted, to fail when stored.
    deep = '{"a": ' + "[" * depth + "]" * depth + "}"
    fake.enqueue(ToolCalls([FakeToolCall("search", deep)], fragment=4096))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    (call,) = [event for event in events if isinstance(event, ToolCall)]
    assert (call.name, call.arguments) == ("search", {})
    assert call.invalid == "the arguments the model wrote are not a JSON object"


async def test_request_maps_to_openai_messages_tools_and_settings(fake: FakeOpenAI) -> None:
    parameters = {"type": "object", "properties": {"query": {"type": "string"}}}
    request = ModelRequest(
        system="日本語で答えてください。",
        messages=[
            ChatMessage("user", "営業時間は？"),
            ChatMessage(
                "assistant",
                "",
                tool_calls=(ToolCall("call_1", "search", {"query": "営業時間"}),),
            ),
            ChatMessage("tool", "9時〜18時", tool_call_id="call_1"),
            ChatMessage("assistant", "9時〜18時です。"),
            ChatMessage("user", "土曜日は？"),
        ],
        tools=[ToolSpec("search", "Search the knowledge base", parameters)],
        max_tokens=64,
        settings={"temperature": 0.2},
    )

    _, error = await collect(settings_for(fake.base_url), request)

    assert error is None
    body = fake.requests[0].body
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "日本語で答えてください。"},
        {"role": "user", "content": "営業時間は？"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "営業時間"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "9時〜18時"},
        {"role": "assistant", "content": "9時〜18時です。"},
        {"role": "user", "content": "土曜日は？"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search the knowledge base",
                "parameters": parameters,
            },
        }
    ]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert "top_p" not in body


async def test_plain_request_sends_no_optional_fields(fake: FakeOpenAI) -> None:
    _, error = await collect(settings_for(fake.base_url))

    assert error is None
    body = fake.requests[0].body
    assert body["messages"] == [{"role": "user", "content": "営業時間は？"}]
    assert not {"tools", "max_tokens", "temperature", "top_p"} & body.keys()


@pytest.mark.parametrize("cancelled_while", ["awaiting-a-chunk", "handling-a-delta"])
async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeOpenAI, cancelled_while: Literal["awaiting-a-chunk", "handling-a-delta"]
) -> None:
    fake.enqueue(Stall(chunks=["営業", "時間は"], after_chunks=1, seconds=5))
    model = OpenAIModel("fake", "gpt-test", settings_for(fake.base_url, chunk_timeout=5))
    first_delta = asyncio.Event()

    async def consume() -> None:
        # aclosing, as the runtime does: a consumer cancelled between two events closes the
        # suspended stream rather than leaving it to the garbage collector.
        async with aclosing(model.stream(ASK)) as events:
            async for _ in events:
                first_delta.set()
                if cancelled_while == "handling-a-delta":
                    await asyncio.sleep(5)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(1):
        await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with asyncio.timeout(1):
        recorded = await fake.wait_for_disconnect()
    assert recorded is fake.requests[0]
    await model.aclose()


async def test_text_then_interleaved_parallel_tool_calls_are_told_apart_by_index(
    fake: FakeOpenAI,
) -> None:
    fake.enqueue(
        ToolCalls(
            [
                FakeToolCall("search", {"query": "営業時間"}, id="call_a"),
                FakeToolCall("search", {"query": "定休日", "limit": 2}, id="call_b"),
            ],
            text=["調べ", "ます。"],
            fragment=2,
            interleave=True,
            usage=(20, 9),
        )
    )

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [
        TextDelta("調べ"),
        TextDelta("ます。"),
        ToolCall("call_a", "search", {"query": "営業時間"}),
        ToolCall("call_b", "search", {"query": "定休日", "limit": 2}),
        Usage(20, 9),
    ]


@pytest.mark.parametrize("fragment", [3, 1000], ids=["split-arguments", "whole-calls"])
async def test_tool_calls_without_index_are_told_apart_by_id(
    fake: FakeOpenAI, fragment: int
) -> None:
    # Gemini's OpenAI-compatible endpoint sends no `index`; its calls used to run together.
    fake.enqueue(
        ToolCalls(
            [
                FakeToolCall("search", {"query": "営業時間"}, id="call_a"),
                FakeToolCall("clock", {}, id="call_b"),
            ],
            fragment=fragment,
            omit_index=True,
        )
    )

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events[:2] == [
        ToolCall("call_a", "search", {"query": "営業時間"}),
        ToolCall("call_b", "clock", {}),
    ]


async def test_tool_call_round_trip_sends_calls_and_results_back(fake: FakeOpenAI) -> None:
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    }
    tools = [
        ToolSpec("search", "Search the knowledge base", parameters),
        ToolSpec("clock", "The current time", {"type": "object", "properties": {}}),
    ]
    question = ChatMessage("user", "営業時間と今の時刻は？")
    fake.enqueue(
        ToolCalls(
            [
                FakeToolCall("search", {"query": "営業時間"}, id="call_a"),
                FakeToolCall("clock", {}, id="call_b"),
            ],
            text=["調べます。"],
        ),
        Reply(chunks=["9時〜18時、", "今は10時です。"]),
    )

    first, error = await collect(settings_for(fake.base_url), ModelRequest([question], tools=tools))
    assert error is None
    calls = tuple(event for event in first if isinstance(event, ToolCall))
    # What the agent loop sends next: the call, then one tool message per result.
    follow_up = ModelRequest(
        [
            question,
            ChatMessage("assistant", "調べます。", tool_calls=calls),
            ChatMessage("tool", "平日9時〜18時", tool_call_id="call_a"),
            ChatMessage("tool", "10:00", tool_call_id="call_b"),
        ],
        tools=tools,
    )
    second, error = await collect(settings_for(fake.base_url), follow_up)

    assert error is None
    assert [e for e in second if isinstance(e, TextDelta)] == [
        TextDelta("9時〜18時、"),
        TextDelta("今は10時です。"),
    ]
    assert fake.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {"name": spec.name, "description": spec.description, "parameters": p},
        }
        for spec, p in zip(tools, [parameters, {"type": "object", "properties": {}}], strict=True)
    ]
    assert fake.requests[1].body["messages"] == [
        {"role": "user", "content": "営業時間と今の時刻は？"},
        {
            "role": "assistant",
            "content": "調べます。",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "営業時間"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "clock", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "平日9時〜18時"},
        {"role": "tool", "tool_call_id": "call_b", "content": "10:00"},
    ]
