"""Errors become envelopes here, and only here.

Routes and services raise `ApiError`; validation and framework errors are translated to the same
codes, with a message that names the field and the rule. Nothing internal leaks into a message.
The refusals and failures the metrics count (rate limits, Redis, the database) are counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from kaiwa.bus.base import BusUnavailable
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.protocol.errors import FieldError
from kaiwa.server.metrics import Metrics
from kaiwa.server.ratelimit import RateLimited

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.PERMISSION_DENIED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.BAD_REQUEST,
    422: ErrorCode.BAD_REQUEST,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(
    status: int,
    code: int,
    message: str,
    headers: dict[str, str] | None = None,
    errors: Sequence[FieldError] = (),
) -> JSONResponse:
    """The error envelope; `errors`, when there are any, add the [ext] key listing each field."""
    body: dict[str, Any] = {
        "data": None,
        "message": message,
        "error_code": code,
        "pagination": None,
    }
    if errors:
        body["errors"] = [{"field": error.field, "reason": error.reason} for error in errors]
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation(errors: Sequence[Any]) -> str:
    """`name: String should have at most 256 characters; agent_id: Field required`."""
    parts = []
    for error in errors:
        # The first part says where the value came from (body, query, path), not which field.
        where = tuple(error.get("loc", ()))
        if where and where[0] in ("body", "query", "path", "header"):
            where = where[1:]
        loc = [str(part) for part in where]
        kind = error.get("type", "")
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            parts.append(f"Malformed JSON body{': ' + detail if detail else ''}")
        elif kind == "missing" and not loc:
            parts.append("A JSON body is required")
        elif kind == "model_attributes_type" or (kind == "dict_type" and not loc):
            parts.append("The JSON body must be an object")
        else:
            field = ".".join(loc) or "body"
            parts.append(f"{field}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "Invalid request"


def _metrics(request: Request) -> Metrics | None:
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    return metrics


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if isinstance(exc, RateLimited) and (metrics := _metrics(request)) is not None:
        metrics.refused(exc.limit)
    return error_response(exc.status, int(exc.code), exc.message, exc.headers, exc.errors)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, int(ErrorCode.BAD_REQUEST), describe_validation(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.SERVER_ERROR)
    status = exc.status_code if exc.status_code < 500 else 500
    message = str(exc.detail)
    if exc.status_code == 404:
        message = "Not found: no such endpoint"
    elif exc.status_code == 400 and "parsing the body" in message:
        message = "Malformed request body: it must be UTF-8 encoded JSON"
    return error_response(status, int(code), message, dict(exc.headers or {}))


async def _bus_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("request refused: %s", exc)
    if (metrics := _metrics(request)) is not None:
        metrics.redis_error()
    message = "Redis, which this server shares with its replicas, is unavailable; retry shortly"
    return error_response(503, int(ErrorCode.SERVER_ERROR), message, {"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    if isinstance(exc, SQLAlchemyError) and (metrics := _metrics(request)) is not None:
        metrics.database_error(exc)
    return error_response(500, int(ErrorCode.SERVER_ERROR), "Internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(BusUnavailable, _bus_unavailable)
    app.add_exception_handler(Exception, _unexpected)
