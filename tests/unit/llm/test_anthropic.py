"""The `anthropic` provider against a real loopback fake of the Anthropic Messages API."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.fakes.anthropic_server import (
    CloseAbruptly,
    ErrorEvent,
    FakeAnthropic,
    FakeToolUse,
    Malformed,
    Reply,
    Stall,
    Status,
    ToolUse,
    streamed_body,
)

from kaiwa.config import ProviderSettings
from kaiwa.llm import anthropic as anthropic_provider
from kaiwa.llm.anthropic import AnthropicModel
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
from kaiwa.llm.registry import ModelRegistry

SECRET = "sk-ant-test-secret-0123456789"
ASK = ModelRequest(messages=[ChatMessage("user", "営業時間は？")])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=SECRET) as running:
        yield running


@pytest.fixture
def fake(server: FakeAnthropic) -> FakeAnthropic:
    server.reset()
    return server


def settings_for(base_url: str | None, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "type": "anthropic",
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
    model = AnthropicModel("claude", "claude-test", settings)
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


def text_of(content: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": content}]


READS_URL = "http://model.test"
"""The server's address in the tests whose body arrives in reads they choose."""


def answer_in_reads(monkeypatch: pytest.MonkeyPatch, reads: Sequence[bytes | float]) -> None:
    """Answer every request with a body that arrives in exactly `reads` (a number is a pause, in
    seconds): a mock transport in place of the socket, whose reads the kernel cuts as it likes."""

    async def body() -> AsyncIterator[bytes]:
        for read in reads:
            if isinstance(read, bytes):
                yield read
            else:
                await asyncio.sleep(read)

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    transport = httpx2.MockTransport(answer)
    client = lambda: httpx2.AsyncClient(transport=transport)  # noqa: E731
    monkeypatch.setattr(anthropic_provider, "_HTTP_CLIENT", client)


def test_name_is_provider_slash_model() -> None:
    model = AnthropicModel("claude", "claude-sonnet-4-5", settings_for("http://127.0.0.1:1"))
    assert model.name == "claude/claude-sonnet-4-5"


def test_registry_builds_the_anthropic_provider_for_its_type() -> None:
    registry = ModelRegistry({"claude": settings_for("http://127.0.0.1:1")})
    assert isinstance(registry.get("claude/claude-sonnet-4-5"), AnthropicModel)


# -- text and usage ------------------------------------------------------------------------


@pytest.mark.parametrize("split_bytes", [False, True], ids=["whole-frames", "split-bytes"])
async def test_japanese_text_split_across_deltas_arrives_intact_with_usage(
    fake: FakeAnthropic, split_bytes: bool
) -> None:
    # Deltas cut words in half; split_bytes also cuts the UTF-8 of 営, 時 and 🍣 across writes.
    chunks = ["営", "業時間は平", "日の9時〜18時です🍣", "。"]
    fake.enqueue(Reply(chunks=chunks, usage=(12, 5), split_bytes=split_bytes))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [*(TextDelta(text) for text in chunks), Usage(12, 5)]
    assert fake.requests[0].body["stream"] is True


async def test_usage_counts_cached_input_tokens_as_prompt_tokens(fake: FakeAnthropic) -> None:
    fake.enqueue(Reply(chunks=["はい"], usage=(12, 5), cache_read=100))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events[-1] == Usage(prompt_tokens=112, completion_tokens=5)


# -- the request ---------------------------------------------------------------------------


async def test_request_maps_system_messages_tools_and_settings(fake: FakeAnthropic) -> None:
    parameters = {"type": "object", "properties": {"query": {"type": "string"}}}
    request = ModelRequest(
        system="日本語で答えてください。",
        messages=[
            ChatMessage("user", "営業時間は？"),
            ChatMessage("assistant", "9時〜18時です。"),
            ChatMessage("user", "土曜日は？"),
        ],
        tools=[ToolSpec("search", "Search the knowledge base", parameters)],
        max_tokens=64,
        settings={"temperature": 0.2, "top_k": 5, "script": {"not": "sent"}},
    )

    _, error = await collect(settings_for(fake.base_url), request)

    assert error is None
    body = fake.requests[0].body
    assert body["model"] == "claude-test"
    assert body["system"] == "日本語で答えてください。"
    assert body["messages"] == [
        {"role": "user", "content": text_of("営業時間は？")},
        {"role": "assistant", "content": text_of("9時〜18時です。")},
        {"role": "user", "content": text_of("土曜日は？")},
    ]
    assert body["tools"] == [
        {"name": "search", "description": "Search the knowledge base", "input_schema": parameters}
    ]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["top_k"] == 5
    assert not {"top_p", "script"} & body.keys()


