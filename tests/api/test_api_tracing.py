"""Traces: one answer is one span tree after the GenAI conventions, under its HTTP request; text
stays out of spans unless allowed; a resumed stream's request links to the answer's span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api_support import Api, Stream
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from kaiwa.store.models import Response

MESSAGE = "料金はいくらですか"
ANSWER = "料金係によると月額 1,000 円です。"
MakeApi = Callable[..., Any]


@dataclass
class Traced:
    api: Api
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    async def trace_of(self, response_id: str) -> list[ReadableSpan]:
        """Every span of the trace the answer is in, once the answer's own span has ended."""
        for _ in range(200):
            answer = [s for s in self.finished() if _attr(s, "kaiwa.response.id") == response_id]
            if any(s.name.startswith("invoke_agent") for s in answer):
                trace_id = answer[0].context.trace_id
                return [s for s in self.finished() if s.context.trace_id == trace_id]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no span of answer {response_id}: {self.finished()}")

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        points: list[HistogramDataPoint] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(p for p in metric.data.data_points)  # type: ignore[misc]
        return points


async def traced(make_api: MakeApi, **settings: Any) -> Traced:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    api = await make_api(
        tracing_enabled=True,
        app_kwargs={"tracer_provider": tracer_provider, "meter_provider": meter_provider},
        **settings,
    )
    return Traced(api, spans, metrics)


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_call": {"id": call_id, "name": name, "arguments": arguments}}


async def agent(api: Api, *, tools: list[dict[str, Any]], name: str, **script: Any) -> str:
    created = await api.create_agent(
        name=name,
        llm_model="scripted/test",
        unified_tools=tools,
        meta={"model_settings": {"script": script}},
    )
    agent_id: str = created["id"]
    return agent_id


async def two_steps(api: Api) -> tuple[str, int, Stream]:
    """An answer that asks another agent twice (two steps), then answers: agent, chat, stream."""
    helper = await agent(
        api,
        tools=[],
        name="料金係",
        answer=[{"text": "月額 1,000 円です。"}],
        usage={"prompt_tokens": 30, "completion_tokens": 7},
    )
    caller = await agent(
        api,
        tools=[{"type": "call_agent", "agent_id": helper}],
        name="caller",
        rounds=[
            [call("call_agent", "c1", agent="料金係", question="料金は?")],
            [call("call_agent", "c2", agent="料金係", question="年額は?")],
            [{"text": ANSWER}],
        ],
        usage={"prompt_tokens": 10, "completion_tokens": 5},
    )
    chat = await api.create_chat(caller)
    stream = await api.stream(chat["id"], MESSAGE, agent_id=caller)
    assert stream.completed.final_text == ANSWER
    return caller, chat["id"], stream


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _texts(spans: list[ReadableSpan]) -> str:
    """Everything the spans carry as text: names, attributes, events, links."""
    parts: list[str] = []
    for span in spans:
        parts.append(span.name)
        parts.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            parts.append(event.name)
            parts.extend(str(value) for value in (event.attributes or {}).values())
    return "\n".join(parts)


async def test_an_answer_with_two_tool_steps_is_one_span_tree(make_api: MakeApi) -> None:
    traced_api = await traced(make_api)
    caller, chat_id, stream = await two_steps(traced_api.api)
    response_id = stream.events[0].response_id
    spans = await traced_api.trace_of(response_id)

    (request,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert request.name == "POST /api/v1/chats/{chat_id}/messages"
    assert _attr(request, "http.route") == "/api/v1/chats/{chat_id}/messages"
    assert _attr(request, "http.response.status_code") == 200
    assert request.parent is None

    (answer,) = _children(spans, request)
    assert answer.name == f"invoke_agent {caller}"
    assert answer.kind is SpanKind.INTERNAL
    usage = stream.completed.usage
    assert dict(answer.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "test",
        "gen_ai.agent.id": caller,
        "gen_ai.conversation.id": str(chat_id),
        "gen_ai.usage.input_tokens": usage.total_prompt_tokens,
        "gen_ai.usage.output_tokens": usage.total_completion_tokens,
        "kaiwa.response.id": response_id,
        "kaiwa.chat.id": chat_id,
        "kaiwa.workspace.id": traced_api.api.workspace_id,
        "kaiwa.response.continued": False,
        "kaiwa.response.status": "completed",
    }
    assert answer.status.status_code is StatusCode.UNSET

    under_answer = _children(spans, answer)
    calls = [s for s in under_answer if s.name == "chat test"]
    steps = [s for s in under_answer if s.name.startswith("execute_tool")]
    assert len(calls) + len(steps) == len(under_answer)
    # Three rounds of the caller and the title, beside the answer.
    assert len(calls) == 4
    rounds = [s for s in calls if _attr(s, "gen_ai.usage.input_tokens") == 10]
    assert len(rounds) == 3
    for model_call in calls:
        assert model_call.kind is SpanKind.CLIENT
        assert _attr(model_call, "gen_ai.operation.name") == "chat"
        assert _attr(model_call, "gen_ai.provider.name") == "scripted"
        assert _attr(model_call, "gen_ai.request.model") == "test"
        assert _attr(model_call, "kaiwa.response.id") == response_id
    assert {_attr(s, "gen_ai.usage.output_tokens") for s in rounds} == {5}

    assert len(steps) == 2
    assert sorted(s.start_time for s in steps) == [s.start_time for s in steps]
    for step in steps:
        assert step.name == "execute_tool call_agent"
        assert _attr(step, "gen_ai.operation.name") == "execute_tool"
        assert _attr(step, "gen_ai.tool.name") == "call_agent"
        assert _attr(step, "gen_ai.tool.type") == "extension"
        assert _attr(step, "kaiwa.step.type") == "consultant_call_agent"
        assert _attr(step, "kaiwa.step.outcome") == "succeeded"
        # The called agent's model call runs inside the step.
        (inner,) = _children(spans, step)
        assert inner.name == "chat test"
        assert _attr(inner, "gen_ai.usage.input_tokens") == 30
        assert _attr(inner, "gen_ai.usage.output_tokens") == 7
        assert inner.start_time >= step.start_time
        assert inner.end_time <= step.end_time

    # Nothing else: no span per event or SSE chunk.
    assert len(spans) == 1 + 1 + 4 + 2 + 2

    tokens = traced_api.histogram("gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens}  # type: ignore[index]
    assert set(by_type) == {"input", "output"}
    assert by_type["input"].attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "test",
        "gen_ai.token.type": "input",
    }
    assert by_type["input"].count == 6
    assert by_type["input"].sum == usage.total_prompt_tokens
    assert by_type["output"].sum == usage.total_completion_tokens
    (duration,) = traced_api.histogram("gen_ai.client.operation.duration")
    assert duration.count == 6
    assert "error.type" not in duration.attributes


async def test_message_text_stays_out_of_spans_by_default(make_api: MakeApi) -> None:
    traced_api = await traced(make_api)
    _, _, stream = await two_steps(traced_api.api)
    spans = await traced_api.trace_of(stream.events[0].response_id)
    text = _texts(spans)
    for secret in (MESSAGE, ANSWER, "月額", "料金は?"):
        assert secret not in text
    assert all(_attr(s, "gen_ai.input.messages") is None for s in spans)


async def test_message_text_is_on_the_answer_span_when_allowed(make_api: MakeApi) -> None:
    traced_api = await traced(make_api, trace_message_text=True)
    caller, _, stream = await two_steps(traced_api.api)
    spans = await traced_api.trace_of(stream.events[0].response_id)
    (answer,) = [s for s in spans if s.name == f"invoke_agent {caller}"]
    assert json.loads(_attr(answer, "gen_ai.input.messages")) == [
        {"role": "user", "parts": [{"type": "text", "content": MESSAGE}]}
    ]
    assert json.loads(_attr(answer, "gen_ai.output.messages")) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "stop",
        }
    ]


