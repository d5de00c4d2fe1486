"""The JSON envelope every `/api/v1` response carries: always all four keys."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Pagination(BaseModel):
    limit: int
    offset: int
    total_records: int
    total_pages: int
    current_page: int
    """1-based: `offset // limit + 1`."""
    next_page: str | None = None
    """Absolute URL of the next page, or null on the last page."""
    prev_page: str | None = None


class Envelope(BaseModel, Generic[T]):
    data: T | None = None
    message: str | None = None
    error_code: int = 0
    pagination: Pagination | None = None
