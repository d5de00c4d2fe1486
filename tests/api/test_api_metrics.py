"""[ext] `GET /metrics`: what a scripted run adds to each metric, exactly, read back with
prometheus_client's own parser; who may scrape (loopback, or a bearer token)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from api_support import Api, data, error, parse_stream
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from kaiwa.protocol import ResponseError
from kaiwa.server.metrics import Metrics
from kaiwa.store import jobs
from kaiwa.store.models import Job

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kaiwa.json"

MakeApi = Callable[..., Awaitable[Api]]
MODEL = "scripted/test"
MESSAGES = "/api/v1/chats/{chat_id}/messages"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7}
ANSWER: list[dict[str, Any]] = [{"text": "one "}, {"text": "two"}]
# Long enough that a test always stops it first; a stopped answer never waits it out.
PARTIAL_THEN_WAIT: list[dict[str, Any]] = [
    {"text": "partial "},
    *[{"delay": 0.5}] * 6,
    {"text": "never"},
]


class Scrape:
    """One scrape's samples; `scrape("kaiwa_x_total", label="v")` is 0 when absent."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


class Change:
    """What happened between two scrapes."""

    def __init__(self, before: Scrape, after: Scrape) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return self.after(name, **labels) - self.before(name, **labels)


async def scrape(api: Api) -> Scrape:
    reply = await api.client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Scrape(reply.text)


async def named_chat(api: Api, agent_id: str) -> int:
    """A chat renamed by hand: its first turn makes no title call."""
    chat = await api.create_chat(agent_id)
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "named by hand"}))
    chat_id: int = chat["id"]
    return chat_id


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_call": {"id": "call_1", "name": name, "arguments": arguments}}


async def tool_agent(api: Api, name: str, tools: list[dict[str, Any]], **script: Any) -> str:
    created = await api.create_agent(
        name=name,
        llm_model=MODEL,
        unified_tools=tools,
        meta={"model_settings": {"script": script}},
    )
    agent_id: str = created["id"]
    return agent_id


async def until_partial(api: Api, chat_id: int) -> str:
    """The id of the chat's running response, once it has produced some text."""
    async with asyncio.timeout(5):
        while True:
            rows = await api.messages(chat_id)
            if rows and rows[-1]["meta"]["status"] == "in_progress":
                response_id: str = rows[-1]["meta"]["response_id"]
                url = f"/api/v1/chats/{chat_id}/responses/{response_id}"
                if data(await api.get(url))["final_text"]:
                    return response_id
            await asyncio.sleep(0.01)


async def test_answers_errors_and_http_requests_count_exactly(api: Api) -> None:
    good = await api.scripted_agent(ANSWER, usage=USAGE)
    bad = await api.scripted_agent([{"text": "partial "}, {"fail": "boom"}])
    good_chat, bad_chat = await named_chat(api, good), await named_chat(api, bad)
    before = await scrape(api)

    for _ in range(2):
        assert (await api.stream(good_chat, "hi", agent_id=good)).completed.final_text == "one two"
    failed = await api.stream(bad_chat, "hi", agent_id=bad)
    assert isinstance(failed.events[-1], ResponseError)
    assert failed.events[-1].code == 10009
    error(await api.get("/no/such/endpoint"), 404, 10003)

    after = await scrape(api)
    change = Change(before, after)
    assert change("kaiwa_responses_started_total", model=MODEL) == 3
    assert (
        change("kaiwa_responses_finished_total", model=MODEL, status="completed", error_code="none")
        == 2
    )
    assert (
        change("kaiwa_responses_finished_total", model=MODEL, status="failed", error_code="10009")
        == 1
    )
    assert after("kaiwa_responses_active") == 0
    assert change("kaiwa_model_calls_total", model=MODEL, outcome="ok") == 2
    assert change("kaiwa_model_calls_total", model=MODEL, outcome="error") == 1
    # The failed call reported no usage.
    assert change("kaiwa_tokens_total", model=MODEL, kind="prompt") == 2 * 11
    assert change("kaiwa_tokens_total", model=MODEL, kind="completion") == 2 * 7
    assert change("kaiwa_response_created_seconds_count", model=MODEL) == 3
    assert change("kaiwa_time_to_first_token_seconds_count", model=MODEL) == 3
    assert change("kaiwa_response_duration_seconds_count", model=MODEL) == 3
    # A rate needs completion tokens: the failed call has none.
    assert change("kaiwa_output_tokens_per_second_count", model=MODEL) == 2
    # Every answer was a 200 stream, the failed one too: its error is an event.
    assert change("kaiwa_http_requests_total", route=MESSAGES, method="POST", status="200") == 3
    assert change("kaiwa_http_request_duration_seconds_count", route=MESSAGES, method="POST") == 3
    assert change("kaiwa_http_requests_total", route="unmatched", method="GET", status="404") == 1
    # The scrape before was counted once its response started: after it was generated.
    assert change("kaiwa_http_requests_total", route="/metrics", method="GET", status="200") == 1
    assert after("kaiwa_sse_streams_active", kind="live") == 0
    # Buckets are cumulative: the last one holds every observation.
    created_all = after("kaiwa_response_created_seconds_bucket", model=MODEL, le="+Inf")
    assert created_all == after("kaiwa_response_created_seconds_count", model=MODEL) == 3


