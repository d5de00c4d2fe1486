"""OpenTelemetry for kaiwa (the `otel` extra); imported only when `tracing_enabled` (see
`kaiwa.server.tracing`).

    tracing = Tracing(settings)                     # providers from the OTEL_* variables
    FastAPIOffline(..., telemetry=tracing.fastapi)  # the HTTP request spans, made by FastAPI
    Runtime(..., observer=tracing.observer, trace_context=tracing.observer.reserve)
    await tracing.aclose()                          # export what is left, briefly

The providers built here follow the SDK's handling of the standard variables: the resource from
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (`service.name` is `kaiwa` unless they say
otherwise), the sampler from `OTEL_TRACES_SAMPLER(_ARG)`, batching from `OTEL_BSP_*`, the
exporters from `OTEL_EXPORTER_OTLP_*` (OTLP over HTTP), the metric interval from
`OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SDK_DISABLED`. `OTEL_TRACES_EXPORTER` and
`OTEL_METRICS_EXPORTER` may be `otlp` (the default), `console` or `none`.

Deliberate oddities, with their reasons:
- The providers are kaiwa's own, passed explicitly to FastAPI and the answers' observer; the
  process-wide (global) ones are left alone, so no library traces through kaiwa's exporter
  unasked, and several apps in one process (tests) each keep theirs.
- FastAPI's request spans carry `url.query`; a processor redacts the resume token (`?token=`) and
  any kaiwa key in it before anything is exported, as the access log does.
- Spans leave through a `BatchSpanProcessor`, on its own thread: a collector that is slow, down
  or absent never slows a stream (spans queue, then are dropped), and at shutdown the last
  export is waited for a few seconds at most.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import MutableMapping
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kaiwa import __version__
from kaiwa.config import Settings
from kaiwa.server.access_log import redact
from kaiwa.server.spans import AnswerSpans

__all__ = ["RedactQuery", "Tracing", "check_environment", "link_current_span"]

CLOSE_TIMEOUT = 3.0
"""Seconds the last export may hold the server's exit."""
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths polled by load balancers and scrapers: no span each time."""
_EXPORTERS = ("otlp", "console", "none")


class Tracing:
    """kaiwa's tracer and meter: the observer of answers, and what FastAPI is told."""

    def __init__(
        self,
        settings: Settings,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._owned: list[SdkTracerProvider | SdkMeterProvider] = []
        if tracer_provider is None or meter_provider is None:
            _check_protocol()
            resource = _resource()
            if tracer_provider is None:
                tracer_provider = _tracer_provider(resource)
                self._owned.append(tracer_provider)
            if meter_provider is None:
                meter_provider = _meter_provider(resource)
                self._owned.append(meter_provider)
        if isinstance(tracer_provider, SdkTracerProvider):
            tracer_provider.add_span_processor(RedactQuery())
        self.observer = AnswerSpans(
            tracer_provider.get_tracer("kaiwa", __version__),
            meter_provider.get_meter("kaiwa", __version__),
            record_text=settings.trace_message_text,
        )
        self.fastapi: TelemetryConfig = {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "tracing": True,
            "metrics": False,  # the HTTP metrics are Prometheus's (`/metrics`)
            "logs": False,  # kaiwa logs for itself; FastAPI's would carry exception messages
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _is_probe,
        }

    async def aclose(self) -> None:
        """Export what is left and stop the exporters' threads (waiting `CLOSE_TIMEOUT` at most:
        past it they go on alone, as daemons, and die with the process)."""
        if not self._owned:
            return
        owned, self._owned = self._owned, []

        def close() -> None:
            for provider in owned:
                provider.shutdown()

        closing = threading.Thread(target=close, name="kaiwa-otel-close", daemon=True)
        closing.start()
        await asyncio.to_thread(closing.join, CLOSE_TIMEOUT)


def link_current_span(trace_context: str) -> None:
    """Link the current span to the one named by a W3C traceparent (ignored when malformed)."""
    linked = trace.get_current_span(_PROPAGATOR.extract({"traceparent": trace_context}))
    target = linked.get_span_context()
    span = trace.get_current_span()
    if target.is_valid and span.is_recording():
        span.add_link(target, {"kaiwa.link.type": "resumed_from"})


class RedactQuery(SpanProcessor):
    """Redact secrets in `url.query` as a span starts (the resume token, kaiwa keys)."""

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        query = span.attributes.get("url.query") if span.attributes else None
        if isinstance(query, str) and "=" in query:
            redacted = redact(f"?{query}")[1:]
            if redacted != query:
                span.set_attribute("url.query", redacted)

    def on_end(self, span: ReadableSpan) -> None:
        pass


_PROPAGATOR = TraceContextTextMapPropagator()


def _is_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in PROBES


def check_environment() -> None:
    """Raise `ValueError` naming an `OTEL_*` variable that asks for what kaiwa cannot do."""
    _check_protocol()
    _exporter_name("OTEL_TRACES_EXPORTER")
    _exporter_name("OTEL_METRICS_EXPORTER")


def _exporter_name(variable: str) -> str:
    name = (os.environ.get(variable) or "otlp").strip().lower()
    if name not in _EXPORTERS:
        raise ValueError(f"{variable}={name}: kaiwa exports with one of {', '.join(_EXPORTERS)}")
    return name


def _check_protocol() -> None:
    """Refuse an OTLP protocol the `otel` extra does not speak (grpc): its spans would be lost."""
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        protocol = os.environ.get(variable)
        if protocol and protocol.strip() != "http/protobuf":
            raise ValueError(f"{variable}={protocol}: kaiwa exports OTLP over http/protobuf")


def _resource() -> Resource:
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "kaiwa"}))
    return resource


def _tracer_provider(resource: Resource) -> SdkTracerProvider:
    provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
    exporter: SpanExporter | None = None
    match _exporter_name("OTEL_TRACES_EXPORTER"):
        case "otlp":
            exporter = OTLPSpanExporter()
        case "console":
            exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(resource: Resource) -> SdkMeterProvider:
    exporter: MetricExporter | None = None
    match _exporter_name("OTEL_METRICS_EXPORTER"):
        case "otlp":
            exporter = OTLPMetricExporter()
        case "console":
            exporter = ConsoleMetricExporter()
    readers: list[MetricReader] = []
    if exporter is not None:
        readers.append(PeriodicExportingMetricReader(exporter))
    return SdkMeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
