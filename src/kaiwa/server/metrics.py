"""The app's Prometheus metrics: every one defined here, in a registry of the app's own.

    metrics = Metrics()                           # in `create_app`
    metrics.resumed("live")                       # what the server itself counts
    Runtime(..., observer=MetricsObserver(metrics), on_cancel=metrics.cancelled)
    body = metrics.exposition(queues)             # `GET /metrics`

`docs/operations.md` lists each metric, its labels and what to alert on. Labels are bounded:
never an id or a user's text; `model` is an agent's `provider/model`, set by the operator.

Deliberate oddities:
- A registry per app, not prometheus_client's global one, so that several apps in one process
  (the tests) count apart. The process and garbage-collector collectors are added to it.
- With `PROMETHEUS_MULTIPROC_DIR` set (`kaiwa serve --workers N` sets it for its workers), the
  values live in files of that directory, one per process, and a scrape of any worker reads
  them all (`MultiProcessCollector`): one port, one set of numbers for every worker. That mode
  is chosen by prometheus_client when it is first imported, from the environment; the process
  collectors are then left out (they would only describe the worker that answered).
- The queue depths (batch items, documents being indexed) are read from the database at scrape
  time: they are the cluster's, the same on every replica — aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.values import MutexValue, ValueClass

from kaiwa.runtime.stops import CancelReason
from kaiwa.store.jobs import KindStats

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "Queues",
    "ResumeOutcome",
    "StreamKind",
    "multiprocess_dir",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format, as every Prometheus server reads it."""

StreamKind = Literal["live", "resumed"]
ResumeOutcome = Literal["log", "reappeared", "stored_ending", "already_ended", "not_found"]
"""How a stream given again went: read from the event log, live or kept after the end (`log`),
from the log that came back after a Redis restart
(`reappeared`), was gone so the stored ending closed the stream (`stored_ending`), the client
had seen the end already (`already_ended`), or there was no such response (`not_found`)."""

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FIRST_TOKEN = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_RATE = (1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0)
_STEP = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_ANSWER = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_HTTP = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, when prometheus_client runs in it (the variable was
    set before it was first imported)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and ValueClass is not MutexValue else None


@dataclass(frozen=True, slots=True)
class Queues:
    """Background work waiting, read from the database at scrape time."""

    batch_pending: int
    batch_running: int
    documents_processing: int
    jobs: Sequence[KindStats] = ()
    """The job queue, per kind (`kaiwa jobs` shows the same)."""


class _QueueCollector(Collector):
    """The last queue depths read; none before the first scrape, or when the read failed."""

    def __init__(self) -> None:
        self.queues: Queues | None = None

    def collect(self) -> Iterator[Metric]:
        queues = self.queues
        if queues is None:
            return
        batch = GaugeMetricFamily(
            "kaiwa_batch_items",
            "Batch items not yet finished, by status (cluster-wide, from the database)",
            labels=["status"],
        )
        batch.add_metric(["pending"], queues.batch_pending)
        batch.add_metric(["running"], queues.batch_running)
        yield batch
        yield GaugeMetricFamily(
            "kaiwa_knowledge_documents_processing",
            "Knowledge-base documents being parsed and indexed (cluster-wide, from the database)",
            value=queues.documents_processing,
        )
        jobs = GaugeMetricFamily(
            "kaiwa_jobs",
            "Background jobs by kind and state (cluster-wide, from the database)",
            labels=["kind", "state"],
        )
        oldest = GaugeMetricFamily(
            "kaiwa_jobs_oldest_due_seconds",
            "Seconds the longest-waiting due job of each kind has been waiting (0: none)",
            labels=["kind"],
        )
        for row in queues.jobs:
            for state, count in (
                ("queued", row.queued),
                ("running", row.running),
                ("failed", row.failed),
            ):
                jobs.add_metric([row.kind, state], count)
            oldest.add_metric([row.kind], row.oldest_due_age or 0.0)
        yield jobs
        yield oldest