async def test_tool_steps_count_by_type_and_outcome(api: Api) -> None:
    helper = await tool_agent(
        api,
        "helper",
        [],
        answer=[{"text": "h"}],
        usage={"prompt_tokens": 30, "completion_tokens": 7},
    )
    broken = await tool_agent(api, "broken", [], answer=[{"fail": "down"}])
    caller = await tool_agent(
        api,
        "caller",
        [{"type": "call_agent", "agent_id": helper}, {"type": "call_agent", "agent_id": broken}],
        rounds=[
            [call("call_agent", agent="helper", question="q")],
            [call("call_agent", agent="broken", question="q")],
            [{"text": "done"}],
        ],
        usage={"prompt_tokens": 10, "completion_tokens": 5},
    )
    form = {
        "title": "Contact",
        "fields": [{"name": "name", "label": "Name", "type": "shortText", "required": True}],
    }
    asker = await tool_agent(
        api,
        "asker",
        [{"type": "request_form", "custom_form_schema": form}],
        rounds=[[{"text": "first, a form"}, call("request_form")], [{"text": "thanks"}]],
        usage={"prompt_tokens": 1, "completion_tokens": 1},
    )
    caller_chat, asker_chat = await named_chat(api, caller), await named_chat(api, asker)
    before = await scrape(api)

    stream = await api.stream(caller_chat, "ask them", agent_id=caller)
    assert stream.completed.final_text == "done"
    paused = await api.stream(asker_chat, "sign me up", agent_id=asker)
    assert paused.completed.status == "awaiting_form"

    change = Change(before, await scrape(api))
    step = "consultant_call_agent"
    assert change("kaiwa_tool_steps_total", type=step, outcome="success") == 1
    assert change("kaiwa_tool_steps_total", type=step, outcome="failure") == 1
    assert change("kaiwa_tool_step_duration_seconds_count", type=step) == 2
    form_step = "consultant_request_form"
    assert change("kaiwa_tool_steps_total", type=form_step, outcome="paused") == 1
    assert change("kaiwa_tool_step_duration_seconds_count", type=form_step) == 1
    # Caller: three calls; helper: one; the broken agent's failed; the asker's one.
    assert change("kaiwa_model_calls_total", model=MODEL, outcome="ok") == 5
    assert change("kaiwa_model_calls_total", model=MODEL, outcome="error") == 1
    assert change("kaiwa_tokens_total", model=MODEL, kind="prompt") == 3 * 10 + 30 + 1
    assert change("kaiwa_tokens_total", model=MODEL, kind="completion") == 3 * 5 + 7 + 1
    assert change("kaiwa_responses_started_total", model=MODEL) == 2
    finished = "kaiwa_responses_finished_total"
    assert change(finished, model=MODEL, status="completed", error_code="none") == 1
    assert change(finished, model=MODEL, status="awaiting_form", error_code="none") == 1
    # The helper's text, inside a step, is not the caller's first token: one per answer.
    assert change("kaiwa_time_to_first_token_seconds_count", model=MODEL) == 2


