"""The answers' spans and GenAI client metrics, after the OpenTelemetry GenAI semantic conventions.

    POST /api/v1/chats/{chat_id}/messages       FastAPI's request span (SERVER)
    └── invoke_agent {agent_id}                 one per answer (INTERNAL)
        ├── chat {model}                        each model call (CLIENT): the rounds, the title
        └── execute_tool {tool_name}            each reasoning step (INTERNAL)
            └── chat {model}, execute_tool …    what a called agent (`call_agent`) does in it

    spans = AnswerSpans(tracer, meter, record_text=False)
    traceparent = spans.reserve(response_id)    # before the answer is stored, with it
    runtime = Runtime(..., observer=spans)

Deliberate oddities, with their reasons:
- The answer's span starts in `reserve`, before `answer`: its traceparent is then known when the
  response row is inserted, and stored in the same statement (no second write per answer) for a
  resumed stream on any replica to link to. `answer` takes that span up again through a context
  variable of the request's task; without one (a path that did not reserve), it starts its own.
- Parents are always explicit: the producer runs in a task of its own and the title in another,
  whose inherited context is the request's, not the answer's. A step is made the parent of what
  runs inside it (a called agent shares its caller's watch) by a context variable, set for the
  length of the step in the task that runs it; the title, started before any step, never sees it.
- Text (the user's message, the answer) is recorded only with `record_text`
  (`trace_message_text`), as `gen_ai.input.messages` / `gen_ai.output.messages` on the answer's
  span. Exceptions are recorded by their type, never their message, which may quote either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from kaiwa.protocol import TokenUsage
from kaiwa.runtime.observe import AnswerInfo

__all__ = ["AnswerSpans", "traceparent"]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
AGENT_ID = "gen_ai.agent.id"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
RESPONSE_ID = "kaiwa.response.id"

# The semantic conventions' advice for the two histograms' buckets.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
# Steps that read stored data are `datastore` tools; the others reach out (`extension`).
_DATASTORE_STEPS = frozenset({"consultant_retrieve_context_source", "consultant_lookup"})

_Reserved = tuple[str, Span]
_reserved: ContextVar[_Reserved | None] = ContextVar("kaiwa_reserved_answer_span", default=None)
_Step = tuple["_AnswerWatch", Context]
_step: ContextVar[_Step | None] = ContextVar("kaiwa_current_step", default=None)


def traceparent(context: SpanContext) -> str | None:
    """The W3C `traceparent` of a sampled span; None for one that is not recorded."""
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class AnswerSpans:
    """An `Observer` (`kaiwa.runtime.observe`) that traces each answer and measures its calls."""

    def __init__(self, tracer: Tracer, meter: Meter, *, record_text: bool) -> None:
        self.tracer = tracer
        self.record_text = record_text
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def reserve(self, response_id: str) -> str | None:
        """Start the span of the answer about to be stored; its traceparent, to store with it."""
        span = self.tracer.start_span("invoke_agent", kind=SpanKind.INTERNAL)
        _reserved.set((response_id, span))
        return traceparent(span.get_span_context())

    def answer(self, info: AnswerInfo) -> _AnswerWatch:
        reserved = _reserved.get()
        if reserved is not None and reserved[0] == info.response_id:
            _reserved.set(None)
            span = reserved[1]
        else:
            span = self.tracer.start_span("invoke_agent", kind=SpanKind.INTERNAL)
        return _AnswerWatch(self, span, info)


class _AnswerWatch:
    def __init__(self, spans: AnswerSpans, span: Span, info: AnswerInfo) -> None:
        self._spans = spans
        self._span = span
        self._info = info
        self._context = trace.set_span_in_context(span)
        self._ended = False
        provider, _, model = info.llm_model.partition("/")
        span.update_name(f"invoke_agent {info.agent_id}")
        if not span.is_recording():
            return
        span.set_attributes(
            {
                OPERATION: "invoke_agent",
                PROVIDER: provider,
                REQUEST_MODEL: model,
                AGENT_ID: info.agent_id,
                CONVERSATION_ID: str(info.chat_id),
                RESPONSE_ID: info.response_id,
                "kaiwa.chat.id": info.chat_id,
                "kaiwa.workspace.id": info.workspace_id,
                "kaiwa.response.continued": info.continued,
            }
        )
        if spans.record_text:
            span.set_attribute(INPUT_MESSAGES, _messages("user", info.message))

    def created(self) -> None:
        pass

    @contextmanager
    def model_call(self, provider: str, model: str) -> Iterator[_Call]:
        parent = self._parent()
        metric: dict[str, AttributeValue] = {
            OPERATION: "chat",
            PROVIDER: provider,
            REQUEST_MODEL: model,
        }
        span = self._spans.tracer.start_span(
            f"chat {model}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                **metric,
                CONVERSATION_ID: str(self._info.chat_id),
                RESPONSE_ID: self._info.response_id,
            },
        )
        call = _Call(span)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        started = time.perf_counter()
        error: str | None = None
        try:
            yield call
        except Exception as exc:
            error = type(exc).__qualname__
            _failed(span, error)
            raise
        finally:
            otel_context.detach(token)
            span.end()
            spans = self._spans
            took = time.perf_counter() - started
            spans.duration.record(took, metric if error is None else {**metric, ERROR_TYPE: error})
            if call.tokens is not None:
                prompt, completion = call.tokens
                spans.tokens.record(prompt, {**metric, TOKEN_TYPE: "input"})
                spans.tokens.record(completion, {**metric, TOKEN_TYPE: "output"})

    @contextmanager
    def tool_step(self, step_type: str, tool_name: str) -> Iterator[_StepSpan]:
        parent = self._parent()
        tool_type = "datastore" if step_type in _DATASTORE_STEPS else "extension"
        span = self._spans.tracer.start_span(
            f"execute_tool {tool_name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={
                OPERATION: "execute_tool",
                TOOL_NAME: tool_name,
                TOOL_TYPE: tool_type,
                RESPONSE_ID: self._info.response_id,
                "kaiwa.step.type": step_type,
            },
        )
        step = _StepSpan(span)
        inside = trace.set_span_in_context(span, parent)
        current = _step.set((self, inside))
        token = otel_context.attach(inside)
        try:
            yield step
        except Exception as exc:
            step.outcome = "failed"
            _failed(span, type(exc).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            _step.reset(current)
            # Neither ended nor raised: the turn paused on this step (a form).
            span.set_attribute("kaiwa.step.outcome", step.outcome or "paused")
            span.end()

    def finished(self, status: str, error_code: int | None, usage: TokenUsage) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        if span.is_recording():
            span.set_attributes(
                {
                    INPUT_TOKENS: usage.total_prompt_tokens,
                    OUTPUT_TOKENS: usage.total_completion_tokens,
                    "kaiwa.response.status": status,
                }
            )
            if error_code is not None:
                span.set_attribute("kaiwa.error.code", error_code)
            if status == "failed":
                _failed(span, str(error_code) if error_code is not None else "_OTHER")
            state = self._info.state
            if self._spans.record_text and state is not None:
                span.set_attribute(OUTPUT_MESSAGES, _messages("assistant", state.text, status))
        span.end()

    def _parent(self) -> Context:
        """The current step when one of this answer's runs in this task, else the answer."""
        step = _step.get()
        return step[1] if step is not None and step[0] is self else self._context


class _Call:
    __slots__ = ("_span", "tokens")

    def __init__(self, span: Span) -> None:
        self._span = span
        self.tokens: tuple[int, int] | None = None

    def first_token(self) -> None:
        self._span.add_event("kaiwa.first_token")

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.tokens = (prompt_tokens, completion_tokens)
        self._span.set_attributes({INPUT_TOKENS: prompt_tokens, OUTPUT_TOKENS: completion_tokens})


class _StepSpan:
    __slots__ = ("_span", "outcome")

    def __init__(self, span: Span) -> None:
        self._span = span
        self.outcome: str | None = None

    def ended(self, success: bool) -> None:
        self.outcome = "succeeded" if success else "failed"
        if not success:
            _failed(self._span, "tool_error")


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(StatusCode.ERROR)


def _messages(role: str, text: str, status: str | None = None) -> str:
    """Messages as the conventions' `gen_ai.input.messages` / `gen_ai.output.messages` hold them."""
    message: dict[str, object] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if status is not None:
        message["finish_reason"] = "stop" if status == "completed" else status
    return json.dumps([message], ensure_ascii=False)
