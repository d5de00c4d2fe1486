"""Pages: `list()` is one page with its `pagination`; `iter_all()` walks every page by offset,
lazily, and stops at the last one. Both clients.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    CHAT_ID,
    FakeApi,
    close,
    collect,
    make_client,
    ok,
)

NOW = "2025-04-01T09:00:00Z"


def chat(n: int) -> dict[str, Any]:
    return {"id": n, "name": f"chat {n}", "created_at": NOW, "updated_at": NOW, "meta": {}}


def message(n: int) -> dict[str, Any]:
    role = "user" if n % 2 else "assistant"
    return {"id": n, "group_id": "cvg-1", "role": role, "content": f"#{n}", "created_at": NOW}


def agent(n: int) -> dict[str, Any]:
    return {"id": f"{n:08d}-0000-4000-8000-000000000000", "name": f"agent {n}"}


def pages_of(rows: list[dict[str, Any]]) -> Any:
    """A fake list endpoint over `rows` honouring `limit` and `offset`, like the server's."""

    def reply(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"])
        total = len(rows)
        pagination = {
            "limit": limit,
            "offset": offset,
            "total_records": total,
            "total_pages": -(-total // limit),
            "current_page": offset // limit + 1,
            # Absolute as the server saw it: behind a proxy, not an address the client can use.
            "next_page": "http://internal:8000/next" if offset + limit < total else None,
            "prev_page": None,
        }
        return ok(rows[offset : offset + limit], pagination=pagination)

    return reply


@pytest.mark.parametrize(
    ("namespace", "path", "make", "args"),
    [
        ("chats", "/chats", chat, ()),
        ("messages", f"/chats/{CHAT_ID}/messages", message, (CHAT_ID,)),
        ("agents", "/agents", agent, ()),
    ],
)
async def test_iter_all_walks_every_page_by_offset(
    kind: str, namespace: str, path: str, make: Any, args: tuple[int, ...]
) -> None:
    rows = [make(n) for n in range(1, 8)]
    api = FakeApi().on("GET", path, pages_of(rows))
    client = make_client(kind, api)

    items = await collect(getattr(client, namespace).iter_all(*args, page_size=3))
    await close(client)

    assert [item.id for item in items] == [row["id"] for row in rows]
    offsets = [request.url.params["offset"] for request in api.requests]
    assert offsets == ["0", "3", "6"]
    assert {request.url.params["limit"] for request in api.requests} == {"3"}
    assert all(request.url.host == "kaiwa.test" for request in api.requests)


async def test_iter_all_keeps_the_filters_on_every_page(kind: str) -> None:
    rows = [chat(n) for n in range(1, 5)]
    api = FakeApi().on("GET", "/chats", pages_of(rows))
    client = make_client(kind, api)

    chats = client.chats.iter_all(agent_id=AGENT_ID, order_by="asc", page_size=2)
    items = await collect(chats)
    await close(client)

    assert len(items) == 4
    for request in api.requests:
        assert request.url.params["agent_id"] == AGENT_ID
        assert request.url.params["order_by"] == "asc"


async def test_iter_all_of_an_empty_list_asks_once(kind: str) -> None:
    api = FakeApi().on("GET", "/chats", pages_of([]))
    client = make_client(kind, api)
    assert await collect(client.chats.iter_all()) == []
    await close(client)
    assert len(api.requests) == 1


async def test_iter_all_is_lazy(kind: str) -> None:
    api = FakeApi().on("GET", "/chats", pages_of([chat(n) for n in range(1, 10)]))
    client = make_client(kind, api)

    chats = client.chats.iter_all(page_size=2)
    assert api.requests == []
    first = await anext(chats) if kind == "async" else next(chats)
    await close(client)

    assert first.id == 1
    assert len(api.requests) == 1


async def test_a_page_says_whether_another_follows(kind: str) -> None:
    rows = [chat(n) for n in range(1, 6)]
    api = FakeApi().on("GET", "/chats", pages_of(rows))
    client = make_client(kind, api)

    first = client.chats.list(limit=2)
    last = client.chats.list(limit=2, offset=4)
    if kind == "async":
        first, last = await first, await last
    await close(client)

    assert first.has_next
    assert first.pagination is not None
    assert first.pagination.total_records == 5
    assert first.pagination.current_page == 1
    assert not last.has_next
    assert [c.id for c in last.items] == [5]