async def test_cancels_count_by_reason_and_streams_while_open(api: Api) -> None:
    agent_id = await api.scripted_agent(PARTIAL_THEN_WAIT)
    chat_id = await named_chat(api, agent_id)
    before = await scrape(api)

    send = asyncio.create_task(api.send(chat_id, "hi", agent_id=agent_id))
    response_id = await until_partial(api, chat_id)
    during = await scrape(api)
    assert during("kaiwa_responses_active") == 1
    assert during("kaiwa_sse_streams_active", kind="live") == 1
    cancel = f"/api/v1/chats/{chat_id}/responses/{response_id}/cancel"
    assert data(await api.post(cancel))["status"] == "cancelled"
    assert data(await api.post(cancel))["status"] == "cancelled"  # idempotent: counted once
    assert parse_stream((await send).content).completed.status == "cancelled"

    # An interrupt: a new message stops the running answer (and gets a quick one).
    first = asyncio.create_task(api.send(chat_id, "again", agent_id=agent_id))
    await until_partial(api, chat_id)
    meta = {"model_settings": {"script": {"answer": ANSWER}}}
    data(await api.patch(f"/api/v1/agents/{agent_id}", json={"meta": meta}))
    data(await api.post(f"/api/v1/agents/{agent_id}/publish"))
    second = await api.send(chat_id, "third", agent_id=agent_id, if_busy="interrupt", stream=False)
    assert data(second) == "one two"
    interrupted = parse_stream((await first).content).events[-1]
    assert isinstance(interrupted, ResponseError)
    assert interrupted.code == 10010

    after = await scrape(api)
    change = Change(before, after)
    assert change("kaiwa_cancels_total", reason="stop") == 1
    assert change("kaiwa_cancels_total", reason="interrupt") == 1
    assert change("kaiwa_cancels_total", reason="disconnect") == 0
    finished = "kaiwa_responses_finished_total"
    assert change(finished, model=MODEL, status="cancelled", error_code="none") == 1
    assert change(finished, model=MODEL, status="cancelled", error_code="10010") == 1
    assert change(finished, model=MODEL, status="completed", error_code="none") == 1
    assert after("kaiwa_responses_active") == 0
    assert after("kaiwa_sse_streams_active", kind="live") == 0


async def test_resumes_count_by_outcome(make_api: MakeApi) -> None:
    api = await make_api(log_retention=1.0)
    agent_id = await api.scripted_agent(ANSWER, usage=USAGE)
    chat_id = await named_chat(api, agent_id)
    reply = await api.send(chat_id, "hi", agent_id=agent_id)
    response_id = reply.headers["x-kaiwa-response-id"]
    events = f"/api/v1/chats/{chat_id}/responses/{response_id}/events"
    before = await scrape(api)

    replayed = parse_stream((await api.get(events)).content)
    assert replayed.completed.final_text == "one two"
    unknown = f"/api/v1/chats/{chat_id}/responses/{uuid.uuid4()}/events"
    error(await api.get(unknown), 404, 10003)
    for _ in range(200):
        if await api.app.state.services.log.read(response_id, 0, wait=0) is None:
            break
        await asyncio.sleep(0.02)
    stored = await api.get(events, headers={"Last-Event-ID": "1"})
    assert stored.status_code == 200
    seen = await api.get(events, headers={"Last-Event-ID": str(len(replayed.ids))})
    assert seen.status_code == 200

    after = await scrape(api)
    change = Change(before, after)
    assert change("kaiwa_resumes_total", outcome="log") == 1
    assert change("kaiwa_resumes_total", outcome="not_found") == 1
    assert change("kaiwa_resumes_total", outcome="stored_ending") == 1
    assert change("kaiwa_resumes_total", outcome="already_ended") == 1
    assert change("kaiwa_resumes_total", outcome="reappeared") == 0
    assert after("kaiwa_sse_streams_active", kind="resumed") == 0
    route = "/api/v1/chats/{chat_id}/responses/{response_id}/events"
    assert change("kaiwa_http_requests_total", route=route, method="GET", status="200") == 3
    assert change("kaiwa_http_requests_total", route=route, method="GET", status="404") == 1


async def test_rate_limit_refusals_count_by_limit(make_api: MakeApi) -> None:
    api = await make_api(rate_limit_per_minute=2)
    before = await scrape(api)
    for _ in range(2):
        data(await api.get("/api/v1/chats"))
    error(await api.get("/api/v1/chats"), 429, 10007)

    change = Change(before, await scrape(api))
    assert change("kaiwa_rate_limited_total", limit="requests") == 1
    assert change("kaiwa_rate_limited_total", limit="answers") == 0
    route = "/api/v1/chats"
    assert change("kaiwa_http_requests_total", route=route, method="GET", status="429") == 1
    assert change("kaiwa_http_requests_total", route=route, method="GET", status="200") == 2


async def test_queue_depths_are_read_at_scrape_time(api: Api) -> None:
    metrics = await scrape(api)
    assert metrics("kaiwa_batch_items", status="pending") == 0
    assert metrics("kaiwa_batch_items", status="running") == 0
    assert metrics("kaiwa_knowledge_documents_processing") == 0
    # The periodic jobs: each is one job, queued for its next run (or running it now).
    for kind in ("expire_files", "purge_idempotency_keys"):
        states = [metrics("kaiwa_jobs", kind=kind, state=s) for s in ("queued", "running")]
        assert sum(states) == 1, kind
        assert metrics("kaiwa_jobs", kind=kind, state="failed") == 0
        assert metrics("kaiwa_jobs_oldest_due_seconds", kind=kind) < 60
    async with api.store() as session:
        await jobs.enqueue(session, "webhook", {"batch_id": "b"}, key="b")
        await session.execute(update(Job).where(Job.kind == "webhook").values(state="failed"))
    metrics = await scrape(api)
    assert metrics("kaiwa_jobs", kind="webhook", state="failed") == 1