async def test_a_resumed_stream_links_to_the_span_that_produced_the_answer(
    make_api: MakeApi,
) -> None:
    traced_api = await traced(make_api)
    api = traced_api.api
    caller, chat_id, stream = await two_steps(api)
    created = stream.events[0]
    response_id = created.response_id
    spans = await traced_api.trace_of(response_id)
    (answer,) = [s for s in spans if s.name == f"invoke_agent {caller}"]
    context = answer.context
    async with api.store() as session:
        record = await session.get(Response, response_id)
        assert record is not None
        ids = f"{context.trace_id:032x}-{context.span_id:016x}"
        assert record.trace_context == f"00-{ids}-{int(context.trace_flags):02x}"

    token = getattr(created, "resume_token", None)
    assert token
    url = f"/api/v1/chats/{chat_id}/responses/{response_id}/events"
    resumed = await api.client.get(url, params={"token": token, "after": 3})
    assert resumed.content.startswith(b": ping\nid: 4\n")  # the rest of the answer
    assert resumed.content.endswith(b"data: [DONE]\n\n")
    route = "/api/v1/chats/{chat_id}/responses/{response_id}/events"
    (request,) = [s for s in traced_api.finished() if _attr(s, "http.route") == route]
    assert request.context.trace_id != context.trace_id  # a request of its own
    (link,) = request.links
    assert link.context.trace_id == context.trace_id
    assert link.context.span_id == context.span_id
    # The resume token never reaches a span.
    assert token not in _texts([request])
    assert _attr(request, "url.query") == "token=[redacted]&after=3"


async def test_a_failed_model_call_marks_its_spans_with_the_error(make_api: MakeApi) -> None:
    traced_api = await traced(make_api)
    api = traced_api.api
    failing = await agent(api, tools=[], name="failing", answer=[{"fail": "upstream down"}])
    chat = await api.create_chat(failing, auto_title=False)
    stream = await api.stream(chat["id"], MESSAGE, agent_id=failing)
    assert stream.types[-1] == "response.error"
    spans = await traced_api.trace_of(stream.events[0].response_id)
    (answer,) = [s for s in spans if s.name.startswith("invoke_agent")]
    assert answer.status.status_code is StatusCode.ERROR
    assert _attr(answer, "error.type") == "10009"
    assert _attr(answer, "kaiwa.response.status") == "failed"
    (model_call,) = _children(spans, answer)
    assert model_call.status.status_code is StatusCode.ERROR
    assert _attr(model_call, "error.type") == "ModelError"
    assert "upstream down" not in _texts(spans)
    (duration,) = traced_api.histogram("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "ModelError"  # type: ignore[index]


async def test_with_tracing_off_nothing_is_traced_or_stored(make_api: MakeApi) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    api = await make_api(app_kwargs={"tracer_provider": tracer_provider})
    _, _, stream = await two_steps(api)
    async with api.store() as session:
        record = await session.get(Response, stream.events[0].response_id)
        assert record is not None
        assert record.trace_context is None
    assert not spans.get_finished_spans()


async def test_an_unsampled_answer_stores_no_trace_context(make_api: MakeApi) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    api = await make_api(
        tracing_enabled=True,
        app_kwargs={
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        },
    )
    _, _, stream = await two_steps(api)
    async with api.store() as session:
        record = await session.get(Response, stream.events[0].response_id)
        assert record is not None
        assert record.trace_context is None
    assert not spans.get_finished_spans()
