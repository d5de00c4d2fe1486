"""The JSON log formatter, the logging configuration it sits in, and the ids it reads."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

from kaiwa import log_context
from kaiwa.config import Settings
from kaiwa.server.access_log import RedactSecrets
from kaiwa.server.logs import JsonFormatter, log_config, trace_id_source

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def record(
    message: str = "hello %s",
    args: tuple[object, ...] = ("world",),
    *,
    name: str = "kaiwa.test",
    level: int = logging.INFO,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, None)
    made.created = 1796893200.0123  # 2026-12-10T09:00:00.012Z
    made.msecs = 12.3
    return made


def formatted(line: logging.LogRecord, formatter: JsonFormatter | None = None) -> dict[str, object]:
    text = (formatter or JsonFormatter()).format(line)
    assert "\n" not in text
    assert text.isascii()
    parsed: dict[str, object] = json.loads(text)
    return parsed


@pytest.fixture(autouse=True)
def no_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIWA_CONFIG", str(tmp_path / "absent.toml"))


def test_a_line_has_time_level_logger_and_message_and_no_id_when_none_is_known() -> None:
    assert formatted(record()) == {
        "time": "2026-12-10T09:00:00.012Z",
        "level": "INFO",
        "logger": "kaiwa.test",
        "message": "hello world",
    }


def test_a_line_carries_the_ids_bound_where_it_was_written() -> None:
    token = log_context.bind(request_id="req-1", workspace_id="ws-1")
    try:
        log_context.bind(chat_id=7, response_id="resp-1")
        line = formatted(record(), JsonFormatter(trace_id=lambda: TRACE_ID))
    finally:
        log_context.reset(token)
    assert line["request_id"] == "req-1"
    assert line["workspace_id"] == "ws-1"
    assert line["chat_id"] == 7
    assert line["response_id"] == "resp-1"
    assert line["trace_id"] == TRACE_ID
    assert log_context.current() == {}
    assert "request_id" not in formatted(record())


def test_no_trace_id_outside_a_trace() -> None:
    assert "trace_id" not in formatted(record(), JsonFormatter(trace_id=lambda: None))


async def test_a_task_inherits_the_ids_and_what_it_binds_stays_in_it() -> None:
    token = log_context.bind(request_id="req-2")

    async def producer() -> dict[str, object]:
        log_context.bind(response_id="resp-2")
        return dict(log_context.current())

    try:
        inner = await asyncio.create_task(producer())
        outer = dict(log_context.current())
    finally:
        log_context.reset(token)
    assert inner == {"request_id": "req-2", "response_id": "resp-2"}
    assert outer == {"request_id": "req-2"}


def test_an_access_line_has_method_path_and_status_with_its_secrets_redacted() -> None:
    access = record(
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/e?token=secret&after=3", "1.1", 200),
        name="uvicorn.access",
    )
    assert RedactSecrets().filter(access)
    line = formatted(access)
    assert line["message"] == '127.0.0.1:5000 - "GET /e?token=[redacted]&after=3 HTTP/1.1" 200'
    assert (line["method"], line["path"], line["status"]) == (
        "GET",
        "/e?token=[redacted]&after=3",
        200,
    )
    assert "secret" not in json.dumps(line)


def test_an_exception_is_one_field_of_the_same_line_and_text_is_escaped() -> None:
    try:
        raise ValueError("壊れた")
    except ValueError:
        failed = record("失敗 %s", ("\n",), level=logging.ERROR)
        failed.exc_info = sys.exc_info()
    line = formatted(failed)
    assert line["message"] == "失敗 \n"
    assert isinstance(line["exception"], str)
    assert "ValueError: 壊れた" in line["exception"]


def test_json_settings_give_every_handler_the_json_formatter() -> None:
    config = log_config(Settings(log_format="json"))
    assert {name: f["()"] for name, f in config["formatters"].items()} == {
        "default": JsonFormatter,
        "access": JsonFormatter,
        "named": JsonFormatter,
    }
    assert config["handlers"]["access"]["stream"] == "ext://sys.stdout"
    assert config["handlers"]["default"]["stream"] == "ext://sys.stderr"
    assert config["disable_existing_loggers"] is False


def test_text_is_the_default_and_reads_like_uvicorn() -> None:
    config = log_config(Settings())
    assert config["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"
    assert config["formatters"]["access"]["()"] == "uvicorn.logging.AccessFormatter"


@pytest.mark.parametrize(
    ("level", "kaiwa", "root"),
    [
        ("debug", "DEBUG", logging.WARNING),
        ("INFO", "INFO", logging.WARNING),
        ("error", "ERROR", logging.ERROR),
    ],
)
def test_the_level_is_kaiwas_and_uvicorns_while_other_libraries_log_from_warning(
    level: str, kaiwa: str, root: int
) -> None:
    config = log_config(Settings(log_level=level))
    loggers = config["loggers"]
    assert loggers["kaiwa"]["level"] == kaiwa
    assert loggers["uvicorn"]["level"] == kaiwa
    assert loggers["uvicorn.access"]["level"] == kaiwa
    assert config["root"]["level"] == root


def test_a_bad_log_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml")
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="verbose")


def test_the_trace_id_hook_is_the_tracing_modules_and_answers_none_outside_a_trace() -> None:
    source = trace_id_source()
    assert source is not None
    assert source() is None


def test_a_line_written_inside_a_span_carries_its_trace_id() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("kaiwa.tests")
    formatter = JsonFormatter(trace_id=trace_id_source())
    with tracer.start_as_current_span("request") as span:
        line = formatted(record(), formatter)
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "trace_id" not in formatted(record(), formatter)
