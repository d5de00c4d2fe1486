"""The runtime's observer that feeds the Prometheus metrics: one small object per answer, a
few numbers recorded per model call and per step, nothing per delta.

    observers = [MetricsObserver(metrics), ...]      # in `create_app`, beside the tracer's
    Runtime(..., observer=Observers(*observers))

What each number means:

- time to `response.created` and to the first token run from the request's arrival (see
  `metrics_http.request_started`); an answer started without a request (a batch item) from its
  start in the runtime;
- the first token is the answer's own model's first text: text of an agent it calls (inside a
  step) is not the answer's, and a title call reports none;
- output tokens per second: a streamed call's completion tokens over the time from its first
  text to its end (a call that streamed no text has no rate);
- a step that raised is a `failure`; one cancelled with its answer, `cancelled`; one that ended
  its block without an outcome paused the turn on a form, `paused`.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from kaiwa.protocol import TokenUsage
from kaiwa.runtime.observe import AnswerInfo, AnswerWatch
from kaiwa.server.metrics import Metrics
from kaiwa.server.metrics_http import request_started

__all__ = ["MetricsObserver"]


class MetricsObserver:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def answer(self, info: AnswerInfo) -> AnswerWatch:
        return _Answer(self._metrics, info.llm_model)


class _Answer:
    __slots__ = ("_began", "_first_token", "_metrics", "_model", "_start", "_steps")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self._model = model
        self._began = time.perf_counter()
        arrived = request_started.get()
        self._start = arrived if arrived is not None else self._began
        self._steps = 0
        """Steps open: a first token inside one is a called agent's, not the answer's."""
        self._first_token = False
        metrics.responses_started.labels(model).inc()
        metrics.responses_active.inc()

    def created(self) -> None:
        elapsed = time.perf_counter() - self._start
        self._metrics.response_created.labels(self._model).observe(elapsed)

    def model_call(self, provider: str, model: str) -> _Call:
        return _Call(self, f"{provider}/{model}")

    def tool_step(self, step_type: str, tool_name: str) -> _Step:
        return _Step(self, step_type)

    def finished(self, status: str, error_code: int | None, usage: TokenUsage) -> None:
        metrics, model = self._metrics, self._model
        code = "none" if error_code is None else str(error_code)
        metrics.responses_finished.labels(model, status, code).inc()
        metrics.responses_active.dec()
        metrics.response_duration.labels(model).observe(time.perf_counter() - self._began)

    def _first_text(self, at: float) -> None:
        if self._first_token or self._steps:
            return
        self._first_token = True
        self._metrics.first_token.labels(self._model).observe(at - self._start)


class _Call:
    __slots__ = ("_answer", "_completion", "_first", "_model")

    def __init__(self, answer: _Answer, model: str) -> None:
        self._answer = answer
        self._model = model
        self._first: float | None = None
        self._completion = 0

    def __enter__(self) -> _Call:
        return self

    def first_token(self) -> None:
        if self._first is None:
            self._first = now = time.perf_counter()
            self._answer._first_text(now)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        tokens = self._answer._metrics.tokens
        if prompt_tokens:
            tokens.labels(self._model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            tokens.labels(self._model, "completion").inc(completion_tokens)
        self._completion += completion_tokens

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        metrics = self._answer._metrics
        metrics.model_calls.labels(self._model, "ok" if exc_type is None else "error").inc()
        if self._first is not None and self._completion:
            streaming = time.perf_counter() - self._first
            if streaming > 0:
                metrics.output_rate.labels(self._model).observe(self._completion / streaming)


class _Step:
    __slots__ = ("_answer", "_outcome", "_started", "_type")

    def __init__(self, answer: _Answer, step_type: str) -> None:
        self._answer = answer
        self._type = step_type
        self._outcome: str | None = None
        self._started = 0.0

    def __enter__(self) -> _Step:
        self._started = time.perf_counter()
        self._answer._steps += 1
        return self

    def ended(self, success: bool) -> None:
        self._outcome = "success" if success else "failure"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._answer._steps -= 1
        outcome = self._outcome
        if outcome is None:
            if exc_type is None:
                outcome = "paused"
            elif issubclass(exc_type, asyncio.CancelledError):
                outcome = "cancelled"
            else:
                outcome = "failure"
        metrics = self._answer._metrics
        metrics.tool_steps.labels(self._type, outcome).inc()
        metrics.tool_step_duration.labels(self._type).observe(time.perf_counter() - self._started)