async def test_plain_request_sends_provider_max_tokens_and_no_optional_fields(
    fake: FakeAnthropic,
) -> None:
    _, error = await collect(settings_for(fake.base_url, max_tokens=1234))

    assert error is None
    body = fake.requests[0].body
    assert body["messages"] == [{"role": "user", "content": text_of("営業時間は？")}]
    assert body["max_tokens"] == 1234
    assert not {"system", "tools", "temperature", "top_p", "top_k"} & body.keys()


async def test_title_call_without_max_tokens_asks_for_few_tokens(fake: FakeAnthropic) -> None:
    request = ModelRequest(messages=[ChatMessage("user", "営業時間は？")], purpose="title")

    _, error = await collect(settings_for(fake.base_url, max_tokens=4096), request)

    assert error is None
    assert fake.requests[0].body["max_tokens"] == 64


async def test_system_messages_in_the_history_join_the_system_parameter(
    fake: FakeAnthropic,
) -> None:
    request = ModelRequest(
        system="あなたは案内係です。",
        messages=[ChatMessage("system", "敬語で。"), ChatMessage("user", "こんにちは")],
    )

    _, error = await collect(settings_for(fake.base_url), request)

    assert error is None
    body = fake.requests[0].body
    assert body["system"] == "あなたは案内係です。\n\n敬語で。"
    assert body["messages"] == [{"role": "user", "content": text_of("こんにちは")}]


async def test_tool_round_trip_sends_tool_use_and_merged_tool_results(
    fake: FakeAnthropic,
) -> None:
    # What the agent loop sends after the model asked for two tools at once.
    request = ModelRequest(
        messages=[
            ChatMessage("user", "営業時間と今の時刻は？"),
            ChatMessage(
                "assistant",
                "調べます。",
                tool_calls=(
                    ToolCall("toolu_a", "search", {"query": "営業時間"}),
                    ToolCall("toolu_b", "clock", {}),
                ),
            ),
            ChatMessage("tool", "9時〜18時", tool_call_id="toolu_a"),
            ChatMessage("tool", "", tool_call_id="toolu_b"),
            ChatMessage("user", "土曜日は？"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("toolu_c", "search", {}),)),
            ChatMessage("tool", "休み", tool_call_id="toolu_c"),
        ],
    )

    _, error = await collect(settings_for(fake.base_url), request)

    assert error is None
    assert fake.requests[0].body["messages"] == [
        {"role": "user", "content": text_of("営業時間と今の時刻は？")},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "調べます。"},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "search",
                    "input": {"query": "営業時間"},
                },
                {"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}},
            ],
        },
        {
            # Consecutive tool results and the next question: one user turn, results first.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "9時〜18時"},
                {"type": "tool_result", "tool_use_id": "toolu_b"},
                {"type": "text", "text": "土曜日は？"},
            ],
        },
        {
            # No empty text block: the API rejects them.
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_c", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_c", "content": "休み"}],
        },
    ]


# -- tool calls in -------------------------------------------------------------------------


async def test_tool_use_blocks_are_assembled_from_partial_json(fake: FakeAnthropic) -> None:
    fake.enqueue(
        ToolUse(
            [
                FakeToolUse("search", {"query": "営業時間", "limit": 3}, id="toolu_a"),
                FakeToolUse("clock", {}, id="toolu_b"),
            ],
            text=["調べ", "ます。"],
            fragment=3,  # cuts the JSON inside keys, strings and 営業時間
            usage=(20, 9),
        )
    )

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [
        TextDelta("調べ"),
        TextDelta("ます。"),
        ToolCall("toolu_a", "search", {"query": "営業時間", "limit": 3}),
        ToolCall("toolu_b", "clock", {}),
        Usage(20, 9),
    ]


