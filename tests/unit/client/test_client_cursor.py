"""`StreamCursor` and `ResumePolicy`, no I/O: bytes in, events out; when and where to resume."""

from __future__ import annotations

import httpx
import pytest
from tests.unit.client.client_support import (
    CHAT_ID,
    RESPONSE_ID,
    answer_events,
    failure,
    frame_ends,
    frames,
)

from kaiwa.client import (
    APIConnectionError,
    APITimeoutError,
    NotFoundError,
    RateLimitedError,
    ResumePolicy,
    ServerError,
)
from kaiwa.client._base import BaseClient, StreamCursor
from kaiwa.protocol import Event

EVENTS = answer_events(["こん", "にち", "は"])
RAW = frames(EVENTS)


def cursor(**options: object) -> StreamCursor:
    policy = options.pop("policy", ResumePolicy(attempts=3, backoff=0.5, max_backoff=1.5))
    return StreamCursor(chat_id=CHAT_ID, policy=policy, **options)  # type: ignore[arg-type]


def feed(c: StreamCursor, *chunks: bytes) -> list[Event]:
    return [event for chunk in chunks for event in c.feed(chunk)]


def opened(c: StreamCursor, response_id: str | None = RESPONSE_ID) -> None:
    headers = {"x-kaiwa-response-id": response_id} if response_id else {}
    c.opened(httpx.Response(200, headers=headers))


def test_policy_backs_off_exponentially_up_to_a_ceiling() -> None:
    policy = ResumePolicy(attempts=6, backoff=0.25, max_backoff=1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_the_default_policy() -> None:
    policy = ResumePolicy()
    assert (policy.attempts, policy.backoff, policy.max_backoff) == (5, 0.5, 8.0)


def test_a_whole_body_gives_every_event_and_needs_no_resume() -> None:
    c = cursor()
    opened(c)
    assert feed(c, RAW) == EVENTS
    assert c.finished
    assert c.last_event_id == len(EVENTS)
    assert c.ended(None) is None
    assert c.state.text == "こんにちは"


def test_every_split_of_the_body_gives_the_same_events() -> None:
    for at in range(1, len(RAW)):
        c = cursor()
        assert feed(c, RAW[:at], RAW[at:]) == EVENTS, at


def test_the_cursor_moves_only_when_an_event_is_handed_out() -> None:
    c = cursor()
    opened(c)
    pending = c.feed(RAW)
    assert c.last_event_id is None
    assert next(pending) == EVENTS[0]
    assert c.last_event_id == 1
    assert c.state.response_id == RESPONSE_ID
    assert next(pending) == EVENTS[1]
    assert (c.last_event_id, c.state.text) == (2, "こん")


def test_a_cut_after_an_id_line_resumes_before_that_event() -> None:
    c = cursor()
    opened(c)
    at = RAW.index(b"id: 3\n") + len(b"id: 3\n")
    assert feed(c, RAW[:at]) == EVENTS[:2]
    assert c.ended(httpx.ReadError("reset")) == 0.5
    assert c.last_event_id == 2


def test_a_new_connection_forgets_the_half_frame_of_the_old_one() -> None:
    c = cursor()
    opened(c)
    feed(c, RAW[: frame_ends(RAW)[2] + 10])
    c.ended(httpx.ReadError("reset"))
    opened(c)
    rest = frames(EVENTS[2:], first_id=3)
    assert feed(c, rest) == EVENTS[2:]


def test_ids_at_or_below_the_cursor_are_skipped() -> None:
    c = cursor(after=3, response_id=RESPONSE_ID)
    assert feed(c, RAW) == EVENTS[3:]


def test_nothing_after_done_counts() -> None:
    c = cursor()
    extra = frames([EVENTS[1]], first_id=9, done=False)
    assert feed(c, frames(EVENTS[:1], done=True), extra) == EVENTS[:1]
    assert c.finished
    assert c.last_event_id == 1


def test_an_error_event_is_kept_not_handed_out() -> None:
    c = cursor()
    body = frames([*EVENTS[:2], failure(10009, "upstream")])
    assert feed(c, body) == EVENTS[:2]
    assert c.finished
    assert c.error is not None
    assert c.error.code == 10009
    assert c.state.status == "failed"
    assert c.ended(None) is None


def test_ended_counts_failures_and_gives_up_after_the_attempts() -> None:
    c = cursor()
    opened(c)
    feed(c, RAW[: frame_ends(RAW)[2]])
    failure_ = httpx.ReadError("reset")
    assert [c.ended(failure_) for _ in range(3)] == [0.5, 1.0, 1.5]
    with pytest.raises(APIConnectionError, match="3 attempts") as caught:
        c.ended(failure_)
    assert caught.value.__cause__ is failure_


def test_a_new_event_restarts_the_budget() -> None:
    c = cursor()
    opened(c)
    ends = frame_ends(RAW)
    feed(c, RAW[: ends[1]])
    assert c.ended(None) == 0.5
    assert c.ended(None) == 1.0
    opened(c)
    feed(c, frames(EVENTS[1:2], first_id=2, done=False))
    assert c.failures == 0
    assert c.ended(None) == 0.5


def test_a_timeout_that_exhausts_the_attempts_is_a_timeout_error() -> None:
    c = cursor(policy=ResumePolicy(attempts=0), response_id=RESPONSE_ID)
    with pytest.raises(APITimeoutError):
        c.ended(httpx.ReadTimeout("silent"))


def test_a_refusal_that_is_not_temporary_is_raised_as_it_is() -> None:
    c = cursor(response_id=RESPONSE_ID)
    refusal = NotFoundError("gone", code=10003, status=404)
    with pytest.raises(NotFoundError):
        c.ended(refusal)
    assert c.failures == 0


def test_temporary_refusals_are_retried_and_retry_after_is_honoured() -> None:
    c = cursor(response_id=RESPONSE_ID)
    assert c.ended(ServerError("restarting", code=10005, status=503)) == 0.5
    limited = RateLimitedError("slow", code=10007, status=429, retry_after=1.2)
    assert c.ended(limited) == 1.2
    huge = RateLimitedError("slow", code=10007, status=429, retry_after=600)
    assert c.ended(huge) == 1.5, "never past the policy's ceiling"


def test_events_without_ids_cannot_be_resumed_without_duplicates() -> None:
    c = cursor()
    opened(c)
    body = b"event: response.output_text.delta\ndata: " + EVENTS[1].model_dump_json().encode()
    assert feed(c, body + b"\n\n") == [EVENTS[1]]
    with pytest.raises(APIConnectionError, match="cannot be resumed"):
        c.ended(None)


def test_the_resume_request_carries_the_cursor_and_the_key() -> None:
    base = BaseClient(
        base_url="http://kaiwa.test",
        api_key="k",
        timeout=90.0,
        resume=ResumePolicy(),
        headers=None,
    )
    c = cursor(response_id=RESPONSE_ID, after=7)
    request = base.resume_request(c)
    assert request.method == "GET"
    assert request.url.path == f"/api/v1/chats/{CHAT_ID}/responses/{RESPONSE_ID}/events"
    assert request.headers["last-event-id"] == "7"
    assert request.headers["x-api-key"] == "k"
    assert request.extensions["timeout"]["read"] == 90.0
