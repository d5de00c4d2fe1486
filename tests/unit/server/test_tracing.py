"""The tracing door's helpers: the current trace id for logs, traceparents, query redaction."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from kaiwa.config import Settings
from kaiwa.server.otel import RedactQuery
from kaiwa.server.spans import traceparent
from kaiwa.server.tracing import current_trace_id, open_tracing, unavailable


def test_current_trace_id_names_the_current_span_and_nothing_outside_one() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert current_trace_id() is None
    with tracer.start_as_current_span("request") as span:
        assert current_trace_id() == format(span.get_span_context().trace_id, "032x")
    assert current_trace_id() is None


def test_a_traceparent_names_a_sampled_span_only() -> None:
    sampled = TracerProvider().get_tracer("test").start_span("answer")
    context = sampled.get_span_context()
    value = traceparent(context)
    assert value is not None
    version, trace_id, span_id, flags = value.split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == (
        "00",
        context.trace_id,
        context.span_id,
    )
    assert int(flags, 16) & 1
    dropped = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test").start_span("answer")
    assert traceparent(dropped.get_span_context()) is None


def test_secrets_in_a_query_are_redacted_before_export() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RedactQuery())
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    for query in ("token=abc.def&after=3", "after=3", "x=kw_secret"):
        tracer.start_span("GET", attributes={"url.query": query}).end()
    assert [s.attributes["url.query"] for s in spans.get_finished_spans()] == [  # type: ignore[index]
        "token=[redacted]&after=3",
        "after=3",
        "x=[redacted]",
    ]


def test_tracing_off_opens_nothing() -> None:
    settings = Settings(tracing_enabled=False)
    assert open_tracing(settings) is None
    assert unavailable(settings) is None
    assert unavailable(Settings(tracing_enabled=True)) is None  # the extra is installed here
    assert isinstance(trace.get_current_span(), trace.NonRecordingSpan)


def test_otel_variables_kaiwa_cannot_follow_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(tracing_enabled=True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert unavailable(settings) == (
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: kaiwa exports OTLP over http/protobuf"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert unavailable(settings) == (
        "OTEL_TRACES_EXPORTER=zipkin: kaiwa exports with one of otlp, console, none"
    )