@pytest.mark.parametrize("arguments", ['{"query": "営', "[1, 2]", '"text"'])
async def test_tool_use_with_arguments_not_a_json_object_is_a_call_marked_invalid(
    fake: FakeAnthropic, arguments: str
) -> None:
    # The model's mistake, not the provider's: the step fails, the answer goes on.
    fake.enqueue(ToolUse([FakeToolUse("search", arguments)]))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    calls = [event for event in events if isinstance(event, ToolCall)]
    assert len(calls) == 1
    assert (calls[0].name, calls[0].arguments) == ("search", {})
    assert calls[0].invalid == "the arguments the model wrote are not a JSON object"


# -- keys and addresses --------------------------------------------------------------------


async def test_api_key_and_version_are_sent(fake: FakeAnthropic) -> None:
    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events
    assert fake.requests[0].api_key == SECRET
    assert fake.requests[0].headers["anthropic-version"]


async def test_env_key_and_base_url_are_used_when_settings_leave_them_unset(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)

    events, error = await collect(settings_for(None, api_key=None))

    assert error is None
    assert events
    assert fake.requests[0].api_key == SECRET


async def test_missing_api_key_fails_when_streaming_not_when_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [name for name in os.environ if name.startswith("ANTHROPIC_")]:
        monkeypatch.delenv(name)
    # No credentials profile on disk either.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    model = AnthropicModel("anthropic", "claude-test", settings_for(None, api_key=None))

    with pytest.raises(ModelError) as caught:
        async for _ in model.stream(ASK):
            pass

    assert caught.value.message == (
        "provider 'anthropic' has no API key: set ANTHROPIC_API_KEY or api_key in kaiwa.toml"
    )
    await model.aclose()


async def test_rejected_key_is_not_retried_and_never_shown(fake: FakeAnthropic) -> None:
    fake.enqueue(Status(401, message=f"invalid x-api-key: {SECRET}"))

    _, error = await collect(settings_for(fake.base_url))

    assert error is not None
    assert error.message == (
        f"anthropic provider 'claude': HTTP 401 from the model server at {fake.base_url} "
        "(API key rejected)"
    )
    assert len(fake.requests) == 1


async def test_wrong_key_is_rejected_by_the_server(fake: FakeAnthropic) -> None:
    _, error = await collect(settings_for(fake.base_url, api_key="sk-ant-wrong-key"))

    assert error is not None
    assert "HTTP 401" in error.message
    assert "sk-ant-wrong-key" not in error.message


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 529])
async def test_retryable_status_before_the_first_token_is_retried(
    fake: FakeAnthropic, status: int
) -> None:
    fake.enqueue(Status(status, retry_after=0.01), Reply(chunks=["はい"], usage=(3, 1)))

    events, error = await collect(settings_for(fake.base_url))

    assert error is None
    assert events == [TextDelta("はい"), Usage(3, 1)]
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (400, " (invalid request)"),
        (403, " (access denied)"),
        (404, " (unknown model or path)"),
        (429, " (rate limited)"),
        (500, " (internal error)"),
        (503, " (type service_unavailable)"),
        (529, " (overloaded)"),
    ],
)
async def test_status_errors_name_the_provider_address_and_failure(
    fake: FakeAnthropic, status: int, detail: str
) -> None:
    error_type = "service_unavailable" if status == 503 else None
    fake.default = Status(status, f"upstream said {SECRET}", error_type, retry_after=0.01)

    events, error = await collect(settings_for(fake.base_url, max_retries=1))

    assert events == []
    assert error is not None
    assert not error.partial
    assert error.message == (
        f"anthropic provider 'claude': HTTP {status} from the model server at {fake.base_url}"
        + detail
    )
    retried = status in (429, 500, 503, 529)
    assert len(fake.requests) == (2 if retried else 1)


@pytest.mark.parametrize(("after_chunks", "partial"), [(0, False), (1, True)])
async def test_error_event_mid_stream_fails_and_is_not_retried(
    fake: FakeAnthropic, after_chunks: int, partial: bool
) -> None:
    fake.enqueue(
        ErrorEvent(chunks=["営業", "時間は"], after_chunks=after_chunks, message=SECRET),
        Reply(),
    )

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業")][:after_chunks]
    assert error is not None
    assert error.partial is partial
    assert error.message == (
        f"anthropic provider 'claude': the model server at {fake.base_url} failed mid-stream "
        "(overloaded)"
    )
    assert len(fake.requests) == 1


