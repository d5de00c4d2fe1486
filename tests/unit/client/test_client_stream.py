"""Streams: typed events from the wire, `final_text()`, errors before and inside the stream,
`cancel()`, following a response by id, and closing. Both clients, one body per test.
"""

from __future__ import annotations

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    ANSWER,
    CHAT_ID,
    KEY,
    RESPONSE_ID,
    Body,
    FakeApi,
    answer_events,
    body_of,
    close,
    error,
    failure,
    frames,
    make_client,
    ok,
    opened,
    read,
    resolve,
    sse_response,
    step,
)

from kaiwa.client import (
    APIConnectionError,
    ConflictError,
    KaiwaError,
    NotFoundError,
    Stream,
    StreamError,
    UpstreamError,
)
from kaiwa.protocol import (
    ChatTitleUpdated,
    OutputTextCompleted,
    OutputTextDelta,
    ResponseCreated,
    ResponseError,
)

SEND = f"/chats/{CHAT_ID}/messages"
EVENTS = f"/chats/{CHAT_ID}/responses/{RESPONSE_ID}/events"
CANCEL = f"/chats/{CHAT_ID}/responses/{RESPONSE_ID}/cancel"
TEXT = "".join(ANSWER)


async def test_a_stream_yields_typed_events_and_its_final_text(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, message="営業時間は?", agent_id=AGENT_ID))
    await close(client)

    assert got.error is None
    assert got.events == answer_events()
    assert isinstance(got.events[0], ResponseCreated)
    assert [e.delta for e in got.events if isinstance(e, OutputTextDelta)] == ANSWER
    assert isinstance(got.events[-1], OutputTextCompleted)
    assert got.text == TEXT
    assert got.stream.response_id == RESPONSE_ID
    assert got.stream.last_event_id == len(answer_events())
    assert got.stream.state.status == "completed"
    assert got.stream.state.usage.total_tokens == 9


async def test_a_stream_sends_the_message_with_stream_true(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client(kind, api)

    await read(client.messages.stream(CHAT_ID, "営業時間は?", agent_id=AGENT_ID, if_busy="reject"))
    await close(client)

    (request,) = api.requests
    assert body_of(request) == {
        "message": "営業時間は?",
        "agent_id": AGENT_ID,
        "stream": True,
        "if_busy": "reject",
    }
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["x-api-key"] == KEY


async def test_a_stream_regenerate_posts_to_regenerate(kind: str) -> None:
    path = f"/chats/{CHAT_ID}/regenerate"
    api = FakeApi().on("POST", path, sse_response(frames(answer_events(["別の", "答え"]))))
    client = make_client(kind, api)

    got = await read(client.messages.stream_regenerate(CHAT_ID, agent_id=AGENT_ID))
    await close(client)

    assert got.text == "別の答え"
    assert body_of(api.last) == {"agent_id": AGENT_ID, "stream": True}


async def test_events_come_out_whole_however_the_bytes_are_split(kind: str) -> None:
    raw = frames(answer_events())
    one_byte_at_a_time = Body([raw[i : i + 1] for i in range(len(raw))])
    api = FakeApi().on("POST", SEND, sse_response(one_byte_at_a_time))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == answer_events()
    assert got.text == TEXT


async def test_the_state_follows_each_event_as_it_is_handed_out(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client(kind, api)
    seen: list[tuple[int | None, str]] = []

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        for _ in range(len(answer_events())):
            await step(stream)
            seen.append((stream.last_event_id, stream.state.text))
    await close(client)

    texts = ["", "営業時間は", "営業時間は平日の", "営業時間は平日の9時から", TEXT, TEXT]
    assert seen == list(zip([1, 2, 3, 4, 5, 6], texts, strict=True))


async def test_an_error_event_raises_after_the_events_before_it(kind: str) -> None:
    events = [*answer_events(["途中まで"])[:2], failure(10009, "The model provider failed")]
    api = FakeApi().on("POST", SEND, sse_response(frames(events)))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == events[:2], "every event before the error is delivered first"
    assert isinstance(got.error, StreamError)
    assert isinstance(got.error, UpstreamError)
    assert got.error.code == 10009
    assert got.error.message == "The model provider failed"
    assert got.error.response_id == RESPONSE_ID
    assert got.stream.state.status == "failed"
    assert got.stream.state.text == "途中まで"
    assert not any(isinstance(e, ResponseError) for e in got.events)


async def test_final_text_raises_the_stream_error_again(kind: str) -> None:
    events = [*answer_events(["a"])[:2], failure(10008, "No event for 90 s")]
    api = FakeApi().on("POST", SEND, sse_response(frames(events)))
    client = make_client(kind, api)

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        with pytest.raises(StreamError) as once:
            await resolve(stream.final_text())
        with pytest.raises(StreamError) as twice:
            await resolve(stream.final_text())
    await close(client)
    first, second = once.value, twice.value

    assert first is not None
    assert first is second
    assert type(first) is StreamError
    assert first.code == 10008


async def test_final_text_alone_reads_the_whole_stream(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client(kind, api)

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        text = await resolve(stream.final_text())
    await close(client)

    assert text == TEXT


async def test_an_event_type_this_client_does_not_know_is_skipped(kind: str) -> None:
    raw = frames(answer_events()).replace(
        b"data: [DONE]",
        b'id: 7\nevent: response.future\ndata: {"type":"response.future","response_id":"'
        + RESPONSE_ID.encode()
        + b'","chat_id":12}\n\ndata: [DONE]',
    )
    api = FakeApi().on("POST", SEND, sse_response(raw))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == answer_events()


async def test_a_malformed_event_raises_a_kaiwa_error(kind: str) -> None:
    raw = (
        b'id: 1\nevent: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
    )
    api = FakeApi().on("POST", SEND, sse_response(raw))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert type(got.error) is KaiwaError
    assert "Malformed event" in str(got.error)


async def test_a_title_event_is_typed_and_kept_in_the_state(kind: str) -> None:
    events = answer_events()
    title = ChatTitleUpdated(response_id=RESPONSE_ID, chat_id=CHAT_ID, name="営業時間")
    events.insert(-1, title)
    api = FakeApi().on("POST", SEND, sse_response(frames(events)))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert title in got.events
    assert got.stream.state.title == "営業時間"


@pytest.mark.parametrize(
    ("status", "code", "family"),
    [(409, 10004, ConflictError), (404, 10003, NotFoundError), (502, 10009, UpstreamError)],
)
async def test_an_error_before_the_stream_raises_when_it_is_entered(
    kind: str, status: int, code: int, family: type[Exception]
) -> None:
    api = FakeApi().on("POST", SEND, error(status, code, "refused"))
    client = make_client(kind, api)

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    assert api.requests == [], "nothing is sent before the stream is entered"
    got = await read(stream)
    await close(client)

    assert type(got.error) is family
    assert got.events == []


async def test_an_answer_that_is_not_a_stream_is_refused(kind: str) -> None:
    api = FakeApi().on("POST", SEND, ok("plain text"))
    client = make_client(kind, api)
    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)
    assert type(got.error) is KaiwaError
    assert "Expected an event stream" in str(got.error)


async def test_a_stream_must_be_entered_before_it_is_iterated(kind: str) -> None:
    client = make_client(kind, FakeApi())
    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    with pytest.raises(RuntimeError, match="Enter the stream first"):
        await step(stream)
    await close(client)


async def test_cancel_posts_to_the_stop_endpoint_and_the_stream_ends_cancelled(
    kind: str,
) -> None:
    created, first = answer_events(["途中"])[:2]
    stopped = OutputTextCompleted(
        response_id=RESPONSE_ID, chat_id=CHAT_ID, final_text="途中", usage={}, status="cancelled"
    )
    status = {"id": RESPONSE_ID, "chat_id": CHAT_ID, "status": "cancelled", "final_text": "途中"}
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(frames([created, first, stopped])))
        .on("POST", CANCEL, ok(status))
    )
    client = make_client(kind, api)

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        await step(stream)
        answer = await resolve(stream.cancel())
        text = await resolve(stream.final_text())
    await close(client)

    assert answer.status == "cancelled"
    assert text == "途中"
    assert stream.state.status == "cancelled"
    (cancel,) = api.sent("POST", CANCEL)
    assert cancel.headers["x-api-key"] == KEY


