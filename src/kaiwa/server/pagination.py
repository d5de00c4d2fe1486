"""`limit`/`offset` query parameters and the `pagination` object with absolute next/prev URLs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.deps import ServicesDep

# Offsets reach the database as a signed 64-bit integer.
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


async def _page(  # async: a plain `def` dependency would run on a worker thread
    services: ServicesDep,
    limit: Annotated[int, Query()] = 50,
    offset: Annotated[int, Query()] = 0,
) -> Page:
    maximum = services.settings.max_page_limit
    if not 1 <= limit <= maximum:
        raise ApiError(ErrorCode.BAD_REQUEST, f"limit must be between 1 and {maximum}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"offset must be between 0 and {MAX_OFFSET}, got {offset}"
        )
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(_page)]


def pagination(request: Request, page: Page, total: int) -> dict[str, Any]:
    def url(offset: int) -> str:
        return str(request.url.include_query_params(limit=page.limit, offset=offset))

    next_offset = page.offset + page.limit
    return {
        "limit": page.limit,
        "offset": page.offset,
        "total_records": total,
        "total_pages": math.ceil(total / page.limit),
        "current_page": page.offset // page.limit + 1,
        "next_page": url(next_offset) if next_offset < total else None,
        "prev_page": url(max(0, page.offset - page.limit)) if page.offset > 0 else None,
    }