async def test_connection_refused_names_the_address_quickly() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()

    _, error = await collect(settings_for(base_url, max_retries=0))

    assert error is not None
    assert error.message == f"anthropic provider 'claude': could not connect to {base_url}"
    assert time.monotonic() - started < 1.0


async def test_retries_stay_inside_first_byte_timeout() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()

    # Backoff alone would take 0.5 + 1 + 2 + ... seconds for ten retries.
    _, error = await collect(settings_for(base_url, max_retries=10, first_byte_timeout=0.3))

    assert error is not None
    assert error.message == (
        "anthropic provider 'claude': no answer within first_byte_timeout (0.3 s)"
    )
    assert time.monotonic() - started < 1.0


async def test_stall_mid_answer_beyond_chunk_timeout_fails_as_partial(
    fake: FakeAnthropic,
) -> None:
    fake.enqueue(Stall(chunks=["営業", "時間は"], after_chunks=1, seconds=3))
    started = time.monotonic()

    events, error = await collect(settings_for(fake.base_url, chunk_timeout=0.2))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert "chunk_timeout (0.2 s)" in error.message
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "before_headers", [True, False], ids=["before-headers", "after-message-start"]
)
async def test_stall_before_the_first_content_beyond_first_byte_timeout_fails(
    fake: FakeAnthropic, before_headers: bool
) -> None:
    # After message_start the deadline is still first_byte_timeout, not the shorter
    # chunk_timeout: the model may take a while to produce its first token.
    fake.enqueue(Stall(after_chunks=0, seconds=3, before_headers=before_headers))
    settings = settings_for(fake.base_url, first_byte_timeout=0.4, chunk_timeout=0.1)
    started = time.monotonic()

    events, error = await collect(settings)

    assert events == []
    assert error is not None
    assert not error.partial
    assert "first_byte_timeout (0.4 s)" in error.message
    assert 0.35 < time.monotonic() - started < 1.0


async def test_slow_first_token_within_first_byte_timeout_is_fine(fake: FakeAnthropic) -> None:
    fake.enqueue(Stall(chunks=["はい"], usage=(3, 1), after_chunks=0, seconds=0.3))

    events, error = await collect(
        settings_for(fake.base_url, first_byte_timeout=2.0, chunk_timeout=0.1)
    )

    assert error is None
    assert events == [TextDelta("はい"), Usage(3, 1)]


MALFORMED = pytest.mark.parametrize(
    "data",
    [
        '{"type": "content_block_delta", "index": 0, "delta": ',
        '{"type": "content_block_delta", "index": 0, "delta": "nonsense"}',
        '{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta"}}',
        '["content_block_delta"]',
    ],
    ids=["not-json", "wrong-shape", "json-for-a-text-block", "not-an-object"],
)


@MALFORMED
async def test_malformed_event_fails_with_model_error(fake: FakeAnthropic, data: str) -> None:
    fake.enqueue(Malformed(chunks=["営業", "時間"], after_chunks=1, data=data))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert error.message.startswith("anthropic provider 'claude': ")
    assert "malformed" in error.message or "not a tool call" in error.message


async def test_abrupt_close_mid_stream_fails_as_partial(fake: FakeAnthropic) -> None:
    fake.enqueue(CloseAbruptly(chunks=["営業", "時間は", "9時"], after_chunks=2))

    events, error = await collect(settings_for(fake.base_url))

    assert events == [TextDelta("営業"), TextDelta("時間は")]
    assert error is not None
    assert error.partial
    assert error.message == (
        f"anthropic provider 'claude': the connection to {fake.base_url} broke off mid-answer"
    )
    assert len(fake.requests) == 1


