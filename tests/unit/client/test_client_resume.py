"""Resume: a stream whose connection drops mid-answer reconnects to the response's events with
the last event id and hands out every event exactly once; retries are bounded. Both clients.

The fake server's first body breaks off with `httpx.ReadError` (a reset connection) after some
bytes — usually inside a frame — and its events endpoint replays from the cursor it is given.
"""

from __future__ import annotations

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    CHAT_ID,
    KEY,
    RESPONSE_ID,
    Body,
    FakeApi,
    answer_events,
    close,
    cut,
    error,
    frame_ends,
    frames,
    make_client,
    read,
    sse_response,
)

from kaiwa.client import (
    APIConnectionError,
    APITimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ResumePolicy,
)
from kaiwa.protocol import Event

SEND = f"/chats/{CHAT_ID}/messages"
EVENTS = f"/chats/{CHAT_ID}/responses/{RESPONSE_ID}/events"
PIECES = [f"{n}番目。" for n in range(1, 9)]
ALL = answer_events(PIECES)
RAW = frames(ALL)
TEXT = "".join(PIECES)


def replay(events: list[Event] = ALL, *, honour_cursor: bool = True) -> object:
    """The events endpoint: every event after `Last-Event-ID` (or all of them), then [DONE]."""

    def reply(request: httpx.Request) -> httpx.Response:
        after = int(request.headers.get("last-event-id", "0")) if honour_cursor else 0
        return sse_response(frames(events[after:], first_id=after + 1))

    return reply


def in_the_middle_of_frame(n: int) -> int:
    """A byte offset inside the n-th frame (1-based, the ping is frame 0)."""
    ends = frame_ends(RAW)
    return ends[n] - 7


@pytest.mark.parametrize("frame", [1, 2, 5, 9])
async def test_a_cut_mid_frame_resumes_after_the_last_whole_event(kind: str, frame: int) -> None:
    at = in_the_middle_of_frame(frame)
    api = FakeApi().on("POST", SEND, sse_response(cut(RAW, at))).on("GET", EVENTS, replay())
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.error is None
    assert got.events == ALL, "every event, exactly once, in order"
    assert got.text == TEXT
    (resume,) = api.sent("GET", EVENTS)
    # Cut inside the first event: nothing delivered, so the replay starts from the beginning.
    assert resume.headers.get("last-event-id") == (str(frame - 1) if frame > 1 else None)
    assert resume.headers["x-api-key"] == KEY
    assert resume.headers["accept"] == "text/event-stream"


async def test_an_id_line_of_a_cut_frame_does_not_move_the_cursor(kind: str) -> None:
    # Cut just after the `id: 3` line of the third frame: event 3 was not delivered.
    at = RAW.index(b"id: 3\n") + len(b"id: 3\n")
    api = FakeApi().on("POST", SEND, sse_response(cut(RAW, at))).on("GET", EVENTS, replay())
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert api.sent("GET", EVENTS)[0].headers["last-event-id"] == "2"


async def test_events_replayed_twice_are_handed_out_once(kind: str) -> None:
    at = in_the_middle_of_frame(4)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, at)))
        .on("GET", EVENTS, replay(honour_cursor=False))
    )
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert got.text == TEXT


async def test_a_body_that_ends_without_done_resumes(kind: str) -> None:
    at = frame_ends(RAW)[3]  # cleanly after the third event, no error, no [DONE]
    api = FakeApi().on("POST", SEND, sse_response(Body([RAW[:at]]))).on("GET", EVENTS, replay())
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert api.sent("GET", EVENTS)[0].headers["last-event-id"] == "3"


async def test_a_read_timeout_resumes_too(kind: str) -> None:
    at = frame_ends(RAW)[2]
    body = Body([RAW[:at]], fail=httpx.ReadTimeout("no byte for 90 s"))
    api = FakeApi().on("POST", SEND, sse_response(body)).on("GET", EVENTS, replay())
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL


async def test_no_resume_once_the_terminal_event_arrived(kind: str) -> None:
    at = len(RAW) - 5  # inside `data: [DONE]`: `completed` is in, nothing is missing
    api = FakeApi().on("POST", SEND, sse_response(cut(RAW, at)))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert api.sent("GET", EVENTS) == []


