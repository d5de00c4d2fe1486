"""`client.batches`: the requests each method sends, the models it reads, every page of results,
and `wait` polling until the batch has ended — with `Client` and with `AsyncClient`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    CHAT_ID,
    RESPONSE_ID,
    FakeApi,
    body_of,
    close,
    collect,
    error,
    make_client,
    ok,
    resolve,
)

from kaiwa.client import (
    BadRequestError,
    Batch,
    BatchItemResult,
    BatchRequest,
    KaiwaError,
    Page,
)

NOW = "2025-04-01T09:00:00Z"
BATCH_ID = "5b1e7c9a-3d2f-4e8a-9b6c-1a2b3c4d5e6f"
FILE_UUID = UUID("0e858958-bea2-474b-a971-d87fdf01b8b8")
BATCH = {
    "id": BATCH_ID,
    "status": "processing",
    "agent_id": AGENT_ID,
    "total_requests": 2,
    "completed_requests": 1,
    "failed_requests": 0,
    "cancelled_requests": 0,
    "webhook": {"url": "https://example.com/hook", "events": ["completed", "failed"]},
    "webhook_delivered_at": None,
    "webhook_error": None,
    "created_at": NOW,
    "started_at": NOW,
    "completed_at": None,
    "cancelled_at": None,
}
DONE = {**BATCH, "status": "completed", "completed_requests": 2, "completed_at": NOW}
RESULT = {
    "custom_id": "q-1",
    "status": "completed",
    "chat_id": CHAT_ID,
    "response_id": RESPONSE_ID,
    "response": "営業時間は平日の9時から18時までです。",
    "error": None,
    "usage": {
        "total_prompt_tokens": 12,
        "total_completion_tokens": 7,
        "total_tokens": 19,
        "total_calls": 1,
    },
    "agent_id": AGENT_ID,
    "started_at": NOW,
    "finished_at": NOW,
}
FAILED = {
    **RESULT,
    "custom_id": "q-2",
    "status": "failed",
    "response": None,
    "usage": None,
    "error": {"code": 10009, "message": "The model provider failed"},
}


def page(items: list[Any], offset: int, total: int, limit: int = 1) -> httpx.Response:
    pagination = {
        "limit": limit,
        "offset": offset,
        "total_records": total,
        "total_pages": total,
        "current_page": offset // limit + 1,
        "next_page": None,
        "prev_page": None,
    }
    return ok(items, pagination=pagination)


async def test_create_sends_the_requests_and_the_webhook_and_reads_the_batch(kind: str) -> None:
    api = FakeApi().on("POST", "/batches", ok(BATCH))
    client = make_client(kind, api)
    requests: list[BatchRequest] = [
        {"custom_id": "q-1", "message": "営業時間は?"},
        {
            "custom_id": "q-2",
            "message": "添付を読んで",
            "agent_id": UUID(AGENT_ID),
            "external_user_id": "u-1",
            "name": "添付の質問",
            "attached_file_uuids": [FILE_UUID],
            "history_id": CHAT_ID,
        },
    ]
    webhook = {"url": "https://example.com/hook", "events": ("completed",), "secret": "s3cret"}

    batch = await resolve(client.batches.create(UUID(AGENT_ID), requests, webhook=webhook))
    await close(client)

    assert isinstance(batch, Batch)
    assert (batch.id, batch.status, batch.total_requests) == (BATCH_ID, "processing", 2)
    assert batch.webhook is not None
    assert batch.webhook.events == ["completed", "failed"]
    assert not batch.ended
    assert body_of(api.last) == {
        "agent_id": AGENT_ID,
        "requests": [
            {"custom_id": "q-1", "message": "営業時間は?"},
            {
                "custom_id": "q-2",
                "message": "添付を読んで",
                "agent_id": AGENT_ID,
                "external_user_id": "u-1",
                "name": "添付の質問",
                "attached_file_uuids": [str(FILE_UUID)],
                "history_id": CHAT_ID,
            },
        ],
        "webhook": {"url": "https://example.com/hook", "events": ["completed"], "secret": "s3cret"},
    }


async def test_create_without_a_webhook_sends_none(kind: str) -> None:
    api = FakeApi().on("POST", "/batches", ok(BATCH))
    client = make_client(kind, api)
    await resolve(client.batches.create(AGENT_ID, [{"custom_id": "a", "message": "x"}]))
    await close(client)
    assert "webhook" not in body_of(api.last)


async def test_a_refused_batch_raises_with_the_field_named(kind: str) -> None:
    message = "requests[1].custom_id: 'a' is already used by requests[0]"
    api = FakeApi().on("POST", "/batches", error(400, 10006, message))
    client = make_client(kind, api)
    with pytest.raises(BadRequestError, match=r"requests\[1\]\.custom_id"):
        await resolve(client.batches.create(AGENT_ID, [{"custom_id": "a", "message": "x"}] * 2))
    await close(client)


async def test_list_get_cancel_and_results_call_their_endpoints(kind: str) -> None:
    cancelled = {**BATCH, "status": "cancelled", "cancelled_at": NOW}
    api = (
        FakeApi()
        .on("GET", "/batches", page([BATCH], 0, 3, limit=1))
        .on("GET", f"/batches/{BATCH_ID}", ok(BATCH))
        .on("POST", f"/batches/{BATCH_ID}/cancel", ok(cancelled))
        .on("GET", f"/batches/{BATCH_ID}/results", page([RESULT, FAILED], 0, 2, limit=2))
    )
    client = make_client(kind, api)

    listed = await resolve(client.batches.list(limit=1))
    got = await resolve(client.batches.get(BATCH_ID))
    stopped = await resolve(client.batches.cancel(BATCH_ID))
    results = await resolve(client.batches.results(BATCH_ID, limit=2, offset=0))
    await close(client)

    assert isinstance(listed, Page)
    assert [batch.id for batch in listed.items] == [BATCH_ID]
    assert listed.has_next
    assert api.sent("GET", "/batches")[0].url.params["limit"] == "1"
    assert got.started_at is not None
    assert stopped.status == "cancelled"
    assert [r.custom_id for r in results.items] == ["q-1", "q-2"]
    first, second = results.items
    assert isinstance(first, BatchItemResult)
    assert first.usage is not None
    assert first.usage.total_tokens == 19
    assert (first.chat_id, first.response_id) == (CHAT_ID, RESPONSE_ID)
    assert second.error is not None
    assert second.error.code == 10009
    assert api.sent("GET", f"/batches/{BATCH_ID}/results")[0].url.params["offset"] == "0"


async def test_iter_results_walks_every_page_in_order(kind: str) -> None:
    path = f"/batches/{BATCH_ID}/results"
    third = {**RESULT, "custom_id": "q-3"}
    api = FakeApi().on(
        "GET",
        path,
        page([RESULT, FAILED], 0, 3, limit=2),
        page([third], 2, 3, limit=2),
    )
    client = make_client(kind, api)
    seen = await collect(client.batches.iter_results(BATCH_ID, page_size=2))
    await close(client)

    assert [r.custom_id for r in seen] == ["q-1", "q-2", "q-3"]
    assert [r.url.params["offset"] for r in api.sent("GET", path)] == ["0", "2"]


async def test_wait_polls_until_every_request_has_ended(kind: str) -> None:
    # Cancelled, but one request is still stopping: not ended yet.
    stopping = {**BATCH, "status": "cancelled", "completed_requests": 0, "cancelled_requests": 1}
    stopped = {**stopping, "cancelled_requests": 2}
    api = FakeApi().on("GET", f"/batches/{BATCH_ID}", ok(BATCH), ok(stopping), ok(stopped))
    client = make_client(kind, api)

    batch = await resolve(client.batches.wait(BATCH_ID, interval=0.0))
    await close(client)

    assert batch.ended
    assert batch.cancelled_requests == 2
    assert len(api.requests) == 3


async def test_wait_returns_a_finished_batch_at_once(kind: str) -> None:
    api = FakeApi().on("GET", f"/batches/{BATCH_ID}", ok(DONE))
    client = make_client(kind, api)
    batch = await resolve(client.batches.wait(BATCH_ID))
    await close(client)
    assert (batch.status, batch.ended, len(api.requests)) == ("completed", True, 1)


async def test_wait_gives_up_after_its_timeout(kind: str) -> None:
    api = FakeApi().on("GET", f"/batches/{BATCH_ID}", ok(BATCH))
    client = make_client(kind, api)
    with pytest.raises(KaiwaError, match=r"had not ended after 0\.05 s"):
        await resolve(client.batches.wait(BATCH_ID, timeout=0.05, interval=0.01))
    await close(client)
    assert len(api.requests) >= 2


async def test_a_batch_from_a_newer_server_keeps_unknown_fields(kind: str) -> None:
    api = FakeApi().on("GET", f"/batches/{BATCH_ID}", ok({**DONE, "priority": "low"}))
    client = make_client(kind, api)
    batch = await resolve(client.batches.get(BATCH_ID))
    await close(client)
    assert batch.model_extra == {"priority": "low"}