# -- reads of the body ---------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["one-read", "every-byte"])
async def test_events_arrive_intact_however_the_body_is_cut_into_reads(
    monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    # Every byte its own read also cuts the UTF-8 of 営, 🍣 and the tool input across reads.
    search = FakeToolUse("search", {"query": "営業時間"}, id="toolu_a")
    body = streamed_body(ToolUse([search], text=["営", "業時間は🍣"], fragment=5, usage=(7, 3)))
    reads = [body] if cut == "one-read" else [body[at : at + 1] for at in range(len(body))]
    answer_in_reads(monkeypatch, reads)

    events, error = await collect(settings_for(READS_URL))

    assert error is None
    assert events == [
        TextDelta("営"),
        TextDelta("業時間は🍣"),
        ToolCall("toolu_a", "search", {"query": "営業時間"}),
        Usage(7, 3),
    ]


async def test_pings_and_events_it_does_not_know_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unknown = (
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
        b'"delta": {"type": "signature_delta", "signature": "c2ln"}}\n\n'
        b'event: future_event\ndata: {"type": "future_event", "index": 0}\n\n'
        b"event: empty\ndata:\n\n"
    )
    body = streamed_body(Reply(chunks=["はい"], usage=(3, 1)))
    body = body.replace(b"event: content_block_stop", unknown + b"event: content_block_stop")
    answer_in_reads(monkeypatch, [body])

    events, error = await collect(settings_for(READS_URL))

    assert error is None
    assert events == [TextDelta("はい"), Usage(3, 1)]


@pytest.mark.parametrize("answering", [False, True], ids=["before-the-answer", "mid-answer"])
async def test_pings_do_not_keep_a_stalled_answer_alive(
    monkeypatch: pytest.MonkeyPatch, answering: bool
) -> None:
    # The body up to the first delta, or to message_start, then a ping every 50 ms.
    head = streamed_body(CloseAbruptly(chunks=["営業", "時間は"], after_chunks=int(answering)))
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    answer_in_reads(monkeypatch, [head, *[0.05, ping] * 20])
    started = time.monotonic()

    events, error = await collect(
        settings_for(READS_URL, first_byte_timeout=0.4, chunk_timeout=0.2)
    )

    assert events == [TextDelta("営業")][: int(answering)]
    assert error is not None
    assert error.partial is answering
    limit = "chunk_timeout (0.2 s)" if answering else "first_byte_timeout (0.4 s)"
    assert limit in error.message
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize(
    ("error_type", "detail"),
    [
        ("overloaded_error", " (overloaded)"),
        ("service_unavailable", " (type service_unavailable)"),
        (f"not a type: {SECRET}", ""),
    ],
)
async def test_error_event_in_the_read_of_the_text_before_it_names_its_type_only(
    monkeypatch: pytest.MonkeyPatch, error_type: str, detail: str
) -> None:
    error_event = ErrorEvent(
        chunks=["営業", "時間は"], after_chunks=1, error_type=error_type, message=SECRET
    )
    answer_in_reads(monkeypatch, [streamed_body(error_event)])

    events, error = await collect(settings_for(READS_URL))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert error.message == (
        f"anthropic provider 'claude': the model server at {READS_URL} failed mid-stream{detail}"
    )


@MALFORMED
async def test_malformed_event_in_the_read_of_the_text_before_it_keeps_the_text(
    monkeypatch: pytest.MonkeyPatch, data: str
) -> None:
    malformed = Malformed(chunks=["営業", "時間"], after_chunks=1, data=data)
    answer_in_reads(monkeypatch, [streamed_body(malformed)])

    events, error = await collect(settings_for(READS_URL))

    assert events == [TextDelta("営業")]
    assert error is not None
    assert error.partial
    assert "malformed" in error.message or "not a tool call" in error.message


async def test_the_request_carries_the_trace_context_of_the_current_span(
    fake: FakeAnthropic,
) -> None:
    # As from `messages.create`: kaiwa's model call span, when tracing is on, is the parent of
    # the SDK's own call span, whose traceparent goes out with the request.
    sdk = pytest.importorskip("opentelemetry.sdk.trace")  # the `otel` extra
    tracer = sdk.TracerProvider().get_tracer("kaiwa.tests")
    with tracer.start_as_current_span("chat claude-test") as span:
        _, error = await collect(settings_for(fake.base_url))

    assert error is None
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert fake.requests[0].headers["traceparent"].split("-")[1] == trace_id


@pytest.mark.parametrize("cancelled_while", ["awaiting-an-event", "handling-a-delta"])
async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeAnthropic, cancelled_while: str
) -> None:
    fake.enqueue(Stall(chunks=["営業", "時間は"], after_chunks=1, seconds=5))
    model = AnthropicModel("claude", "claude-test", settings_for(fake.base_url, chunk_timeout=5))
    first_delta = asyncio.Event()

    async def consume() -> None:
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
