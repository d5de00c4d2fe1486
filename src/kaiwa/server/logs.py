"""The server's logs: plain text for a terminal, or one JSON object per line for a collector.

    configure(settings)        # `kaiwa serve`, before uvicorn starts (which then leaves it be)

With `log_format = "json"` every record, uvicorn's access log included, is one line::

    {"time": "2026-12-10T09:00:00.123Z", "level": "INFO", "logger": "uvicorn.access",
     "message": "127.0.0.1:50312 - \\"POST /api/v1/chats/7/messages HTTP/1.1\\" 200",
     "request_id": "9f1c…", "workspace_id": "3b2a…", "chat_id": 7, "response_id": "c0de…",
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
     "method": "POST", "path": "/api/v1/chats/7/messages", "status": 200}

The ids are those known where the record was written (`kaiwa.log_context`); `trace_id` only when
tracing is on; `method`, `path` and `status` only on access lines, whose path has its secrets
redacted first (`access_log`); `exception` carries a traceback. Output is ASCII (`\\uXXXX`
escapes), so no pipeline can mangle it.

Where: the access log goes to stdout, everything else to stderr, as uvicorn does. kaiwa's and
uvicorn's loggers log at `log_level`; other libraries only from WARNING up, because the debug
logs of HTTP clients and model SDKs carry request bodies, message text and headers.
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.config
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kaiwa import log_context
from kaiwa.config import Settings
from kaiwa.server import access_log

__all__ = ["JsonFormatter", "configure", "log_config", "trace_id_source"]

TraceIds = Callable[[], str | None]
"""Gives the current trace's id (32 hex digits), or None outside a traced span."""

_LEVELS = logging.getLevelNamesMapping()
_TEXT = "%(levelprefix)s %(message)s"
_TEXT_NAMED = "%(levelprefix)s %(name)s: %(message)s"
_ACCESS = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


class JsonFormatter(logging.Formatter):
    def __init__(self, trace_id: TraceIds | None = None) -> None:
        super().__init__()
        self._trace_id = trace_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(log_context.current())
        if self._trace_id is not None and (trace_id := self._trace_id()):
            line["trace_id"] = trace_id
        if record.name == "uvicorn.access":
            line.update(_access_fields(record.args))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def _time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds, as `2026-12-10T09:00:00.123Z`."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{int(record.msecs):03d}Z"


def _access_fields(args: object) -> dict[str, object]:
    """uvicorn's access record has the arguments (client, method, path, version, status)."""
    if not isinstance(args, tuple) or len(args) != 5:
        return {}
    _client, method, path, _version, status = args
    return {"method": method, "path": path, "status": status}


def trace_id_source() -> TraceIds | None:
    """The hook for trace ids: `kaiwa.server.tracing.current_trace_id`, when that module (the
    optional tracing) is there; it answers None while tracing is off."""
    try:
        tracing = importlib.import_module("kaiwa.server.tracing")
    except ImportError:
        return None
    source = getattr(tracing, "current_trace_id", None)
    return source if callable(source) else None


def log_config(settings: Settings) -> dict[str, Any]:
    """The `logging.config.dictConfig` dictionary for these settings."""
    level = settings.log_level.upper()
    formatters: dict[str, dict[str, Any]]
    if settings.log_format == "json":
        json_formatter = {"()": JsonFormatter, "trace_id": trace_id_source()}
        formatters = {name: json_formatter for name in ("default", "access", "named")}
    else:
        formatters = {
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": _TEXT},
            "access": {"()": "uvicorn.logging.AccessFormatter", "fmt": _ACCESS},
            "named": {"()": "uvicorn.logging.DefaultFormatter", "fmt": _TEXT_NAMED},
        }

    def handler(formatter: str, stream: str) -> dict[str, str]:
        return {"class": "logging.StreamHandler", "formatter": formatter, "stream": stream}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": handler("default", "ext://sys.stderr"),
            "access": handler("access", "ext://sys.stdout"),
            "named": handler("named", "ext://sys.stderr"),
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            "kaiwa": {"level": level},
        },
        # kaiwa's records reach this handler whatever the root's level; other libraries' do not.
        "root": {"handlers": ["named"], "level": max(_LEVELS[level], logging.WARNING)},
    }


def configure(settings: Settings) -> None:
    """Set the process's logging up for `settings` (again, if it was already)."""
    logging.config.dictConfig(log_config(settings))
    # A Python warning is printed raw on stderr; in JSON, it must be a record like any other.
    logging.captureWarnings(settings.log_format == "json")
    access_log.install()
