"""Batches: checked whole before anything is stored; run in the background as ordinary
responses; cancelled; reported to a signed webhook; continued after a restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Api, data, envelope, error, parse_stream
from sqlalchemy import func, select, update
from tests.fakes.webhook_receiver import WebhookReceiver

from kaiwa.config import Settings
from kaiwa.runtime import TurnRequest
from kaiwa.runtime.turns import store_turn
from kaiwa.server import create_app
from kaiwa.store import batches, workspaces
from kaiwa.store.bootstrap import ensure_demo
from kaiwa.store.db import create_engine, new_id, now, session_factory, transaction
from kaiwa.store.keys import create_key
from kaiwa.store.models import Batch, BatchItem, Job, Message, Workspace

ANSWER = [{"text": "お問い合わせ"}, {"text": "ありがとうございます。"}]
ANSWER_TEXT = "お問い合わせありがとうございます。"
USAGE = {"prompt_tokens": 12, "completion_tokens": 7}
# Long enough that a test always stops it first.
SLOW = [{"text": "途中まで"}, *[{"delay": 0.5}] * 10, {"text": "届かない"}]
FAST = {
    "fetch_allow_private": "127.0.0.1",
    "batch_busy_backoff": 0.05,
    "batch_webhook_backoff": 0.01,
    "batch_poll_interval": 0.5,
}
MakeApi = Callable[..., Any]


async def fast_api(make_api: MakeApi, **overrides: Any) -> Api:
    api: Api = await make_api(**{**FAST, **overrides})
    return api


def items(*custom_ids: str, **fields: Any) -> list[dict[str, Any]]:
    return [{"custom_id": cid, "message": f"{cid} について教えて", **fields} for cid in custom_ids]


async def create(api: Api, agent_id: str, requests: list[Any], **body: Any) -> dict[str, Any]:
    batch: dict[str, Any] = data(
        await api.post("/api/v1/batches", json={"agent_id": agent_id, "requests": requests, **body})
    )
    return batch


async def until(api: Api, batch_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The batch object, once `done(batch)` holds (polled)."""
    async with asyncio.timeout(15):
        while True:
            batch: dict[str, Any] = data(await api.get(f"/api/v1/batches/{batch_id}"))
            if done(batch):
                return batch
            await asyncio.sleep(0.02)


def ended(batch: dict[str, Any]) -> bool:
    return batch["status"] in ("completed", "failed", "cancelled")


async def results(api: Api, batch_id: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = data(
        await api.get(f"/api/v1/batches/{batch_id}/results", params={"limit": 1000, **params})
    )
    return rows


async def until_results(
    api: Api, batch_id: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):
        while True:
            rows = await results(api, batch_id)
            if done(rows):
                return rows
            await asyncio.sleep(0.02)


async def until_messages(
    api: Api, chat_id: int, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat_id)
            if done(rows):
                return rows
            await asyncio.sleep(0.01)


async def stored_batches(api: Api) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(Batch)) or 0)


# -- running ---------------------------------------------------------------------------------------


