"""The agent loop: tool calls become reasoning steps; forms pause a turn; agents call agents."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import Api, Stream, data, error, parse_stream

from kaiwa.protocol import ReasoningStepEnd, ReasoningStepStart

FORM_SCHEMA = {
    "title": "Contact",
    "fields": [
        {"name": "name", "label": "お名前", "type": "shortText", "required": True},
        {"name": "age", "label": "Age", "type": "number", "required": False},
        {
            "name": "plan",
            "label": "Plan",
            "type": "dropdown",
            "required": True,
            "options": [{"value": "free", "label": "Free"}, {"value": "pro", "label": "Pro"}],
        },
        {"name": "when", "label": "Date", "type": "date", "required": False},
        {
            "name": "topics",
            "label": "Topics",
            "type": "checkbox",
            "required": False,
            "options": ["billing", "shipping"],
        },
    ],
}


def call(name: str, call_id: str = "call_1", **arguments: Any) -> dict[str, Any]:
    return {"tool_call": {"id": call_id, "name": name, "arguments": arguments}}


async def agent(
    api: Api, *, tools: list[dict[str, Any]], name: str = "scripted", **script: Any
) -> str:
    created = await api.create_agent(
        name=name,
        llm_model="scripted/test",
        unified_tools=tools,
        meta={"model_settings": {"script": script}},
    )
    agent_id: str = created["id"]
    return agent_id


def starts(stream: Stream) -> list[ReasoningStepStart]:
    return [e for e in stream.events if isinstance(e, ReasoningStepStart)]


def ends(stream: Stream) -> list[ReasoningStepEnd]:
    return [e for e in stream.events if isinstance(e, ReasoningStepEnd)]


async def submit(api: Api, chat_id: int, form_id: str, values: Any, **fields: Any) -> Any:
    return await api.post(
        f"/api/v1/chats/{chat_id}/form-requests/{form_id}/submit",
        json={"values": values, **fields},
    )


async def paused_on_form(api: Api) -> tuple[str, dict[str, Any], Stream]:
    agent_id = await agent(
        api,
        tools=[{"type": "request_form", "custom_form_schema": FORM_SCHEMA}],
        rounds=[
            [{"text": "先にフォームを。"}, call("request_form")],
            [{"text": "ありがとうございます。"}],
        ],
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "申し込みたいです", agent_id=agent_id)
    return agent_id, chat, stream


async def test_a_form_pauses_the_turn_and_a_submit_goes_on_with_it(api: Api) -> None:
    _, chat, stream = await paused_on_form(api)
    # The title is made beside the answer: it may come anywhere before the end.
    assert "response.chat.title.updated" in stream.types
    assert [t for t in stream.types if t != "response.chat.title.updated"] == [
        "response.created",
        "response.output_text.delta",
        "response.reasoning_step.start",
        "response.output_text.completed",
    ]
    (start,) = starts(stream)
    assert start.step.type == "consultant_request_form"
    assert start.step.tool_name == "request_form"
    assert start.step.content == "フォームへの入力をお願いしています"
    form_id = start.step.args["form_request_id"]
    assert [f["name"] for f in start.step.args["fields"]] == [
        "name",
        "age",
        "plan",
        "when",
        "topics",
    ]
    assert start.step.args["fields"][4]["options"][0] == {"value": "billing", "label": "billing"}
    assert not ends(stream)
    assert stream.completed.status == "awaiting_form"
    assert stream.completed.final_text == "先にフォームを。"
    listed = await api.messages(chat["id"])
    assert listed[-1]["meta"]["status"] == "awaiting_form"
    assert listed[-1]["content"] == "先にフォームを。"

    values = {"name": "山田", "age": 42, "plan": "pro", "when": "2026-12-01", "topics": ["billing"]}
    resumed = parse_stream((await submit(api, chat["id"], form_id, values)).content)
    assert resumed.types[:2] == ["response.created", "response.reasoning_step.end"]
    end = ends(resumed)[0]
    assert end.step.id == start.step.id
    assert end.step.result.success is True
    assert end.step.result.data == values
    assert resumed.deltas == "ありがとうございます。"
    assert resumed.completed.status == "completed"
    assert resumed.completed.final_text == "ありがとうございます。"
    assert resumed.events[0].conversation_group_id == stream.events[0].conversation_group_id  # type: ignore[attr-defined]

    again = await submit(api, chat["id"], form_id, values)
    assert "already" in error(again, 409, 10004)
    listed = await api.messages(chat["id"])
    assert [m["meta"]["status"] for m in listed] == ["completed", "awaiting_form", "completed"]
    assert listed[1]["meta"]["form_request"] == {"id": form_id, "status": "submitted"}
    assert listed[2]["content"] == "ありがとうございます。"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"plan": "pro"}, "values.name: required"),
        ({"name": "a", "plan": "gold"}, "values.plan"),
        ({"name": "a", "plan": "pro", "age": "forty"}, "values.age: must be a number"),
        ({"name": "a", "plan": "pro", "age": True}, "values.age: must be a number"),
        ({"name": 5, "plan": "pro"}, "values.name: must be a string"),
        ({"name": "a", "plan": "pro", "when": "tomorrow"}, "values.when: must be a date"),
        ({"name": "a", "plan": "pro", "topics": ["cooking"]}, "values.topics"),
        ({"name": "a", "plan": "pro", "color": "red"}, "values.color: the form has no such"),
    ],
)
async def test_bad_form_values_are_refused_and_change_nothing(
    api: Api, values: dict[str, Any], field: str
) -> None:
    _, chat, stream = await paused_on_form(api)
    form_id = starts(stream)[0].step.args["form_request_id"]
    before = await api.messages(chat["id"])
    assert field in error(await submit(api, chat["id"], form_id, values), 400, 10006)
    assert await api.messages(chat["id"]) == before
    # Still pending: a good submit goes through.
    good = await submit(api, chat["id"], form_id, {"name": "a", "plan": "free"}, stream=False)
    assert data(good) == "ありがとうございます。"


async def test_submit_errors(api: Api) -> None:
    agent_id, chat, stream = await paused_on_form(api)
    form_id = starts(stream)[0].step.args["form_request_id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    error(await submit(api, chat["id"], unknown, {}), 404, 10003)
    error(await submit(api, 999999, form_id, {}), 404, 10003)
    other = await api.create_chat(agent_id)
    error(await submit(api, other["id"], form_id, {"name": "a", "plan": "pro"}), 404, 10003)
    assert "values" in error(await submit(api, chat["id"], form_id, "nope"), 400, 10006)
    wrong_agent = await submit(
        api, chat["id"], form_id, {"name": "a", "plan": "pro"}, agent_id=api.demo_agent_id
    )
    assert "History agent mismatch" in error(wrong_agent, 400, 10006)


async def test_the_builtin_model_asks_for_its_form_once_per_chat(api: Api) -> None:
    created = await api.create_agent(
        name="受付",
        llm_model="builtin/extractive",
        unified_tools=[{"type": "request_form", "custom_form_schema": FORM_SCHEMA}],
    )
    chat = await api.create_chat(created["id"])
    first = await api.stream(chat["id"], "予約したいです", agent_id=created["id"])
    assert first.completed.status == "awaiting_form"
    assert "フォーム" in first.completed.final_text
    form_id = starts(first)[0].step.args["form_request_id"]
    values = {"name": "山田", "plan": "free"}
    after = parse_stream((await submit(api, chat["id"], form_id, values)).content)
    assert after.completed.status == "completed"
    assert "ありがとうございます" in after.completed.final_text
    second = await api.stream(chat["id"], "もう一つ質問です", agent_id=created["id"])
    assert not starts(second)
    assert second.completed.status == "completed"


async def test_another_agent_answers_a_sub_question_and_its_usage_counts(api: Api) -> None:
    helper = await agent(
        api,
        tools=[],
        name="料金係",
        answer=[{"text": "月額 1,000 円です。"}],
        usage={"prompt_tokens": 30, "completion_tokens": 7},
    )
    caller = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": helper, "invocation_instruction": "料金"}],
        rounds=[
            [call("call_agent", agent="料金係", question="料金はいくら?")],
            [{"text": "料金係によると月額 1,000 円です。"}],
        ],
        usage={"prompt_tokens": 10, "completion_tokens": 5},
    )
    chat = await api.create_chat(caller)
    stream = await api.stream(chat["id"], "料金は?", agent_id=caller)
    (start,) = starts(stream)
    (end,) = ends(stream)
    assert start.step.type == "consultant_call_agent"
    assert start.step.args == {"agent_id": helper, "agent": "料金係", "question": "料金はいくら?"}
    assert start.step.content == "料金係 に問い合わせています"
    assert end.step.result.success is True
    assert end.step.result.data["answer"] == "月額 1,000 円です。"
    assert end.step.token_usage.model_dump() == {
        "total_prompt_tokens": 30,
        "total_completion_tokens": 7,
        "total_tokens": 37,
        "total_calls": 1,
    }
    usage = stream.completed.usage
    # Two calls of the caller, one of the helper, one title call.
    assert usage.total_calls == 4
    assert usage.total_prompt_tokens >= 10 * 2 + 30
    assert stream.completed.final_text == "料金係によると月額 1,000 円です。"


async def test_a_cycle_of_agents_is_refused_inside_the_step(api: Api) -> None:
    first = await api.create_agent(name="A", llm_model="scripted/test")
    second = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": first["id"]}],
        name="B",
        rounds=[[call("call_agent", agent="A", question="back to you")], [{"text": "B done"}]],
    )
    data(
        await api.patch(
            f"/api/v1/agents/{first['id']}",
            json={
                "unified_tools": [{"type": "call_agent", "agent_id": second}],
                "meta": {
                    "model_settings": {
                        "script": {
                            "rounds": [
                                [call("call_agent", agent="B", question="q")],
                                [{"text": "A done"}],
                            ]
                        }
                    }
                },
            },
        )
    )
    data(await api.post(f"/api/v1/agents/{first['id']}/publish"))
    chat = await api.create_chat(first["id"])
    stream = await api.stream(chat["id"], "go", agent_id=first["id"])
    (end,) = ends(stream)
    assert end.step.result.success is True
    # B tried to call A back: that inner step failed, and B still answered.
    assert end.step.result.data["answer"] == "B done"
    assert end.step.result.data["steps"] == [
        {"type": "consultant_call_agent", "tool_name": "call_agent", "success": False}
    ]
    assert stream.completed.final_text == "A done"


async def test_calls_deeper_than_the_limit_fail_their_step(make_api: Any) -> None:
    api = await make_api(call_agent_max_depth=1)
    leaf = await agent(api, tools=[], name="leaf", answer=[{"text": "leaf"}])
    middle = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": leaf}],
        name="middle",
        rounds=[[call("call_agent", agent="leaf", question="q")], [{"text": "middle"}]],
    )
    top = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": middle}],
        name="top",
        rounds=[[call("call_agent", agent="middle", question="q")], [{"text": "top"}]],
    )
    chat = await api.create_chat(top)
    stream = await api.stream(chat["id"], "go", agent_id=top)
    (end,) = ends(stream)
    assert end.step.result.data["steps"] == [
        {"type": "consultant_call_agent", "tool_name": "call_agent", "success": False}
    ]


async def test_wrong_arguments_and_unknown_tools_never_stop_the_answer(api: Api) -> None:
    helper = await agent(api, tools=[], name="helper", answer=[{"text": "h"}])
    agent_id = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": helper}],
        rounds=[
            [
                call("call_agent", "c1", agent="nobody", question="q"),
                call("teleport", "c2", where="moon"),
                call("call_agent", "c3", agent="helper"),
                {"tool_call": {"id": "c4", "name": "call_agent", "arguments": '{"agent": "hel'}},
            ],
            [{"text": "done anyway"}],
        ],
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "hello", agent_id=agent_id)
    first, second, third = ends(stream)
    assert first.step.result.success is False
    assert "argument 'agent' must be one of: helper" in first.step.result.data["error"]
    assert second.step.result.success is False
    assert "argument 'question'" in second.step.result.data["error"]
    assert third.step.result.data == {
        "error": "the arguments the model wrote are not a JSON object"
    }
    assert [s.step.content for s in starts(stream)] == [
        "Asking nobody",
        "Asking helper",
        "Asking another agent",
    ]
    assert len(starts(stream)) == 3  # the unknown tool is no step
    assert stream.completed.final_text == "done anyway"
    assert stream.completed.status == "completed"


async def test_the_loop_stops_offering_tools_after_the_last_round(make_api: Any) -> None:
    api = await make_api(max_tool_rounds=2)
    helper = await agent(api, tools=[], name="helper", answer=[{"text": "h"}])
    agent_id = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": helper}],
        rounds=[
            [call("call_agent", "c1", agent="helper", question="1")],
            [call("call_agent", "c2", agent="helper", question="2")],
            [call("call_agent", "c3", agent="helper", question="3"), {"text": "final"}],
        ],
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "loop", agent_id=agent_id)
    assert len(ends(stream)) == 2
    assert stream.completed.final_text == "final"


@pytest.mark.parametrize("tags", [True, False])
async def test_tool_tags_are_the_same_in_deltas_final_text_reply_and_storage(
    api: Api, tags: bool
) -> None:
    helper = await agent(api, tools=[], name="helper", answer=[{"text": "h"}])
    script = {
        "rounds": [
            [{"text": "Asking. "}, call("call_agent", agent="helper", question="q")],
            [{"text": "Done."}],
        ]
    }
    agent_id = await agent(api, tools=[{"type": "call_agent", "agent_id": helper}], **script)
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "hi", agent_id=agent_id, include_tool_tags=tags)
    step_id = starts(stream)[0].step.id
    expected = f"Asking. <tool id={step_id}>call_agent</tool>Done." if tags else "Asking. Done."
    assert stream.deltas == expected
    assert stream.completed.final_text == expected
    assert (await api.messages(chat["id"]))[-1]["content"] == expected
    reply = await api.send(
        chat["id"], "again", agent_id=agent_id, stream=False, include_tool_tags=tags
    )
    text = data(reply)
    assert ("<tool id=step_" in text) is tags
    assert (await api.messages(chat["id"]))[-1]["content"] == text


async def test_steps_are_stored_on_the_answer(api: Api) -> None:
    helper = await agent(api, tools=[], name="helper", answer=[{"text": "h"}])
    agent_id = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": helper}],
        rounds=[[call("call_agent", agent="helper", question="q")], [{"text": "ok"}]],
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "english question", agent_id=agent_id)
    assert starts(stream)[0].step.content == "Asking helper"
    (stored,) = (await api.messages(chat["id"]))[-1]["meta"]["reasoning_steps"]
    assert stored["id"] == starts(stream)[0].step.id
    assert stored["result"]["success"] is True
    status = data(
        await api.get(f"/api/v1/chats/{chat['id']}/responses/{stream.events[0].response_id}")
    )
    assert status["steps"][0]["id"] == stored["id"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({}, "custom_form_schema.fields must be a non-empty list"),
        ({"fields": [{"name": "a", "type": "color"}]}, "fields[0].type must be one of"),
        ({"fields": [{"name": "a", "type": "radio"}]}, "fields[0].options"),
        (
            {"fields": [{"name": "a", "type": "number"}, {"name": "a", "type": "number"}]},
            "used twice",
        ),
    ],
)
async def test_a_bad_form_schema_is_refused_when_the_agent_is_saved(
    api: Api, schema: dict[str, Any], message: str
) -> None:
    body = {
        "name": "x",
        "unified_tools": [{"type": "request_form", "custom_form_schema": schema}],
    }
    assert message in error(await api.post("/api/v1/agents", json=body), 400, 10006)


async def test_a_new_message_expires_the_waiting_form(api: Api) -> None:
    agent_id, chat, stream = await paused_on_form(api)
    form_id = starts(stream)[0].step.args["form_request_id"]
    await api.stream(chat["id"], "やっぱり別の質問です", agent_id=agent_id)
    late = await submit(api, chat["id"], form_id, {"name": "a", "plan": "pro"})
    assert "has expired" in error(late, 409, 10004)
    asked = (await api.messages(chat["id"]))[1]
    assert asked["meta"]["form_request"] == {"id": form_id, "status": "expired"}


async def test_a_tool_over_its_time_limit_fails_its_step_and_the_answer_goes_on(
    make_api: Any, fake_web: Any
) -> None:
    api = await make_api(tool_timeout=0.5, fetch_allow_private="127.0.0.1")
    url = fake_web.url("/slow?delay=5")
    agent_id = await agent(
        api,
        tools=[{"type": "fetch_web_content"}],
        rounds=[[call("fetch_web_content", url=url)], [{"text": "answered anyway"}]],
    )
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], "read it", agent_id=agent_id)
    (end,) = ends(stream)
    assert end.step.result.success is False
    assert end.step.result.data == {
        "error": "fetch_web_content took longer than 0.5 s and was stopped"
    }
    assert stream.completed.final_text == "answered anyway"
