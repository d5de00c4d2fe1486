"""`ResponseState.apply`: folding a stream's events into text, steps, title, usage and status."""

from __future__ import annotations

from kaiwa.protocol.events import (
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
)
from kaiwa.protocol.state import ResponseState

IDS = {"response_id": "resp_01", "chat_id": 7}
USAGE = TokenUsage(
    total_prompt_tokens=12, total_completion_tokens=5, total_tokens=17, total_calls=2
)


def delta(text: str) -> OutputTextDelta:
    return OutputTextDelta(**IDS, delta=text)


def step_start(step_id: str, content: str = "検索しています") -> ReasoningStepStart:
    step = StepStart(
        id=step_id,
        type="consultant_search_web",
        tool_name="search_web",
        content=content,
        args={"query": "営業時間"},
        timestamp="2025-01-02T03:04:05Z",
    )
    return ReasoningStepStart(**IDS, step=step)


def step_end(step_id: str, data: object = None) -> ReasoningStepEnd:
    step = StepEnd(
        id=step_id,
        type="consultant_search_web",
        tool_name="search_web",
        result=StepResult(success=True, data=data),
        timestamp="2025-01-02T03:04:09Z",
        token_usage=TokenUsage(total_calls=1),
    )
    return ReasoningStepEnd(**IDS, step=step)


def completed(final_text: str, **kwargs: object) -> OutputTextCompleted:
    return OutputTextCompleted.model_validate(
        {**IDS, "final_text": final_text, "usage": USAGE, **kwargs}
    )


def fold(*events: Event) -> ResponseState:
    state = ResponseState()
    for event in events:
        state.apply(event)
    return state


def test_new_state_is_in_progress_and_empty() -> None:
    state = ResponseState()
    assert (state.status, state.done, state.text, state.steps) == ("in_progress", False, "", [])
    assert state.usage == TokenUsage()


def test_created_sets_response_and_chat() -> None:
    created = ResponseCreated(
        **IDS, agent_id="a", model="m", conversation_group_id="g", user_conversation_id=1
    )
    state = fold(created)
    assert (state.response_id, state.chat_id) == ("resp_01", 7)
    assert not state.done


def test_any_event_names_the_response_when_created_was_missed_on_resume() -> None:
    state = fold(delta("続き"))
    assert (state.response_id, state.chat_id) == ("resp_01", 7)


def test_deltas_concatenate_in_order() -> None:
    state = fold(delta("営業"), delta("時間は"), delta("😀"), delta(" 9時です"))
    assert state.text == "営業時間は😀 9時です"
    assert state.status == "in_progress"


def test_step_start_then_end_merge_into_one_step_by_id() -> None:
    state = fold(step_start("s1"), step_end("s1", data={"hits": 2}))
    [step] = state.steps
    assert step["id"] == "s1"
    assert step["content"] == "検索しています"
    assert step["args"] == {"query": "営業時間"}
    assert step["result"] == {"success": True, "data": {"hits": 2}}
    assert step["token_usage"]["total_calls"] == 1
    assert step["timestamp"] == "2025-01-02T03:04:09Z"


def test_interleaved_steps_end_on_their_own_start() -> None:
    state = fold(
        step_start("s1", "一つ目"),
        step_start("s2", "二つ目"),
        step_end("s2", data="b"),
        step_end("s1", data="a"),
    )
    assert [(s["id"], s["content"], s["result"]["data"]) for s in state.steps] == [
        ("s1", "一つ目", "a"),
        ("s2", "二つ目", "b"),
    ]


def test_step_end_without_its_start_is_kept() -> None:
    # A form's continuation starts with the end of a step begun in the previous response.
    state = fold(step_end("form_1", data={"name": "山田"}))
    [step] = state.steps
    assert step["id"] == "form_1"
    assert step["result"]["data"] == {"name": "山田"}
    assert "content" not in step


def test_open_step_has_no_result() -> None:
    [step] = fold(step_start("s1")).steps
    assert "result" not in step


def test_title_update_sets_title() -> None:
    assert fold(ChatTitleUpdated(**IDS, name="営業時間")).title == "営業時間"


def test_completed_final_text_wins_over_deltas() -> None:
    state = fold(delta("下書き"), completed("完成した文章"))
    assert state.text == "完成した文章"


def test_completed_sets_status_usage_and_done() -> None:
    state = fold(delta("a"), completed("a"))
    assert state.status == "completed"
    assert state.done
    assert state.usage == USAGE
    assert state.error is None


def test_completed_carries_cancelled_and_awaiting_form_status() -> None:
    assert fold(delta("途中"), completed("途中", status="cancelled")).status == "cancelled"
    assert fold(completed("", status="awaiting_form")).status == "awaiting_form"


def test_error_fails_the_response_and_keeps_the_partial_text() -> None:
    error = ResponseError(**IDS, message="upstream failed", code=10009)
    state = fold(delta("途中まで"), error)
    assert state.status == "failed"
    assert state.done
    assert state.error == error
    assert state.text == "途中まで"
