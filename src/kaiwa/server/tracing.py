"""Traces, when `tracing_enabled`: the door to `kaiwa.server.otel`, safe to import without the
`otel` extra. Nothing here imports OpenTelemetry until tracing is on.

    tracing = open_tracing(settings)       # None when off; `TracingUnavailable` without the extra
    unavailable(settings)                  # the same refusal as a message, for `kaiwa serve`
    current_trace_id()                     # "4bf92f3577b34da6a3ce929d0e0e4736", or None
    link_to_answer(record.trace_context)   # a resumed stream's request links to its answer
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from kaiwa.config import Settings

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from kaiwa.server.otel import Tracing

__all__ = [
    "INSTALL_HINT",
    "TracingUnavailable",
    "current_trace_id",
    "link_to_answer",
    "open_tracing",
    "unavailable",
]

INSTALL_HINT = (
    "KAIWA_TRACING_ENABLED needs OpenTelemetry, which is not installed: pip install 'kaiwa[otel]'"
)


class TracingUnavailable(RuntimeError):
    """Tracing is on but the `otel` extra is missing: the server refuses to start."""


def open_tracing(
    settings: Settings,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Tracing | None:
    """kaiwa's traces and GenAI metrics, or None when `tracing_enabled` is off.

    Without providers, they are built from the `OTEL_*` environment variables (OTLP/HTTP);
    given ones (a test's in-memory exporter, an application's own) are used as they are.
    """
    if not settings.tracing_enabled:
        return None
    try:
        from kaiwa.server.otel import Tracing
    except ImportError as exc:
        raise TracingUnavailable(INSTALL_HINT) from exc
    return Tracing(settings, tracer_provider=tracer_provider, meter_provider=meter_provider)


def unavailable(settings: Settings) -> str | None:
    """Why the server cannot start as configured: tracing on and the `otel` extra missing, or
    `OTEL_*` variables asking for what kaiwa cannot do (an exporter, a protocol)."""
    if not settings.tracing_enabled:
        return None
    try:
        from kaiwa.server.otel import check_environment
    except ImportError:
        return INSTALL_HINT
    try:
        check_environment()
    except ValueError as exc:
        return str(exc)
    return None


def current_trace_id() -> str | None:
    """The trace id of the current span (32 hex digits), for logs; None outside any trace."""
    if "opentelemetry.trace" not in sys.modules:
        return None  # nothing imported OpenTelemetry: there is no trace to name
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def link_to_answer(trace_context: str | None) -> None:
    """Link the current span (a resumed stream's request) to the span that produced the answer,
    given as the W3C traceparent stored with it; nothing without one."""
    if trace_context:
        from kaiwa.server.otel import link_current_span

        link_current_span(trace_context)
