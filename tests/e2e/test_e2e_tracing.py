"""Traces leave a real `kaiwa serve` over OTLP/HTTP, configured only by `OTEL_*` variables, and
reach a real receiver on loopback; a collector that is absent slows nothing; tracing asked for
without the `otel` extra refuses to start."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from tests.e2e.conftest import HOST, KaiwaServer, Launcher, free_port

WAIT = 20.0


class OtlpReceiver:
    """POST /v1/traces and /v1/metrics, protobuf, as a collector takes them; it keeps what came."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Span]] = []
        self.metric_names: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/x-protobuf"
                if self.path == "/v1/traces":
                    reply = receiver.take_spans(body)
                elif self.path == "/v1/metrics":
                    reply = receiver.take_metrics(body)
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def take_spans(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((resource, span) for span in scope_spans.spans)
        return ExportTraceServiceResponse().SerializeToString()

    def take_metrics(self, body: bytes) -> bytes:
        request = ExportMetricsServiceRequest.FromString(body)
        with self.lock:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    self.metric_names.update(m.name for m in scope_metrics.metrics)
        return ExportMetricsServiceResponse().SerializeToString()

    def wait_for(self, name: str) -> list[tuple[dict[str, str], Span]]:
        """Every span received once one named `name` came (bounded)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if any(span.name == name for _, span in self.spans):
                    return list(self.spans)
            time.sleep(0.05)
        pytest.fail(f"no span {name!r} reached the receiver: {[s.name for _, s in self.spans]}")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    otlp.thread.start()
    yield otlp
    otlp.server.shutdown()
    otlp.server.server_close()
    otlp.thread.join(timeout=5)


def _attributes(span: Span) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return values


def _answer_with_a_step(server: KaiwaServer) -> tuple[str, int, str]:
    """Stream one answer that asks another agent once; its agent, chat and response ids."""
    helper = server.create_agent(
        name="helper",
        llm_model="scripted/test",
        meta={"model_settings": {"script": {"answer": [{"text": "42"}]}}},
    )
    call = {
        "tool_call": {
            "id": "c1",
            "name": "call_agent",
            "arguments": {"agent": "helper", "question": "q?"},
        }
    }
    caller = server.create_agent(
        name="caller",
        llm_model="scripted/test",
        unified_tools=[{"type": "call_agent", "agent_id": helper["id"]}],
        meta={"model_settings": {"script": {"rounds": [[call], [{"text": "It is 42."}]]}}},
    )
    chat = server.create_chat(agent_id=caller["id"])
    streamed = server.stream(chat["id"], "what is it?", agent_id=caller["id"])
    assert streamed.done
    assert streamed.of("response.output_text.completed")[0]["final_text"] == "It is 42."
    return caller["id"], chat["id"], streamed.events[0]["response_id"]


def test_spans_and_metrics_reach_an_otlp_receiver_set_by_otel_variables(
    kaiwa_launcher: Launcher, receiver: OtlpReceiver
) -> None:
    env = {
        "KAIWA_TRACING_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "kaiwa-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    server = kaiwa_launcher.start("tracing", env=env)
    try:
        caller, chat_id, response_id = _answer_with_a_step(server)
        receiver.wait_for(f"invoke_agent {caller}")
    finally:
        server.stop()
    received = list(receiver.spans)
    resources = {resource["service.name"] for resource, _ in received}
    assert resources == {"kaiwa-e2e"}
    by_id = {span.span_id: span for _, span in received}
    (answer,) = [s for _, s in received if s.name == f"invoke_agent {caller}"]
    assert _attributes(answer)["kaiwa.response.id"] == response_id
    assert _attributes(answer)["gen_ai.conversation.id"] == str(chat_id)
    request = by_id[answer.parent_span_id]
    assert request.name == "POST /api/v1/chats/{chat_id}/messages"
    assert request.kind == Span.SPAN_KIND_SERVER
    trace = [s for _, s in received if s.trace_id == answer.trace_id]
    (step,) = [s for s in trace if s.name == "execute_tool call_agent"]
    assert step.parent_span_id == answer.span_id
    assert _attributes(step)["kaiwa.step.outcome"] == "succeeded"
    calls = [s for s in trace if s.name == "chat test"]
    # Two rounds and the title under the answer, the helper's call under the step.
    assert sorted(by_id[c.parent_span_id].name for c in calls) == sorted(
        [answer.name] * 3 + [step.name]
    )
    # The last export happened on the way out, if not before.
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= (
        receiver.metric_names
    )


def test_an_absent_collector_slows_no_stream_and_holds_no_exit(kaiwa_launcher: Launcher) -> None:
    env = {
        "KAIWA_TRACING_ENABLED": "true",
        # Nothing listens there: every export fails at once, in the exporter's own thread.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{free_port()}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = kaiwa_launcher.start("no-collector", env=env)
    try:
        started = time.monotonic()
        for _ in range(3):
            _answer_with_a_step(server)
        assert time.monotonic() - started < 10.0
    finally:
        stopping = time.monotonic()
        server.stop()
    assert time.monotonic() - stopping < 10.0


def test_tracing_without_the_extra_refuses_to_start(kaiwa_launcher: Launcher) -> None:
    server = kaiwa_launcher.prepare("no-extra", env={"KAIWA_TRACING_ENABLED": "true"})
    # The SDK and the exporter (the `otel` extra) are missing; the API comes with FastAPI.
    program = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "sys.modules['opentelemetry.exporter'] = None; "
        "from kaiwa.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "serve", "--host", HOST, "--port", str(server.port)],
        cwd=server.root,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "pip install 'kaiwa[otel]'" in result.stderr
    assert "Traceback" not in result.stderr