async def test_a_batch_runs_every_item_and_reports_each_result_with_its_usage(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(ANSWER, usage=USAGE)
    failing = await api.scripted_agent([{"text": "途中"}, {"fail": "boom"}])
    requests = [
        *items("q-1", "q-2"),
        {"custom_id": "q-3", "message": "名前つき", "name": "営業時間の質問"},
        {"custom_id": "q-4", "message": "失敗する", "agent_id": failing},
    ]
    # A chat key is enough.
    batch = data(
        await api.post(
            "/api/v1/batches",
            key=api.chat_key,
            json={"agent_id": agent, "requests": requests},
        )
    )
    assert batch["status"] in ("pending", "processing")
    assert batch["agent_id"] == agent
    assert batch["total_requests"] == 4
    assert batch["webhook"] is None
    assert batch["created_at"].endswith("Z")

    done = await until(api, batch["id"], ended)
    assert done["status"] == "completed"
    assert (done["completed_requests"], done["failed_requests"]) == (3, 1)
    assert done["cancelled_requests"] == 0
    assert done["started_at"] is not None
    assert done["completed_at"] is not None

    rows = await results(api, batch["id"])
    assert [row["custom_id"] for row in rows] == ["q-1", "q-2", "q-3", "q-4"]
    assert [row["status"] for row in rows] == ["completed"] * 3 + ["failed"]
    usage = {
        "total_prompt_tokens": 12,
        "total_completion_tokens": 7,
        "total_tokens": 19,
        "total_calls": 1,
    }
    for row in rows[:3]:
        assert row["response"] == ANSWER_TEXT
        assert row["error"] is None
        assert row["usage"] == usage  # no title call: the chat is named already
    assert rows[3]["error"]["code"] == 10009
    assert "boom" in rows[3]["error"]["message"]
    assert rows[3]["agent_id"] == failing

    chats = {chat["id"]: chat for chat in data(await api.get("/api/v1/chats"))}
    assert [chats[row["chat_id"]]["name"] for row in rows] == [
        "q-1",
        "q-2",
        "営業時間の質問",
        "q-4",
    ]
    assert chats[rows[3]["chat_id"]]["meta"]["conversation_agent_id"] == failing
    # Each item's answer is an ordinary response, readable through the resume endpoint.
    first = rows[0]
    events = await api.get(
        f"/api/v1/chats/{first['chat_id']}/responses/{first['response_id']}/events"
    )
    stream = parse_stream(events.content)
    assert stream.completed.final_text == ANSWER_TEXT
    assert stream.types[0] == "response.created"
    messages = await api.messages(first["chat_id"])
    assert [m["content"] for m in messages] == ["q-1 について教えて", ANSWER_TEXT]

    # Pages of results follow the order of `requests`; the list is newest first.
    page = envelope(await api.get(f"/api/v1/batches/{batch['id']}/results?limit=3&offset=3"))
    assert [row["custom_id"] for row in page["data"]] == ["q-4"]
    assert page["pagination"]["total_records"] == 4
    second = await create(api, agent, items("later"))
    listed = envelope(await api.get("/api/v1/batches"))
    assert [row["id"] for row in listed["data"]] == [second["id"], batch["id"]]
    assert listed["pagination"]["total_records"] == 2


async def test_a_batch_whose_every_item_failed_ends_failed(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    failing = await api.scripted_agent([{"fail": "down"}])
    batch = await create(api, failing, items("a", "b"))
    done = await until(api, batch["id"], ended)
    assert done["status"] == "failed"
    assert (done["completed_requests"], done["failed_requests"]) == (0, 2)


async def test_history_id_continues_the_chat_and_items_of_one_chat_run_in_order(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api, batch_concurrency=4)
    agent = await api.scripted_agent(ANSWER)
    chat = await api.create_chat(agent)
    data(await api.send(chat["id"], "最初の質問", agent_id=agent, stream=False))
    requests = [
        {"custom_id": "first", "message": "二番目", "history_id": chat["id"]},
        {"custom_id": "second", "message": "三番目", "history_id": chat["id"]},
    ]
    batch = await create(api, agent, requests)
    assert (await until(api, batch["id"], ended))["status"] == "completed"

    rows = await results(api, batch["id"])
    assert [row["chat_id"] for row in rows] == [chat["id"], chat["id"]]
    contents = [m["content"] for m in await api.messages(chat["id"])]
    assert contents == ["最初の質問", ANSWER_TEXT, "二番目", ANSWER_TEXT, "三番目", ANSWER_TEXT]


async def test_an_item_whose_chat_stays_busy_fails_after_its_retries(make_api: MakeApi) -> None:
    api = await fast_api(make_api, batch_busy_retries=1)
    slow = await api.scripted_agent(SLOW)
    chat = await api.create_chat(slow)
    sending = asyncio.create_task(api.send(chat["id"], "長い質問", agent_id=slow))
    rows = await until_messages(
        api, chat["id"], lambda rows: bool(rows) and rows[-1]["meta"]["status"] == "in_progress"
    )
    running = rows[-1]["meta"]["response_id"]

    batch = await create(
        api, slow, [{"custom_id": "x", "message": "割り込み", "history_id": chat["id"]}]
    )
    assert (await until(api, batch["id"], ended))["status"] == "failed"
    [row] = await results(api, batch["id"])
    assert row["error"]["code"] == 10004
    assert "already running" in row["error"]["message"]
    assert "tried 2 times" in row["error"]["message"]

    data(await api.post(f"/api/v1/chats/{chat['id']}/responses/{running}/cancel"))
    await sending


async def test_an_item_waits_for_its_busy_chat(make_api: MakeApi) -> None:
    api = await fast_api(make_api, batch_busy_retries=6, batch_busy_backoff=0.1)
    quick_then_done = await api.scripted_agent([{"delay": 0.4}, {"text": "先の答え"}])
    chat = await api.create_chat(quick_then_done)
    sending = asyncio.create_task(api.send(chat["id"], "先の質問", agent_id=quick_then_done))
    await until_messages(api, chat["id"], lambda rows: len(rows) == 2)
    batch = await create(
        api, quick_then_done, [{"custom_id": "x", "message": "後の質問", "history_id": chat["id"]}]
    )
    assert (await until(api, batch["id"], ended))["status"] == "completed"
    await sending
    contents = [m["content"] for m in await api.messages(chat["id"])]
    assert contents == ["先の質問", "先の答え", "後の質問", "先の答え"]


# -- bad batches -----------------------------------------------------------------------------------


async def test_every_bad_batch_is_refused_whole_and_nothing_is_stored(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api, max_batch_items=3, max_message_chars=50)
    agent = await api.scripted_agent(ANSWER)
    unpublished = await api.scripted_agent(ANSWER, publish=False)
    other_chat = await api.create_chat()  # the demo agent's
    missing = "00000000-0000-4000-8000-000000000000"
    ok_item = {"custom_id": "ok", "message": "大丈夫"}
    hook = "https://hooks.example.com/kaiwa"

    def body(requests: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
        return {
            "agent_id": agent,
            "requests": [ok_item] if requests is None else requests,
            **fields,
        }

    # Message fragment -> body; 400/10006 unless listed further down.
    bad_request: dict[str, dict[str, Any]] = {
        "requests: must have between 1 and 3 items, got 0": body([]),
        "requests: must have between 1 and 3 items, got 4": body(items("a", "b", "c", "d")),
        "requests: Input should be a valid list": {**body(), "requests": "x"},
        "agent_id: Field required": {"requests": [ok_item]},
        "agent_id: Input should be a valid UUID": {**body(), "agent_id": "nope"},
        "requests[1]: must be an object": body([ok_item, "x"]),
        "requests[0].custom_id: Field required": body([{"message": "x"}]),
        "requests[0].custom_id: must not be empty": body([{"custom_id": "", "message": "x"}]),
        "requests[0].custom_id: must be at most 256": body(
            [{"custom_id": "x" * 257, "message": "x"}]
        ),
        "requests[1].custom_id: 'ok' is already used by requests[0]": body([ok_item, ok_item]),
        "requests[0].message: Field required": body([{"custom_id": "a"}]),
        "requests[0].message: must not be empty": body([{"custom_id": "a", "message": "  "}]),
        "requests[0].message: Input should be a valid string": body(
            [{"custom_id": "a", "message": 3}]
        ),
        "requests[0].name: must be at most 256": body([{**ok_item, "name": "x" * 257}]),
        "requests[0].agent_id: Input should be a valid UUID": body([{**ok_item, "agent_id": "x"}]),
        "requests[0].history_id: History agent mismatch": body(
            [{**ok_item, "history_id": other_chat["id"]}]
        ),
        "requests[0].attached_file_uuids: file": body(
            [{**ok_item, "attached_file_uuids": [missing, missing]}]
        ),
        "webhook.url: must use https": body(webhook={"url": "http://hooks.example.com/x"}),
        "webhook.url: 10.0.0.8 is a private address": body(webhook={"url": "https://10.0.0.8/"}),
        "webhook.url: must be an absolute https:// URL": body(webhook={"url": "hooks"}),
        "webhook.url: Field required": body(webhook={"events": ["completed"]}),
        "webhook.events.0: Input should be": body(webhook={"url": hook, "events": ["done"]}),
        "webhook.events: must name at least one": body(webhook={"url": hook, "events": []}),
        "webhook.secret: must be at most 255": body(webhook={"url": hook, "secret": "s" * 256}),
    }
    not_found = {
        f"agent_id: Agent {missing} not found": {**body(), "agent_id": missing},
        "agent_id: Agent version not found": {**body(), "agent_id": unpublished},
        f"requests[1].agent_id: Agent {missing} not found": body(
            [ok_item, {"custom_id": "b", "message": "x", "agent_id": missing}]
        ),
        "requests[0].agent_id: Agent version not found": body(
            [{**ok_item, "agent_id": unpublished}]
        ),
        "requests[0].history_id: Chat 999999 not found": body([{**ok_item, "history_id": 999999}]),
        f"requests[0].attached_file_uuids: File {missing} not found": body(
            [{**ok_item, "attached_file_uuids": [missing]}]
        ),
    }
    too_large = {
        "requests[0].message: must be at most 50 characters, got 51": body(
            [{"custom_id": "a", "message": "x" * 51}]
        ),
        "requests[0].attached_file_uuids: at most 10 attachments": body(
            [{**ok_item, "attached_file_uuids": [new_id() for _ in range(11)]}]
        ),
    }
    before = await api.counts()
    for cases, status, code in (
        (bad_request, 400, 10006),
        (not_found, 404, 10003),
        (too_large, 413, 10011),
    ):
        for expected, payload in cases.items():
            message = error(await api.post("/api/v1/batches", json=payload), status, code)
            assert expected in message, (expected, message)
    assert await stored_batches(api) == 0
    assert await api.counts() == before

    # At the limits, the same shapes are accepted.
    edge = [
        {"custom_id": "x" * 256, "message": "x" * 50, "name": "n" * 256},
        {
            "custom_id": "b",
            "message": "y",
            "history_id": other_chat["id"],
            "agent_id": api.demo_agent_id,
        },
    ]
    webhook = {"url": hook, "events": ["cancelled", "cancelled"], "secret": "s" * 255}
    accepted = await create(api, agent, edge, webhook=webhook)
    assert accepted["webhook"] == {"url": hook, "events": ["cancelled"]}
    assert "s" * 255 not in json.dumps(accepted)
    default = await create(api, agent, [ok_item], webhook={"url": hook})
    assert default["webhook"]["events"] == ["completed", "failed"]


async def test_whitelist_mode_applies_to_every_item(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(ANSWER)
    chat = await api.create_chat(agent, external_user_id="bob")
    async with api.store() as session:
        workspace = await session.get(Workspace, api.workspace_id)
        assert workspace is not None
        workspace.whitelist_mode = True
        await workspaces.allow(session, api.workspace_id, "alice")

    cases = [
        (items("a"), "requests[0].external_user_id: external_user_id is required"),
        (
            items("a", external_user_id="mallory"),
            "requests[0].external_user_id: External user 'mallory'",
        ),
        (
            [
                *items("a", external_user_id="alice"),
                {
                    "custom_id": "b",
                    "message": "x",
                    "history_id": chat["id"],
                    "external_user_id": "alice",
                },
            ],
            "requests[1].external_user_id: External user 'bob'",
        ),
    ]
    for requests, expected in cases:
        message = error(
            await api.post("/api/v1/batches", json={"agent_id": agent, "requests": requests}),
            403,
            14103,
        )
        assert expected in message
    assert await stored_batches(api) == 0

    batch = await create(api, agent, items("a", external_user_id="alice"))
    assert (await until(api, batch["id"], ended))["status"] == "completed"
    [row] = await results(api, batch["id"])
    assert (
        data(await api.get("/api/v1/chats", params={"external_user_id": "alice"}))[0]["id"]
        == row["chat_id"]
    )


async def test_batches_of_another_workspace_are_404(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(SLOW)
    batch = await create(api, agent, items("a"))
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, other_key = await create_key(session, other.id, name="other")

    assert data(await api.get("/api/v1/batches", key=other_key)) == []
    for response in (
        await api.get(f"/api/v1/batches/{batch['id']}", key=other_key),
        await api.get(f"/api/v1/batches/{batch['id']}/results", key=other_key),
        await api.post(f"/api/v1/batches/{batch['id']}/cancel", key=other_key),
        await api.get(f"/api/v1/batches/{new_id()}"),
    ):
        assert "not found" in error(response, 404, 10003)
    # An agent of another workspace is unknown here.
    refused = await api.post(
        "/api/v1/batches", key=other_key, json={"agent_id": agent, "requests": items("a")}
    )
    error(refused, 404, 10003)
    error(await api.get("/api/v1/batches/not-a-uuid"), 400, 10006)
    data(await api.post(f"/api/v1/batches/{batch['id']}/cancel"))


# -- cancel ----------------------------------------------------------------------------------------


async def test_cancel_mid_way_stops_running_items_and_cancels_pending_ones(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api, batch_concurrency=2)
    slow = await api.scripted_agent(SLOW)
    with WebhookReceiver() as receiver:
        webhook = {"url": receiver.url, "events": ["cancelled"]}
        batch = await create(api, slow, items("a", "b", "c", "d", "e"), webhook=webhook)

        def two_started(rows: list[dict[str, Any]]) -> bool:
            return (
                sum(row["status"] == "running" and row["response_id"] is not None for row in rows)
                == 2
            )

        await until_results(api, batch["id"], two_started)
        # The answers have begun.
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = data(await api.post(f"/api/v1/batches/{batch['id']}/cancel"))
        assert loop.time() - started < 1.0
        assert reply["status"] == "cancelled"
        assert reply["cancelled_at"] is not None
        assert reply["cancelled_requests"] == 3

        rows = await until_results(
            api, batch["id"], lambda rows: all(r["status"] == "cancelled" for r in rows)
        )
        done = data(await api.get(f"/api/v1/batches/{batch['id']}"))
        assert done["status"] == "cancelled"
        assert done["cancelled_requests"] == 5
        assert done["completed_at"] is None
        for row in rows[:2]:
            assert row["response"] == "途中まで"
            assert row["error"]["code"] == 10010
            messages = await api.messages(row["chat_id"])
            assert messages[-1]["meta"]["status"] == "cancelled"
        for row in rows[2:]:
            assert (row["response"], row["chat_id"], row["response_id"]) == (None, None, None)
            assert row["error"] == {"code": 10010, "message": "The batch was cancelled"}

        again = await api.post(f"/api/v1/batches/{batch['id']}/cancel")
        assert "already ended (cancelled)" in error(again, 400, 10006)

        delivered = await until(api, batch["id"], lambda b: b["webhook_delivered_at"] is not None)
        [received] = receiver.received
        body = json.loads(received.body)
        assert body["event"] == "cancelled"
        assert body["batch"]["cancelled_requests"] == 5
        assert delivered["webhook_error"] is None
        # No secret, no signature.
        assert "x-codeer-signature" not in received.headers


async def test_a_finished_batch_cannot_be_cancelled(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(ANSWER)
    batch = await create(api, agent, items("a"))
    await until(api, batch["id"], ended)
    response = await api.post(f"/api/v1/batches/{batch['id']}/cancel")
    assert "already ended (completed)" in error(response, 400, 10006)


# -- webhooks --------------------------------------------------------------------------------------


async def test_the_webhook_is_delivered_signed_once_the_batch_ends(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(ANSWER)
    secret = "秘密-s3cret"
    with WebhookReceiver() as receiver:
        webhook = {"url": receiver.url, "secret": secret}
        batch = await create(api, agent, items("a", "b"), webhook=webhook)
        assert secret not in json.dumps(batch)
        done = await until(api, batch["id"], lambda b: b["webhook_delivered_at"] is not None)
        [received] = receiver.received

    assert done["status"] == "completed"
    assert (done["webhook_error"], done["webhook_attempts"]) == (None, 1)
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["x-codeer-signature"] == f"sha256={expected}"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["x-kaiwa-event"] == "completed"
    assert received.headers["x-kaiwa-delivery"] == f"{batch['id']}:completed"
    body = json.loads(received.body)
    assert body["event"] == "completed"
    assert body["batch"]["id"] == batch["id"]
    assert body["batch"]["status"] == "completed"
    assert body["batch"]["completed_requests"] == 2
    assert secret not in received.body.decode()
    sent_at = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert int(received.headers["x-kaiwa-timestamp"]) == int(sent_at.timestamp())
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 30


async def test_credentials_in_the_webhook_url_are_never_shown_back(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    agent = await api.scripted_agent(ANSWER)
    with WebhookReceiver() as receiver:
        base = receiver.url.removeprefix("http://")
        url = f"http://hook-user:p4ss@{base}?token=t0k3n&v=2"
        shown = f"http://***@{base}?token=***&v=***"
        created = await create(api, agent, items("a"), webhook={"url": url})
        done = await until(api, created["id"], lambda b: b["webhook_delivered_at"] is not None)
        [received] = receiver.received
        listed = data(await api.get("/api/v1/batches"))
        by_chat_key = data(await api.get(f"/api/v1/batches/{created['id']}", key=api.chat_key))

    for batch in (created, done, by_chat_key, *listed):
        assert batch["webhook"]["url"] == shown
    # The receiver got the whole URL (its credentials as Basic auth); its body shows the masked one.
    assert received.headers["authorization"] == "Basic aG9vay11c2VyOnA0c3M="
    assert json.loads(received.body)["batch"]["webhook"]["url"] == shown
    for secret in ("p4ss", "t0k3n", "hook-user"):
        assert secret not in json.dumps([created, done, by_chat_key, listed])
        assert secret not in received.body.decode()


async def test_a_failing_receiver_is_retried_then_the_failure_is_recorded(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api, batch_webhook_attempts=3)
    agent = await api.scripted_agent(ANSWER)
    with WebhookReceiver(statuses=[500]) as failing, WebhookReceiver(statuses=[503, 200]) as flaky:
        gave_up = await create(api, agent, items("a"), webhook={"url": failing.url})
        recovered = await create(api, agent, items("a"), webhook={"url": flaky.url})
        recorded = await until(api, gave_up["id"], lambda b: b["webhook_error"] is not None)
        delivered = await until(
            api, recovered["id"], lambda b: b["webhook_delivered_at"] is not None
        )
        assert [r.status for r in failing.received] == [500, 500, 500]
        assert [r.status for r in flaky.received] == [503, 200]
        # Each attempt is signed afresh with its own timestamp; the delivery id stays.
        assert len({r.headers["x-kaiwa-delivery"] for r in failing.received}) == 1

    assert recorded["webhook_error"] == "HTTP 500"
    assert recorded["webhook_delivered_at"] is None
    assert recorded["status"] == "completed"
    assert recorded["webhook_attempts"] == 3
    assert delivered["webhook_error"] is None
    assert delivered["webhook_attempts"] == 2


async def test_a_webhook_to_a_name_of_a_private_address_is_refused_when_sent(
    make_api: MakeApi,
) -> None:
    api = await fast_api(make_api, fetch_allow_private="")
    agent = await api.scripted_agent(ANSWER)
    batch = await create(api, agent, items("a"), webhook={"url": "https://localhost:9/hook"})
    refused = await until(api, batch["id"], lambda b: b["webhook_error"] is not None)
    assert refused["webhook_error"].startswith("Refused: localhost resolves to")
    assert "loopback" in refused["webhook_error"]
    async with api.store() as session:
        stored = await session.get(Batch, batch["id"])
        assert stored is not None
        assert stored.webhook_attempts == 1


async def test_a_webhook_event_not_subscribed_is_not_sent(make_api: MakeApi) -> None:
    api = await fast_api(make_api)
    failing = await api.scripted_agent([{"fail": "down"}])
    with WebhookReceiver() as receiver:
        batch = await create(
            api, failing, items("a"), webhook={"url": receiver.url, "events": ["completed"]}
        )
        assert (await until(api, batch["id"], ended))["status"] == "failed"
        await asyncio.sleep(0.3)
        assert receiver.received == []
    final = data(await api.get(f"/api/v1/batches/{batch['id']}"))
    assert (final["webhook_delivered_at"], final["webhook_error"]) == (None, None)


# -- restarts --------------------------------------------------------------------------------------


async def test_another_replica_continues_a_batch_a_dead_one_left_processing(
    make_api: MakeApi,
) -> None:
    # The first app runs no batch items: what it leaves is what a dead process would.
    first = await fast_api(make_api, batch_concurrency=0)
    agent = await first.scripted_agent(ANSWER)
    batch = await create(first, agent, items("asked", "twice", "waiting"))
    await asyncio.sleep(0.3)
    assert data(await first.get(f"/api/v1/batches/{batch['id']}"))["status"] == "pending"

    # The dead process had taken "asked" (its question stored, its answer in progress) and had
    # already retried "twice" once.
    chat = await first.create_chat(agent, name="asked")
    async with first.store() as session:
        turn, _ = await store_turn(
            session,
            TurnRequest(
                workspace_id=first.workspace_id,
                chat_id=chat["id"],
                agent_id=agent,
                message="asked について教えて",
            ),
            response_id=str(uuid.uuid4()),
            owner="a-replica-that-died",
            resume_token=lambda response_id, chat_id: "token",
        )
        await session.execute(update(Batch).values(status="processing", started_at=now()))
        rows = {
            item.custom_id: item
            for item in await session.scalars(
                select(BatchItem).where(BatchItem.batch_id == batch["id"])
            )
        }
        rows["asked"].status, rows["asked"].attempts = "running", 1
        rows["asked"].chat_id, rows["asked"].response_id = chat["id"], turn.response_id
        rows["twice"].status, rows["twice"].attempts = "running", 2
        # Their jobs, as the dead replica left them: running under a lease that has lapsed.
        jobs = {
            job.payload["item_id"]: job
            for job in await session.scalars(select(Job).where(Job.kind == "batch_item"))
        }
        for custom_id, attempts in (("asked", 1), ("twice", 2)):
            job = jobs[rows[custom_id].id]
            job.state, job.owner, job.attempts = "running", "a-replica-that-died", attempts
            job.lease_until = now() - timedelta(seconds=1)

    second = await fast_api(make_api)
    done = await until(second, batch["id"], ended)
    assert done["status"] == "completed"
    assert (done["completed_requests"], done["failed_requests"]) == (2, 1)
    asked, twice, waiting = await results(second, batch["id"])
    assert (asked["status"], asked["response"], asked["chat_id"]) == (
        "completed",
        ANSWER_TEXT,
        chat["id"],
    )
    assert twice["status"] == "failed"
    assert twice["error"]["code"] == 10005
    assert "stopped twice" in twice["error"]["message"]
    assert waiting["status"] == "completed"
    # The question was asked once; the interrupted answer is kept, superseded by the new one.
    messages = await second.messages(chat["id"])
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert [m["meta"]["status"] for m in messages[1:]] == ["failed", "completed"]
    assert messages[1]["meta"]["superseded"] is True
    assert messages[2]["content"] == ANSWER_TEXT


@asynccontextmanager
async def running_app(database_url: str, data_dir: Path, **overrides: Any) -> AsyncIterator[Api]:
    """An app of its own, stopped (its lifespan ended) when the block ends."""
    app = create_app(
        Settings(database_url=database_url, data_dir=data_dir, **{**FAST, **overrides})
    )
    async with app.router.lifespan_context(app):
        async with transaction(app.state.sessions) as session:
            workspace, demo = await ensure_demo(session)
            _, key = await create_key(session, workspace.id, name="first")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client, key, key, workspace.id, demo.id)


async def test_items_cut_short_by_a_shutdown_run_again_after_the_restart(
    make_api: MakeApi, database_url: str, tmp_path: Path
) -> None:
    async with running_app(database_url, tmp_path, batch_concurrency=1) as first:
        slow = await first.scripted_agent([{"text": "始め"}, {"delay": 1.0}, {"text": "終わり"}])
        batch = await create(first, slow, items("a", "b"))
        await until_results(first, batch["id"], lambda rows: rows[0]["response_id"] is not None)
    # Stopped mid-answer: the item is put back as if never taken, not cancelled.
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            rows = list(
                await session.scalars(
                    select(BatchItem)
                    .where(BatchItem.batch_id == batch["id"])
                    .order_by(BatchItem.position)
                )
            )
            assert [(row.status, row.attempts) for row in rows] == [("pending", 0), ("pending", 0)]
    finally:
        await engine.dispose()
    second = await fast_api(make_api)
    done = await until(second, batch["id"], ended)
    assert done["status"] == "completed"
    rows = await results(second, batch["id"])
    assert [row["response"] for row in rows] == ["始め終わり", "始め終わり"]
    messages = await second.messages(rows[0]["chat_id"])
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert [m["meta"]["status"] for m in messages[1:]] == ["cancelled", "completed"]


async def test_a_replica_that_wakes_after_its_item_was_taken_over_changes_nothing(
    make_api: MakeApi,
) -> None:
    """A paused replica's attempt (1) comes back after another replica's attempt (2) took the
    item: putting it back or storing its outcome must do nothing."""
    api = await fast_api(make_api, batch_concurrency=0)
    agent = await api.scripted_agent(ANSWER)
    batch = await create(api, agent, items("paused"))
    async with api.store() as session:
        [item] = await session.scalars(select(BatchItem).where(BatchItem.batch_id == batch["id"]))
        taken = await batches.take_item(session, item.id)
        assert taken is not None
        assert taken.attempts == 1
        again = await batches.take_item(session, item.id)  # the replica that took over
        assert again is not None
        assert again.attempts == 2
    async with api.store() as session:
        await batches.requeue(session, item.id, attempt=1)
        late = batches.ItemOutcome(status="completed", final_text="stale")
        assert await batches.finish_item(session, item.id, late, attempt=1) is None
    async with api.store() as session:
        row = await session.get(BatchItem, item.id)
        assert row is not None
        assert (row.status, row.attempts) == ("running", 2)
        done = batches.ItemOutcome(status="completed", final_text=ANSWER_TEXT)
        assert await batches.finish_item(session, item.id, done, attempt=2) is not None
    [result] = await results(api, batch["id"])
    assert (result["status"], result["response"]) == ("completed", ANSWER_TEXT)


async def test_an_items_question_and_its_response_are_recorded_together(
    make_api: MakeApi,
) -> None:
    """A replica that takes an item over must know whether its question was asked: the item's
    `response_id` is written in the turn's own transaction, or not at all."""
    api = await fast_api(make_api, batch_concurrency=0)
    agent = await api.scripted_agent(ANSWER)
    batch = await create(api, agent, items("one"))
    chat = await api.create_chat(agent, name="one")

    def request(item_id: int) -> TurnRequest:
        return TurnRequest(
            workspace_id=api.workspace_id,
            chat_id=chat["id"],
            agent_id=agent,
            message="one について教えて",
            batch_item_id=item_id,
        )

    async def stored(item_id: int) -> tuple[str | None, int]:
        async with api.store() as session:
            item = await session.get(BatchItem, item_id)
            assert item is not None
            asked = await session.scalar(
                select(func.count()).select_from(Message).where(Message.chat_id == chat["id"])
            )
            return item.response_id, int(asked or 0)

    async with api.store() as session:
        [item_id] = await session.scalars(
            select(BatchItem.id).where(BatchItem.batch_id == batch["id"])
        )

    class Crash(Exception):
        pass

    async def dies_before_commit() -> None:
        async with api.store() as session:
            await store_turn(
                session,
                request(item_id),
                response_id=str(uuid.uuid4()),
                owner="a-replica",
                resume_token=lambda response_id, chat_id: "token",
            )
            raise Crash

    with pytest.raises(Crash):
        await dies_before_commit()
    assert await stored(item_id) == (None, 0)

    async with api.store() as session:
        turn, _ = await store_turn(
            session,
            request(item_id),
            response_id=str(uuid.uuid4()),
            owner="a-replica",
            resume_token=lambda response_id, chat_id: "token",
        )
    response_id, asked = await stored(item_id)
    assert response_id == turn.response_id
    assert asked == 2  # the question and its answer in progress