async def test_every_drop_on_the_way_is_survived(kind: str) -> None:
    # Each connection delivers one new event, then drops: far more drops than `attempts`,
    # but each reconnection makes progress, so the budget starts over every time.
    def one_event_then_drop(request: httpx.Request) -> httpx.Response:
        after = int(request.headers["last-event-id"])
        rest = frames(ALL[after:], first_id=after + 1)
        return sse_response(cut(rest, frame_ends(rest)[1] + 3))

    first = frames(ALL)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(first, frame_ends(first)[1] + 3)))
        .on("GET", EVENTS, one_event_then_drop)
    )
    client = make_client(kind, api, resume=ResumePolicy(attempts=2, backoff=0.0))

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    resumes = api.sent("GET", EVENTS)
    assert [r.headers["last-event-id"] for r in resumes] == [str(n) for n in range(1, len(ALL))]


async def test_resume_retries_a_failed_reconnection(kind: str) -> None:
    at = in_the_middle_of_frame(3)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, at)))
        .on(
            "GET",
            EVENTS,
            httpx.ConnectError("refused"),
            error(503, 10005, "shutting down"),
            error(429, 10007, "slow down", **{"Retry-After": "0"}),
            replay(),
        )
    )
    client = make_client(kind, api, resume=ResumePolicy(attempts=4, backoff=0.0))

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert len(api.sent("GET", EVENTS)) == 4
    assert {r.headers["last-event-id"] for r in api.sent("GET", EVENTS)} == {"2"}


async def test_resume_gives_up_after_the_attempts(kind: str) -> None:
    at = in_the_middle_of_frame(3)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, at)))
        .on("GET", EVENTS, httpx.ConnectError("refused"))
    )
    client = make_client(kind, api, resume=ResumePolicy(attempts=3, backoff=0.0))

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL[:2], "what arrived before the drop was handed out"
    assert type(got.error) is APIConnectionError
    assert "3 attempts" in str(got.error)
    assert isinstance(got.error.__cause__, httpx.ConnectError)
    assert len(api.sent("GET", EVENTS)) == 3


async def test_giving_up_after_timeouts_is_a_timeout_error(kind: str) -> None:
    at = in_the_middle_of_frame(3)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, at)))
        .on("GET", EVENTS, httpx.ConnectTimeout("no answer"))
    )
    client = make_client(kind, api, resume=ResumePolicy(attempts=1, backoff=0.0))
    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)
    assert type(got.error) is APITimeoutError


async def test_resume_turned_off_raises_at_the_first_drop(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(cut(RAW, in_the_middle_of_frame(3))))
    client = make_client(kind, api, resume=ResumePolicy(attempts=0))

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL[:2]
    assert type(got.error) is APIConnectionError
    assert api.sent("GET", EVENTS) == []


@pytest.mark.parametrize(
    ("refusal", "family"),
    [
        (error(404, 10003, "Response not found"), NotFoundError),
        (error(401, 10001, "Invalid API key"), PermissionDeniedError),
    ],
)
async def test_a_refused_resume_raises_at_once(
    kind: str, refusal: httpx.Response, family: type[Exception]
) -> None:
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, in_the_middle_of_frame(3))))
        .on(
            "GET", EVENTS, lambda _request: httpx.Response(refusal.status_code, json=refusal.json())
        )
    )
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL[:2]
    assert type(got.error) is family
    assert len(api.sent("GET", EVENTS)) == 1


async def test_without_a_response_id_header_the_first_event_names_the_response(
    kind: str,
) -> None:
    at = in_the_middle_of_frame(3)
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(RAW, at), response_id=None))
        .on("GET", EVENTS, replay())
    )
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL
    assert got.stream.response_id == RESPONSE_ID


async def test_a_drop_before_any_event_or_id_cannot_be_resumed(kind: str) -> None:
    api = FakeApi().on("POST", SEND, sse_response(cut(RAW, 3), response_id=None))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert type(got.error) is APIConnectionError
    assert "cannot be resumed" in str(got.error)
    assert api.sent("GET", EVENTS) == []


async def test_the_resumed_stream_reports_errors_after_its_events(kind: str) -> None:
    from tests.unit.client.client_support import failure

    failing = [*ALL[:4], failure(10009, "upstream gave up")]
    api = (
        FakeApi()
        .on("POST", SEND, sse_response(cut(frames(failing), in_the_middle_of_frame(3))))
        .on("GET", EVENTS, replay(failing))
    )
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "?", agent_id=AGENT_ID))
    await close(client)

    assert got.events == ALL[:4]
    assert got.error is not None
    assert got.error.code == 10009  # type: ignore[attr-defined]
