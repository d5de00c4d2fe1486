"""Path parameters and checks shared by routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from kaiwa.protocol import ApiError, ErrorCode

# Ids are 64-bit in the database: a larger number is a bad request, not a database error.
ChatId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def check_name(name: str, limit: int) -> None:
    if not name.strip():
        raise ApiError(ErrorCode.BAD_REQUEST, "name: must not be empty")
    if len(name) > limit:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"name: must be at most {limit} characters, got {len(name)}"
        )