class Metrics:
    """Every metric of one app. The observer (`metrics_observer`) and the HTTP middleware
    (`metrics_http`) record into the public attributes; the server's own call sites use the
    small methods below."""

    def __init__(self) -> None:
        self._multiprocess = multiprocess_dir()
        self.registry = registry = CollectorRegistry()
        if self._multiprocess is None:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self._queues = _QueueCollector()
        registry.register(self._queues)

        # Answers (recorded by `MetricsObserver`).
        self.responses_started = Counter(
            "kaiwa_responses_started",
            "Answers started (new turns, regenerations, turns going on after a form)",
            ["model"],
            registry=registry,
        )
        self.responses_finished = Counter(
            "kaiwa_responses_finished",
            "Answers ended, by status and error code (`none` when it ended without one)",
            ["model", "status", "error_code"],
            registry=registry,
        )
        self.responses_active = Gauge(
            "kaiwa_responses_active",
            "Answers being produced by this process",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.response_created = Histogram(
            "kaiwa_response_created_seconds",
            "From the request's arrival to `response.created` in the answer's log",
            ["model"],
            buckets=_FAST,
            registry=registry,
        )
        self.first_token = Histogram(
            "kaiwa_time_to_first_token_seconds",
            "From the request's arrival to the answer's first text from its model",
            ["model"],
            buckets=_FIRST_TOKEN,
            registry=registry,
        )
        self.response_duration = Histogram(
            "kaiwa_response_duration_seconds",
            "From the answer's start to its end",
            ["model"],
            buckets=_ANSWER,
            registry=registry,
        )
        self.model_calls = Counter(
            "kaiwa_model_calls",
            "Model calls (answers, titles, called agents), by outcome (`ok` or `error`)",
            ["model", "outcome"],
            registry=registry,
        )
        self.output_rate = Histogram(
            "kaiwa_output_tokens_per_second",
            "Completion tokens of a streamed model call over the time from its first text "
            "to its end",
            ["model"],
            buckets=_RATE,
            registry=registry,
        )
        self.tokens = Counter(
            "kaiwa_tokens",
            "Tokens the models reported, by kind (`prompt` or `completion`)",
            ["model", "kind"],
            registry=registry,
        )
        self.tool_steps = Counter(
            "kaiwa_tool_steps",
            "Reasoning steps (tool calls), by step type and outcome "
            "(`success`, `failure`, `paused` on a form, `cancelled`)",
            ["type", "outcome"],
            registry=registry,
        )
        self.tool_step_duration = Histogram(
            "kaiwa_tool_step_duration_seconds",
            "How long a reasoning step took, by step type",
            ["type"],
            buckets=_STEP,
            registry=registry,
        )
        self.cancels = Counter(
            "kaiwa_cancels",
            "Answers asked to stop while this process produced them, by reason "
            "(`stop`, `interrupt`, `disconnect`, `shutdown`)",
            ["reason"],
            registry=registry,
        )

        # Streams and requests (recorded by the server).
        self.streams_active = Gauge(
            "kaiwa_sse_streams_active",
            "SSE streams open, by kind (`live`: a new answer's; `resumed`: one given again)",
            ["kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.resumes = Counter(
            "kaiwa_resumes",
            "Streams of an answer given again (resume, repeated request), by outcome",
            ["outcome"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "kaiwa_rate_limited",
            "Requests refused with 429/10007, by limit (`requests` per minute, or `answers` "
            "in flight)",
            ["limit"],
            registry=registry,
        )
        self.http_requests = Counter(
            "kaiwa_http_requests",
            "HTTP requests, by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "kaiwa_http_request_duration_seconds",
            "From a request's arrival to its response's status and headers (for an SSE stream: "
            "its opening, not its length)",
            ["route", "method"],
            buckets=_HTTP,
            registry=registry,
        )
        self.database_errors = Counter(
            "kaiwa_database_errors",
            "Database errors that failed a request or a scrape, by exception class",
            ["error"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "kaiwa_redis_errors",
            "Requests refused with 503 because Redis was unavailable",
            registry=registry,
        )
        self.live_streams = self.streams_active.labels("live")
        self.resumed_streams = self.streams_active.labels("resumed")
        for outcome in get_args(ResumeOutcome):
            self.resumes.labels(outcome)
        for limit in ("requests", "answers"):
            self.rate_limited.labels(limit)
        for reason in get_args(CancelReason):
            self.cancels.labels(reason)

    def resumed(self, outcome: ResumeOutcome) -> None:
        self.resumes.labels(outcome).inc()

    def cancelled(self, reason: CancelReason) -> None:
        """The runtime's `on_cancel`: one per answer stopped here (its first reason)."""
        self.cancels.labels(reason).inc()

    def refused(self, limit: Literal["requests", "answers"]) -> None:
        self.rate_limited.labels(limit).inc()

    def database_error(self, error: BaseException) -> None:
        self.database_errors.labels(type(error).__name__).inc()

    def redis_error(self) -> None:
        self.redis_errors.inc()

    def exposition(self, queues: Queues | None) -> bytes:
        """The text of a scrape: this app's metrics, or in multiprocess mode every worker's;
        `queues` as read from the database (None: left out)."""
        self._queues.queues = queues
        if self._multiprocess is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess)  # type: ignore[no-untyped-call]
        registry.register(self._queues)
        return generate_latest(registry)