def client_at(api: Api, host: str) -> httpx.AsyncClient:
    """A client of the same app, seen by it as coming from `host`."""
    transport = httpx.ASGITransport(app=api.app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_without_a_token_only_loopback_clients_are_answered(api: Api) -> None:
    # httpx's ASGI transport reports the client as 127.0.0.1 by default.
    assert (await api.client.get("/metrics")).status_code == 200
    for host in ("::1", "127.0.0.2", "::ffff:127.0.0.1"):
        async with client_at(api, host) as client:
            assert (await client.get("/metrics")).status_code == 200, host
    for host in ("10.0.0.5", "192.168.1.20", "2001:db8::1", "testclient"):
        async with client_at(api, host) as client:
            message = error(await client.get("/metrics"), 403, 10001)
            assert "loopback" in message


async def test_with_a_token_every_client_must_send_it(make_api: MakeApi) -> None:
    api = await make_api(metrics_token="s3cret-token")
    error(await api.client.get("/metrics"), 401, 10001)
    wrong = {"Authorization": "Bearer not-it"}
    refused = await api.client.get("/metrics", headers=wrong)
    error(refused, 401, 10001)
    assert refused.headers["www-authenticate"] == "Bearer"
    error(await api.client.get("/metrics", headers={"Authorization": "s3cret-token"}), 401, 10001)
    right = {"Authorization": "Bearer s3cret-token"}
    assert (await api.client.get("/metrics", headers=right)).status_code == 200
    async with client_at(api, "10.0.0.5") as client:
        assert (await client.get("/metrics", headers=right)).status_code == 200
        error(await client.get("/metrics"), 401, 10001)


async def test_metrics_disabled_serves_no_endpoint(make_api: MakeApi) -> None:
    api = await make_api(metrics_enabled=False)
    error(await api.client.get("/metrics"), 404, 10003)
    agent_id = await api.scripted_agent(ANSWER)
    chat_id = await named_chat(api, agent_id)
    assert (await api.stream(chat_id, "hi", agent_id=agent_id)).completed.final_text == "one two"


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.resumed("log")
    first.cancelled("stop")
    assert Scrape(first.exposition(None).decode())("kaiwa_resumes_total", outcome="log") == 1
    untouched = Scrape(second.exposition(None).decode())
    assert untouched("kaiwa_resumes_total", outcome="log") == 0
    assert untouched("kaiwa_cancels_total", reason="stop") == 0


async def test_the_dashboard_reads_only_metrics_the_app_exposes(api: Api) -> None:
    reply = await api.client.get("/metrics")
    families = {family.name for family in text_string_to_metric_families(reply.text)}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expressions = [target["expr"] for p in panels for target in p["targets"]]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"\bkaiwa_[a-z_]+", expr)
    }
    assert used <= families, used - families
    for wanted in (
        "kaiwa_sse_streams_active",
        "kaiwa_time_to_first_token_seconds",
        "kaiwa_output_tokens_per_second",
        "kaiwa_responses_finished",
        "kaiwa_resumes",
        "kaiwa_batch_items",
        "kaiwa_http_request_duration_seconds",
    ):
        assert wanted in used, wanted


async def test_a_database_error_that_fails_a_request_is_counted(
    make_api: MakeApi, database_url: str
) -> None:
    api = await make_api()
    before = await scrape(api)
    async with api.store() as session:
        await session.execute(text("ALTER TABLE chats RENAME TO chats_gone"))
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            failed = await client.get("/api/v1/chats", headers=api.headers())
    finally:
        # Put it back: the next test empties this same database table by table.
        async with api.store() as session:
            await session.execute(text("ALTER TABLE chats_gone RENAME TO chats"))
    error(failed, 500, 10005)

    change = Change(before, await scrape(api))
    # SQLite reports a missing table as an OperationalError, PostgreSQL as a ProgrammingError.
    expected = "OperationalError" if database_url.startswith("sqlite") else "ProgrammingError"
    assert change("kaiwa_database_errors_total", error=expected) == 1
    route = "/api/v1/chats"
    assert change("kaiwa_http_requests_total", route=route, method="GET", status="500") == 1
