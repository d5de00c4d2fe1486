"""Chats: create, validate, list with filters, order and pagination, rename; bad chat ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_support import Api, data, envelope, error

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_create_chat_returns_the_chat_object(api: Api) -> None:
    chat = await api.create_chat(name="営業時間の質問", external_user_id="user-1")
    assert isinstance(chat["id"], int)
    assert chat["name"] == "営業時間の質問"
    assert chat["external_user_id"] == "user-1"
    assert chat["meta"] == {
        "external_user_id": "user-1",
        "conversation_agent_id": api.demo_agent_id,
    }
    assert ISO_Z.match(chat["created_at"])
    assert ISO_Z.match(chat["updated_at"])
    listed = data(await api.get("/api/v1/chats"))
    assert listed == [chat]


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "  "}, {}])
async def test_a_chat_without_a_name_is_untitled_until_its_first_answer_names_it(
    api: Api, body: dict[str, Any]
) -> None:
    chat = data(await api.post("/api/v1/chats", json={"agent_id": api.demo_agent_id, **body}))
    assert chat["name"] == "Untitled"
    stream = await api.stream(chat["id"], "営業時間を教えてください")
    (title,) = stream.of("response.chat.title.updated")
    assert title.name != "Untitled"  # type: ignore[attr-defined]
    assert data(await api.get("/api/v1/chats"))[0]["name"] == title.name  # type: ignore[attr-defined]


async def test_chat_name_of_256_characters_is_accepted_and_257_is_400(api: Api) -> None:
    chat = await api.create_chat(name="名" * 256)
    assert chat["name"] == "名" * 256
    response = await api.post(
        "/api/v1/chats", json={"name": "名" * 257, "agent_id": api.demo_agent_id}
    )
    message = error(response, 400, 10006)
    assert "name" in message
    assert "256" in message
    assert len(data(await api.get("/api/v1/chats"))) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": 12}, "name"),
        ({"name": "x", "agent_id": "not-a-uuid"}, "agent_id"),
        ({"name": "x", "agent_id": None}, "agent_id"),
        ({"name": "x", "agent_id": 5}, "agent_id"),
        ({"name": "x", "agent_id": "DEMO"}, "agent_id"),
        ({"name": "x", "external_user_id": 7}, "external_user_id"),
        ({"name": "x", "external_user_id": "u" * 257}, "external_user_id"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "x", "external_user_id": "nul\x00"}, "external_user_id"),
    ],
)
async def test_create_chat_validation_is_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    payload = {"agent_id": api.demo_agent_id, **body}
    if body.get("agent_id", "") is None or "agent_id" in body:
        payload["agent_id"] = body["agent_id"]
    message = error(await api.post("/api/v1/chats", json=payload), 400, 10006)
    assert field in message
    assert data(await api.get("/api/v1/chats")) == []


async def test_create_chat_with_a_lone_surrogate_in_the_name_is_400(api: Api) -> None:
    content = b'{"name": "bad \\ud800 half", "agent_id": "%s"}' % api.demo_agent_id.encode()
    response = await api.post(
        "/api/v1/chats", content=content, headers={"content-type": "application/json"}
    )
    assert "name" in error(response, 400, 10006)
    assert data(await api.get("/api/v1/chats")) == []


async def test_create_chat_with_an_unknown_agent_is_404(api: Api) -> None:
    response = await api.post(
        "/api/v1/chats",
        json={"name": "x", "agent_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert "00000000-0000-4000-8000-000000000000" in error(response, 404, 10003)
    assert data(await api.get("/api/v1/chats")) == []


async def test_list_chats_filters_by_agent_and_external_user(api: Api) -> None:
    other_agent = (await api.create_agent(name="other"))["id"]
    a1 = await api.create_chat(external_user_id="alice")
    a2 = await api.create_chat(other_agent, external_user_id="alice")
    b1 = await api.create_chat(external_user_id="bob")
    none = await api.create_chat()

    async def ids(**params: str) -> list[int]:
        return [c["id"] for c in data(await api.get("/api/v1/chats", params=params))]

    assert await ids() == [none["id"], b1["id"], a2["id"], a1["id"]]
    assert await ids(agent_id=api.demo_agent_id) == [none["id"], b1["id"], a1["id"]]
    assert await ids(agent_id=other_agent) == [a2["id"]]
    assert await ids(external_user_id="alice") == [a2["id"], a1["id"]]
    assert await ids(external_user_id="alice", agent_id=other_agent) == [a2["id"]]
    assert await ids(external_user_id="nobody") == []
    assert await ids(agent_id="00000000-0000-4000-8000-000000000000") == []


async def test_list_chats_with_a_malformed_agent_id_filter_is_400(api: Api) -> None:
    await api.create_chat()
    message = error(await api.get("/api/v1/chats", params={"agent_id": "nope"}), 400, 10006)
    assert "agent_id" in message


@pytest.mark.parametrize(
    ("order_by", "oldest_first"),
    [(None, False), ("-created_at", False), ("desc", False), ("created_at", True), ("asc", True)],
)
async def test_list_chats_order_by(api: Api, order_by: str | None, oldest_first: bool) -> None:
    created = [(await api.create_chat(name=f"c{i}"))["id"] for i in range(3)]
    params = {"order_by": order_by} if order_by else {}
    listed = [c["id"] for c in data(await api.get("/api/v1/chats", params=params))]
    assert listed == (created if oldest_first else created[::-1])


async def test_list_chats_with_an_unknown_order_is_400(api: Api) -> None:
    message = error(await api.get("/api/v1/chats", params={"order_by": "name"}), 400, 10006)
    assert "order_by" in message


async def test_pagination_counts_pages_and_links_that_work(api: Api) -> None:
    created = [(await api.create_chat(name=f"c{i}"))["id"] for i in range(5)]
    response = await api.get("/api/v1/chats", params={"limit": 2, "order_by": "asc"})
    body = envelope(response)
    assert [c["id"] for c in body["data"]] == created[:2]
    page = body["pagination"]
    assert page["limit"] == 2
    assert page["offset"] == 0
    assert page["total_records"] == 5
    assert page["total_pages"] == 3
    assert page["current_page"] == 1
    assert page["prev_page"] is None
    assert page["next_page"].startswith("http://testserver/api/v1/chats?")

    seen = list(body["data"])
    pages = [page]
    while page["next_page"] is not None:
        body = envelope(await api.client.get(page["next_page"], headers=api.headers()))
        page = body["pagination"]
        pages.append(page)
        seen.extend(body["data"])
    assert [c["id"] for c in seen] == created
    assert [p["current_page"] for p in pages] == [1, 2, 3]
    assert [p["offset"] for p in pages] == [0, 2, 4]
    assert [len(p) for p in pages] == [7, 7, 7]

    # Back from the last page, following prev links; the filter and order are kept.
    back = envelope(await api.client.get(page["prev_page"], headers=api.headers()))
    assert [c["id"] for c in back["data"]] == created[2:4]
    assert back["pagination"]["current_page"] == 2
    first = envelope(await api.client.get(back["pagination"]["prev_page"], headers=api.headers()))
    assert [c["id"] for c in first["data"]] == created[:2]
    assert first["pagination"]["prev_page"] is None


async def test_pagination_of_an_empty_list(api: Api) -> None:
    body = envelope(await api.get("/api/v1/chats"))
    assert body["data"] == []
    assert body["pagination"] == {
        "limit": 50,
        "offset": 0,
        "total_records": 0,
        "total_pages": 0,
        "current_page": 1,
        "next_page": None,
        "prev_page": None,
    }


async def test_limit_of_1000_is_accepted(api: Api) -> None:
    await api.create_chat()
    body = envelope(await api.get("/api/v1/chats", params={"limit": 1000}))
    assert body["pagination"]["limit"] == 1000
    assert len(body["data"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 10**30}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"offset": 2**70}, "offset"),
        ({"offset": 2**63}, "offset"),
    ],
)
async def test_bad_pagination_parameters_are_400_naming_them(
    api: Api, params: dict[str, Any], field: str
) -> None:
    await api.create_chat()
    chat_id = data(await api.get("/api/v1/chats"))[0]["id"]
    for path in ("/api/v1/chats", f"/api/v1/chats/{chat_id}/messages", "/api/v1/agents"):
        message = error(await api.get(path, params=params), 400, 10006)
        assert field in message


async def test_huge_offset_within_range_is_an_empty_page(api: Api) -> None:
    await api.create_chat()
    body = envelope(await api.get("/api/v1/chats", params={"offset": 2**63 - 1}))
    assert body["data"] == []
    assert body["pagination"]["total_records"] == 1
    assert body["pagination"]["next_page"] is None


async def test_rename_stores_the_name(api: Api) -> None:
    chat = await api.create_chat(name="before")
    renamed = data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "after"}))
    assert renamed["id"] == chat["id"]
    assert renamed["name"] == "after"
    listed = data(await api.get("/api/v1/chats"))
    assert [c["name"] for c in listed] == ["after"]


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "x" * 257}, {}, {"name": 3}])
async def test_rename_validation_is_400_and_keeps_the_name(api: Api, body: dict[str, Any]) -> None:
    chat = await api.create_chat(name="kept")
    assert "name" in error(await api.put(f"/api/v1/chats/{chat['id']}", json=body), 400, 10006)
    assert [c["name"] for c in data(await api.get("/api/v1/chats"))] == ["kept"]


async def test_rename_of_an_unknown_chat_is_404(api: Api) -> None:
    error(await api.put("/api/v1/chats/987654", json={"name": "x"}), 404, 10003)


@pytest.mark.parametrize("chat_id", ["abc", str(2**70), str(2**63), "0", "-1", "1.5"])
async def test_malformed_chat_id_is_400_not_500(api: Api, chat_id: str) -> None:
    responses = [
        await api.get(f"/api/v1/chats/{chat_id}/messages"),
        await api.put(f"/api/v1/chats/{chat_id}", json={"name": "x"}),
        await api.send(chat_id, "hello"),  # type: ignore[arg-type]
    ]
    for response in responses:
        assert "chat_id" in error(response, 400, 10006)


async def test_largest_chat_id_is_a_plain_404(api: Api) -> None:
    error(await api.get(f"/api/v1/chats/{2**63 - 1}/messages"), 404, 10003)
    error(await api.send(2**63 - 1, "hello"), 404, 10003)
