"""Success envelopes: `{"data", "message", "error_code", "pagination"}`, always all four keys."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def ok(data: Any, pagination: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"data": data, "message": None, "error_code": 0, "pagination": pagination})
