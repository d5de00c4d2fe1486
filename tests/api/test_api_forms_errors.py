"""A form submit with bad values names every bad field: in `message`, and as `errors`."""

from __future__ import annotations

from typing import Any

from api_support import Api, data, envelope, parse_stream

from kaiwa.protocol import ReasoningStepStart

FORM = {
    "title": "予約",
    "fields": [
        {"name": "name", "label": "お名前", "type": "shortText", "required": True},
        {"name": "age", "type": "number"},
        {"name": "when", "type": "date"},
        {"name": "plan", "type": "dropdown", "options": ["free", "pro"], "required": True},
        {"name": "topics", "type": "checkbox", "options": ["billing", "support"]},
        {"name": "note", "type": "longText"},
    ],
}


async def paused(api: Api) -> tuple[str, int, str]:
    """A chat whose answer waits for the form; the agent, the chat and the form request ids."""
    agent = await api.create_agent(
        name="受付", unified_tools=[{"type": "request_form", "custom_form_schema": FORM}]
    )
    chat = await api.create_chat(agent["id"])
    stream = await api.stream(chat["id"], "予約したいです", agent_id=agent["id"])
    (start,) = stream.of("response.reasoning_step.start")
    assert isinstance(start, ReasoningStepStart)
    return agent["id"], chat["id"], start.step.args["form_request_id"]


async def submit(api: Api, chat_id: int, form_id: str, values: Any, **fields: Any) -> Any:
    url = f"/api/v1/chats/{chat_id}/form-requests/{form_id}/submit"
    return await api.post(url, json={"values": values, **fields})


async def test_three_bad_fields_are_all_reported(api: Api) -> None:
    _, chat_id, form_id = await paused(api)
    response = await submit(api, chat_id, form_id, {"age": "forty", "plan": "gold"})
    body = envelope(response)
    assert (response.status_code, body["error_code"], body["data"]) == (400, 10006, None)
    assert body["errors"] == [
        {"field": "name", "reason": "required"},
        {"field": "age", "reason": "type"},
        {"field": "plan", "reason": "option"},
    ]
    assert body["message"] == (
        "values.name: required; values.age: must be a number; "
        "values.plan: 'gold' is not one of free, pro"
    )


async def test_every_rule_has_its_reason_and_a_good_submit_still_goes_through(api: Api) -> None:
    agent_id, chat_id, form_id = await paused(api)
    before = await api.messages(chat_id)
    values = {
        "color": "red",
        "name": 5,
        "age": True,
        "when": "tomorrow",
        "plan": "pro",
        "topics": ["billing", "cooking"],
        "note": "長" * 10_001,
    }
    body = envelope(await submit(api, chat_id, form_id, values))
    assert body["errors"] == [
        {"field": "color", "reason": "unknown"},
        {"field": "name", "reason": "type"},
        {"field": "age", "reason": "type"},
        {"field": "when", "reason": "date"},
        {"field": "topics", "reason": "option"},
        {"field": "note", "reason": "too_long"},
    ]
    assert body["message"].startswith("values.color: the form has no such field; values.name:")
    assert await api.messages(chat_id) == before

    good = {"name": "山田", "plan": "pro", "when": "2026-12-01", "topics": ["support"]}
    resumed = parse_stream((await submit(api, chat_id, form_id, good, agent_id=agent_id)).content)
    assert resumed.completed.status == "completed"


async def test_other_errors_carry_no_errors_key(api: Api) -> None:
    _, chat_id, form_id = await paused(api)
    unknown = "00000000-0000-4000-8000-000000000000"
    for response in (
        await submit(api, chat_id, unknown, {"name": "a", "plan": "pro"}),
        await submit(api, chat_id, form_id, "not an object"),
    ):
        assert "errors" not in envelope(response)
    assert isinstance(
        data(await submit(api, chat_id, form_id, {"name": "a", "plan": "pro"}, stream=False)), str
    )