async def test_cancel_before_the_stream_is_entered_is_refused(kind: str) -> None:
    client = make_client(kind, FakeApi())
    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    with pytest.raises(KaiwaError, match="no response yet"):
        await resolve(stream.cancel())
    await close(client)


async def test_leaving_the_block_early_closes_the_connection(kind: str) -> None:
    body = Body([frames(answer_events())])
    api = FakeApi().on("POST", SEND, sse_response(body))
    client = make_client(kind, api)

    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        await step(stream)
    await close(client)

    assert body.closed
    assert len(api.requests) == 1, "closing is not a reason to resume"


async def test_leaving_the_block_unread_closes_the_connection(kind: str) -> None:
    body = Body([frames(answer_events())])
    api = FakeApi().on("POST", SEND, sse_response(body))
    client = make_client(kind, api)

    async with opened(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)):
        pass
    await close(client)

    assert body.closed


async def test_responses_stream_follows_a_response_after_a_cursor(kind: str) -> None:
    events = answer_events()
    api = FakeApi().on("GET", EVENTS, sse_response(frames(events[3:], first_id=4)))
    client = make_client(kind, api)

    got = await read(client.responses.stream(CHAT_ID, RESPONSE_ID, after=3))
    await close(client)

    assert got.events == events[3:]
    assert got.text == TEXT, "the completed event carries the whole text"
    (request,) = api.requests
    assert request.url.params["after"] == "3"
    assert request.headers["accept"] == "text/event-stream"


async def test_responses_stream_skips_what_the_cursor_already_covers(kind: str) -> None:
    events = answer_events()
    # A server that ignores the cursor and replays from the start.
    api = FakeApi().on("GET", EVENTS, sse_response(frames(events)))
    client = make_client(kind, api)

    got = await read(client.responses.stream(CHAT_ID, RESPONSE_ID, after=2))
    await close(client)

    assert got.events == events[2:]


async def test_a_stream_can_be_entered_only_once(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client(kind, api)
    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    async with opened(stream):
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with opened(stream):
            pass
    await close(client)
    assert len(api.requests) == 1, "the message was sent once"


def test_the_sync_stream_is_a_context_manager_and_an_iterator() -> None:
    api = FakeApi().on("POST", SEND, sse_response(frames(answer_events())))
    client = make_client("sync", api)
    stream = client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID)
    assert isinstance(stream, Stream)
    with stream as entered:
        assert entered is stream
        assert iter(stream) is stream
    client.close()


def test_a_connection_refused_on_open_raises_a_connection_error() -> None:
    api = FakeApi().on("POST", SEND, httpx.ConnectError("refused"))
    client = make_client("sync", api)
    with pytest.raises(APIConnectionError), client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID):
        pass
    client.close()
    assert len(api.requests) == 1, "a send is never repeated: it may have been received"
