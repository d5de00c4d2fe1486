"""Forms: the pending form read from a paused answer (`stream.form_request()`), its submit as a
stream that resumes like any other, and the errors a submit can meet. Both clients.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.client.client_support import (
    CHAT_ID,
    IDS,
    RESPONSE_ID,
    FakeApi,
    answer_events,
    body_of,
    close,
    cut,
    error,
    frame_ends,
    frames,
    make_client,
    read,
    resolve,
    sse_response,
)

from kaiwa.client import (
    BadRequestError,
    ConflictError,
    FormRequest,
    KaiwaError,
    NotFoundError,
)
from kaiwa.protocol import (
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ReasoningStepEnd,
    ReasoningStepStart,
    ResponseState,
    StepEnd,
    StepResult,
    StepStart,
    TokenUsage,
)

FORM_ID = "a11e15de-403f-4245-a564-fe5a5773e93e"
STEP_ID = "step_c9b4"
SUBMIT = f"/chats/{CHAT_ID}/form-requests/{FORM_ID}/submit"
EVENTS = f"/chats/{CHAT_ID}/responses/{RESPONSE_ID}/events"
FIELDS: list[dict[str, Any]] = [
    {"name": "name", "label": "お名前", "type": "shortText", "required": True},
    {"name": "count", "label": "人数", "type": "number", "required": True},
    {
        "name": "plan",
        "label": "プラン",
        "type": "radio",
        "required": False,
        "options": [{"value": "matsu", "label": "松"}, {"value": "take", "label": "竹"}],
    },
]
ASK = "回答の前に、フォームへのご記入をお願いします。"


def form_start(form_id: str = FORM_ID, step_id: str = STEP_ID) -> ReasoningStepStart:
    return ReasoningStepStart(
        **IDS,
        step=StepStart(
            id=step_id,
            type="consultant_request_form",
            tool_name="request_form",
            content="フォームへの入力をお願いしています",
            args={"form_request_id": form_id, "fields": FIELDS, "title": "予約"},
            timestamp="2025-04-01T09:00:00Z",
        ),
    )


def paused_events() -> list[Event]:
    created, *_ = answer_events()
    return [
        created,
        OutputTextDelta(**IDS, delta=ASK),
        form_start(),
        OutputTextCompleted(**IDS, final_text=ASK, usage=TokenUsage(), status="awaiting_form"),
    ]


def continued_events() -> list[Event]:
    created, *rest = answer_events(["ご記入", "ありがとうございます。"])
    end = ReasoningStepEnd(
        **IDS,
        step=StepEnd(
            id=STEP_ID,
            type="consultant_request_form",
            tool_name="request_form",
            result=StepResult(success=True, data={"name": "山田", "count": 2}),
            timestamp="2025-04-01T09:00:05Z",
        ),
    )
    return [created, end, *rest]


def state_of(events: list[Event]) -> ResponseState:
    state = ResponseState()
    for event in events:
        state.apply(event)
    return state


def test_a_paused_answer_gives_its_form_typed() -> None:
    form = FormRequest.from_state(state_of(paused_events()))

    assert form is not None
    assert (form.id, form.title, form.step_id) == (FORM_ID, "予約", STEP_ID)
    assert [field.name for field in form.fields] == ["name", "count", "plan"]
    assert form.fields[1].type == "number"
    assert [field.required for field in form.fields] == [True, True, False]
    assert [(o.value, o.label) for o in form.fields[2].options] == [
        ("matsu", "松"),
        ("take", "竹"),
    ]


def test_no_form_before_the_answer_ends_or_when_it_ends_otherwise() -> None:
    running = paused_events()[:-1]
    completed = [*running, OutputTextCompleted(**IDS, final_text=ASK, usage=TokenUsage())]

    assert FormRequest.from_state(state_of(running)) is None
    assert FormRequest.from_state(state_of(completed)) is None
    assert FormRequest.from_state(ResponseState()) is None


def test_the_form_is_the_last_one_still_unanswered() -> None:
    events = paused_events()
    older = form_start(form_id="old-form", step_id="step_old")
    answered = ReasoningStepEnd(
        **IDS,
        step=StepEnd(
            id="step_old",
            type="consultant_request_form",
            tool_name="request_form",
            result=StepResult(success=True, data={}),
            timestamp="2025-04-01T09:00:00Z",
        ),
    )
    form = FormRequest.from_state(state_of([events[0], older, answered, *events[1:]]))

    assert form is not None
    assert form.id == FORM_ID


def test_a_form_this_client_cannot_read_raises_a_kaiwa_error() -> None:
    events = paused_events()
    start = form_start()
    start.step.args["fields"] = [{"name": "x", "label": "x", "type": "colour"}]

    with pytest.raises(KaiwaError, match="Unreadable form request"):
        FormRequest.from_state(state_of([events[0], start, events[-1]]))


async def test_the_stream_of_a_paused_answer_gives_the_form(kind: str) -> None:
    send = f"/chats/{CHAT_ID}/messages"
    api = FakeApi().on("POST", send, sse_response(frames(paused_events())))
    client = make_client(kind, api)

    got = await read(client.messages.stream(CHAT_ID, "予約をお願いします", agent_id="a"))
    await close(client)

    assert got.text == ASK
    assert got.stream.state.status == "awaiting_form"
    form = got.stream.form_request()
    assert form is not None
    assert form.id == FORM_ID


async def test_forms_stream_submits_the_values_and_streams_the_rest(kind: str) -> None:
    api = FakeApi().on("POST", SUBMIT, sse_response(frames(continued_events())))
    client = make_client(kind, api)

    got = await read(
        client.forms.stream(CHAT_ID, FORM_ID, {"name": "山田", "count": 2}, external_user_id="u")
    )
    await close(client)

    assert got.error is None
    assert got.events == continued_events()
    assert got.text == "ご記入ありがとうございます。"
    assert got.stream.form_request() is None
    (request,) = api.requests
    assert body_of(request) == {
        "values": {"name": "山田", "count": 2},
        "stream": True,
        "external_user_id": "u",
    }
    assert request.headers["accept"] == "text/event-stream"


async def test_a_cut_continuation_resumes_from_the_events_endpoint(kind: str) -> None:
    body = frames(continued_events())
    at = frame_ends(body)[2] + 5  # inside the first delta
    rest = frames(continued_events()[2:], first_id=3)
    api = (
        FakeApi()
        .on("POST", SUBMIT, sse_response(cut(body, at)))
        .on("GET", EVENTS, sse_response(rest))
    )
    client = make_client(kind, api)

    got = await read(client.forms.stream(CHAT_ID, FORM_ID, {"name": "山田", "count": 2}))
    await close(client)

    assert got.events == continued_events()
    (resume,) = api.sent("GET", EVENTS)
    assert resume.headers["last-event-id"] == "2"
    assert len(api.sent("POST", SUBMIT)) == 1, "the submit itself is never repeated"


@pytest.mark.parametrize(
    ("status", "code", "message", "family"),
    [
        (400, 10006, "values.count: must be a number", BadRequestError),
        (409, 10004, f"Form request {FORM_ID} has already been submitted", ConflictError),
        (404, 10003, f"Form request {FORM_ID} not found", NotFoundError),
    ],
)
async def test_a_refused_submit_raises_its_family(
    kind: str, status: int, code: int, message: str, family: type[Exception]
) -> None:
    api = FakeApi().on("POST", SUBMIT, lambda _request: error(status, code, message))
    client = make_client(kind, api)

    with pytest.raises(family) as raised:
        await resolve(client.forms.submit(CHAT_ID, FORM_ID, {"count": "two"}))
    got = await read(client.forms.stream(CHAT_ID, FORM_ID, {"count": "two"}))
    await close(client)

    assert str(raised.value).startswith(message)
    assert isinstance(got.error, family)
    assert got.events == []
