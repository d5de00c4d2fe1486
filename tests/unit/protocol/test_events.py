"""Event models: JSON round trips, forward compatibility and the union's discriminator."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from kaiwa.protocol.events import (
    TERMINAL_TYPES,
    ChatTitleUpdated,
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ReasoningStepEnd,
    ReasoningStepStart,
    ResponseCreated,
    ResponseError,
    StepEnd,
    StepResult,
    StepStart,
    TokenUsage,
    parse_event,
)

IDS = {"response_id": "resp_01", "chat_id": 12345}

STEP_START = StepStart(
    id="step_1",
    type="consultant_retrieve_context_source",
    tool_name="retrieve_context_objs",
    content="ナレッジベースを検索しています",
    args={"query": "営業時間", "top_k": 3, "filters": {"tags": ["faq"]}},
    timestamp="2025-01-02T03:04:05Z",
)
STEP_END = StepEnd(
    id="step_1",
    type="consultant_retrieve_context_source",
    tool_name="retrieve_context_objs",
    result=StepResult(success=True, data=[{"id": "src_1", "title": "FAQ", "score": 0.87}]),
    timestamp="2025-01-02T03:04:06Z",
    token_usage=TokenUsage(total_prompt_tokens=5, total_tokens=5, total_calls=1),
)

EVERY_EVENT: list[Event] = [
    ResponseCreated(
        **IDS,
        agent_id="agent_1",
        model="builtin/extractive",
        conversation_group_id="grp_1",
        user_conversation_id=41,
    ),
    ReasoningStepStart(**IDS, step=STEP_START),
    ReasoningStepEnd(**IDS, step=STEP_END),
    OutputTextDelta(**IDS, delta="営業時間は😀\n"),
    ChatTitleUpdated(**IDS, name="営業時間について"),
    OutputTextCompleted(
        **IDS,
        final_text="営業時間は😀\n",
        usage=TokenUsage(total_prompt_tokens=10, total_completion_tokens=4, total_tokens=14),
        status="cancelled",
    ),
    ResponseError(**IDS, message="The model failed", code=10009),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_every_event_round_trips_through_json(event: Event) -> None:
    parsed = parse_event(event.model_dump_json())
    assert type(parsed) is type(event)
    assert parsed == event


def test_every_event_type_is_covered_by_the_round_trip() -> None:
    union, _discriminator = get_args(Event)
    assert {type(e) for e in EVERY_EVENT} == set(get_args(union))


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_payload_carries_type_response_id_and_chat_id(event: Event) -> None:
    payload = json.loads(event.model_dump_json())
    assert payload["type"] == event.type
    assert payload["response_id"] == "resp_01"
    assert payload["chat_id"] == 12345


def test_parse_event_accepts_bytes() -> None:
    raw = '{"type":"response.output_text.delta","response_id":"r","chat_id":1,"delta":"は"}'
    assert parse_event(raw.encode()) == OutputTextDelta(response_id="r", chat_id=1, delta="は")


def test_unknown_fields_are_kept_for_forward_compatibility() -> None:
    raw = {
        "type": "response.reasoning_step.end",
        **IDS,
        "trace_id": "t-9",
        "step": {
            **json.loads(STEP_END.model_dump_json()),
            "duration_ms": 120,
            "result": {"success": True, "data": None, "cached": True},
        },
    }
    event = parse_event(json.dumps(raw))
    assert isinstance(event, ReasoningStepEnd)
    assert event.model_extra == {"trace_id": "t-9"}
    assert event.step.model_extra == {"duration_ms": 120}
    assert event.step.result.model_extra == {"cached": True}
    assert json.loads(event.model_dump_json()) == raw


def test_union_discriminates_on_type_not_on_shape() -> None:
    # The same fields under two types: `type` alone decides the model, the rest are extras.
    fields = {**IDS, "delta": "x", "name": "y"}
    delta = parse_event(json.dumps({"type": "response.output_text.delta", **fields}))
    title = parse_event(json.dumps({"type": "response.chat.title.updated", **fields}))
    assert isinstance(delta, OutputTextDelta)
    assert delta.delta == "x"
    assert isinstance(title, ChatTitleUpdated)
    assert title.name == "y"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "response.output_text.done", **IDS, "delta": "x"},
        {"type": "", **IDS},
        {**IDS, "delta": "x"},
    ],
    ids=["unknown-type", "empty-type", "missing-type"],
)
def test_unknown_or_missing_event_type_raises(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_event(json.dumps(payload))


def test_missing_required_field_raises() -> None:
    with pytest.raises(ValidationError, match="delta"):
        parse_event(json.dumps({"type": "response.output_text.delta", **IDS}))


def test_step_type_outside_the_fixed_set_raises() -> None:
    raw = json.loads(ReasoningStepStart(**IDS, step=STEP_START).model_dump_json())
    raw["step"]["type"] = "consultant_do_anything"
    with pytest.raises(ValidationError):
        parse_event(json.dumps(raw))


def test_completed_status_defaults_to_completed() -> None:
    event = OutputTextCompleted(**IDS, final_text="", usage=TokenUsage())
    assert event.status == "completed"


def test_step_end_token_usage_defaults_to_zeros() -> None:
    end = StepEnd(
        id="s",
        type="consultant_lookup",
        tool_name="lookup",
        result=StepResult(success=False),
        timestamp="2025-01-02T03:04:05Z",
    )
    assert end.token_usage == TokenUsage()
    assert end.result.data is None


def test_terminal_types_are_completed_and_error() -> None:
    assert {"response.output_text.completed", "response.error"} == TERMINAL_TYPES


def test_token_usage_adds_field_by_field() -> None:
    a = TokenUsage(
        total_prompt_tokens=10, total_completion_tokens=4, total_tokens=14, total_calls=1
    )
    b = TokenUsage(total_prompt_tokens=3, total_completion_tokens=2, total_tokens=5, total_calls=2)
    assert a + b == TokenUsage(
        total_prompt_tokens=13, total_completion_tokens=6, total_tokens=19, total_calls=3
    )
    assert a == TokenUsage(
        total_prompt_tokens=10, total_completion_tokens=4, total_tokens=14, total_calls=1
    )


def test_token_usage_sums_from_zero() -> None:
    usages = [TokenUsage(total_tokens=n, total_calls=1) for n in (1, 2, 3)]
    assert sum(usages, TokenUsage()) == TokenUsage(total_tokens=6, total_calls=3)
