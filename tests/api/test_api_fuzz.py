"""Every JSON and multipart endpoint, driven with generated requests: never a 5xx.

The endpoints are read from the app's OpenAPI document, so a new route is covered as soon as it
exists. Each example sends one request to one of them: an object made of the route's own field
names (or any JSON at all) whose values are valid, of the wrong type, huge, empty, Japanese,
with a lone surrogate or a NUL, or nested thousands deep; or random multipart parts; under a
content type that may not match; with the management key, a chat key, a wrong key or none;
at times with an `Idempotency-Key`.
It checks:

- never a 5xx;
- without a valid key, 401/10001 whatever else is wrong (the key is checked before the body),
  but for a body declared over the size limit: 413, also without reading it;
- every 4xx is an error envelope, and stores nothing: the row count of every table a request
  can write is the same after it as before;
- a 2xx is allowed: a generated request can be valid.

The app runs on an event loop of its own in a worker thread, started once per test and shared
by its examples; Hypothesis drives it from the test's thread. Batches are accepted but not run
(`batch_concurrency=0`) and only local models exist, so no request starts work that writes rows
after its answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from api_support import ENVELOPE_KEYS, Api, data
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kaiwa.config import ProviderSettings, Settings
from kaiwa.server import create_app
from kaiwa.store.bootstrap import ensure_demo
from kaiwa.store.db import transaction
from kaiwa.store.keys import create_key
from kaiwa.store.models import Base

T = TypeVar("T")
EXAMPLES = settings(
    max_examples=400,
    deadline=None,
    # The app is started once per test, not per example: examples only add rows.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BOUNDARY = "kaiwa-fuzz-boundary"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
# Written in the background after a request has been answered (indexing; the job queue, whose
# jobs come and go as earlier examples' work runs), or never by one. A job is only ever stored
# with the row it works on (a document, a batch item), which is counted.
UNCOUNTED = frozenset({"kb_chunks", "kb_terms", "server_secrets", "workspaces", "api_keys", "jobs"})


# --- the app, on a loop of its own -------------------------------------------------------------


class Loop:
    """An event loop in a worker thread; `run` waits for a coroutine run there."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzzed-app")
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class Endpoint:
    method: str
    path: str
    fields: list[str]
    """The properties of its JSON body's schema."""
    multipart: bool
    json: bool


@dataclass
class Target:
    loop: Loop
    api: Api
    endpoints: list[Endpoint]
    ids: dict[str, list[str]]
    """Real ids by path parameter name, for requests that get past the lookup."""
    good: dict[str, Any]
    """A valid value of each field name, where one exists."""

    def counts(self) -> dict[str, int]:
        return self.loop.run(_counts(self.api))


async def _counts(api: Api) -> dict[str, int]:
    tables = [t for t in Base.metadata.sorted_tables if t.name not in UNCOUNTED]
    query = select(*(select(func.count()).select_from(t).scalar_subquery() for t in tables))
    async with api.store() as session:
        row = (await session.execute(query)).one()
    return {table.name: int(count) for table, count in zip(tables, row, strict=True)}


def endpoints(openapi: dict[str, Any]) -> list[Endpoint]:
    """Every operation that takes a JSON or multipart body."""
    schemas = openapi.get("components", {}).get("schemas", {})
    found = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if not content:
                continue
            fields: list[str] = []
            for media in content.values():
                schema = media.get("schema", {})
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                fields += [name for name in schema.get("properties", {}) if name not in fields]
            found.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    fields=fields,
                    multipart="multipart/form-data" in content,
                    json="application/json" in content,
                )
            )
    return found


@pytest.fixture
def target(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    monkeypatch.setenv("KAIWA_CONFIG", str(tmp_path / "absent.toml"))
    app = create_app(
        Settings(
            database_url=database_url,
            data_dir=tmp_path,
            ping_interval=30.0,
            idle_timeout=30.0,
            batch_concurrency=0,
            # No provider that would reach the network, whatever an agent is changed to.
            providers={
                "builtin": ProviderSettings(type="builtin"),
                "scripted": ProviderSettings(type="scripted"),
            },
        )
    )
    loop = Loop()
    stack = AsyncExitStack()

    async def start() -> Target:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://testserver")
        )
        async with transaction(app.state.sessions) as session:
            workspace, agent = await ensure_demo(session)
            _, key = await create_key(session, workspace.id, name="fuzz")
            _, chat_key = await create_key(session, workspace.id, name="chat", scope="chat")
        api = Api(
            app=app,
            client=client,
            key=key,
            chat_key=chat_key,
            workspace_id=workspace.id,
            demo_agent_id=agent.id,
        )
        chat = await api.create_chat(name="fuzzed")
        assert isinstance(data(await api.send(chat["id"], "こんにちは", stream=False)), str)
        messages = await api.messages(chat["id"])
        kb = (await api.post("/api/v1/knowledge-bases", json={"name": "kb"})).json()["data"]
        response_ids = [m["meta"]["response_id"] for m in messages if m["meta"]["response_id"]]
        ids = {
            "chat_id": [str(chat["id"])],
            "message_id": [str(m["id"]) for m in messages],
            "response_id": response_ids,
            "agent_id": [agent.id],
            "knowledge_base_id": [kb["id"]],
        }
        good = {
            "name": "名前",
            "agent_id": agent.id,
            "message": "こんにちは",
            "stream": False,
            "external_user_id": "user-1",
            "include_tool_tags": True,
            "if_busy": "reject",
            "attached_file_uuids": [],
            "type": "sys_helpful",
            "content": "よい",
            "values": {"field": "値"},
            "description": "説明",
            "system_prompt": "丁寧に",
            "llm_model": "builtin/extractive",
            "unified_tools": [{"type": "lookup"}],
            "suggested_questions": ["何?"],
            "meta": {"note": "メモ"},
            "text": "本文です。",
            "title": "題",
            "query": "本文",
            "top_k": 3,
            "requests": [{"custom_id": "c-1", "message": "やあ"}],
        }
        return Target(loop, api, endpoints(app.openapi()), ids, good)

    try:
        yield loop.run(start())
    finally:
        loop.run(stack.aclose())
        loop.close()


# --- generated requests ------------------------------------------------------------------------

_DEEP = "\x00deep\x00"
"""Stands for a deeply nested value until the body is encoded (`json.dumps` would recurse)."""

surrogates = st.sampled_from(["\ud800", "\udfff", "\udbff\udc00x\ud83d"])
japanese = st.sampled_from(
    ["こんにちは", "日本語のテキスト", "ｶﾀｶﾅ", "𠮷野家", "東京都\u3000渋谷区"]
)
texts = st.one_of(
    st.text(max_size=30),
    japanese,
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), surrogates, japanese),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\n\t", "null", "[]", "{}"]),
    st.sampled_from([256, 257, 4_001, 32_001, 150_000]).map(lambda n: "あ" * n),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars | st.just(_DEEP),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | japanese | surrogates, children, max_size=4)
    ),
    max_leaves=12,
)


def sometimes(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in `one_in` draws (`integers(…) == 0` comes up far more often: Hypothesis
    favours small values)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


depths = st.sampled_from([1, 63, 64, 65, 200, 300, 1_000, 5_000])


@st.composite
def json_bodies(draw: st.DrawFn, target: Target, endpoint: Endpoint) -> bytes:
    """The endpoint's valid body with a field or two changed, dropped or added; or any JSON;
    at times not JSON at all."""
    body: Any
    if draw(sometimes(10)):
        body = draw(values)
    else:
        body = {name: target.good[name] for name in endpoint.fields if name in target.good}
        for name in draw(st.lists(st.sampled_from(endpoint.fields), max_size=2)):
            change = draw(st.sampled_from(["value", "value", "deep", "absent"]))
            if change == "absent":
                body.pop(name, None)
            else:
                body[name] = _DEEP if change == "deep" else draw(values)
        body.update(draw(st.dictionaries(st.text(max_size=8), values, max_size=1)))
    ascii_only = draw(st.booleans())
    text = json.dumps(body, ensure_ascii=ascii_only)
    depth, opener = draw(depths), draw(st.sampled_from(["[", '{"a":']))
    nested = opener * depth + "1" + ("]" if opener == "[" else "}") * depth
    text = text.replace(json.dumps(_DEEP, ensure_ascii=ascii_only), nested)
    raw = text.encode("utf-8", "surrogatepass")
    mangle = draw(st.sampled_from(["none"] * 12 + ["truncate", "latin-1", "garbage"]))
    if mangle == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mangle == "latin-1":
        raw = text.encode("latin-1", "replace")
    elif mangle == "garbage":
        raw = draw(st.binary(max_size=64))
    return raw


def _part(name: str, content: bytes, filename: str | None, content_type: str | None) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        head += f'; filename="{filename}"'
    if content_type is not None:
        head += f"\r\nContent-Type: {content_type}"
    return f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode("utf-8", "surrogatepass") + content + b"\r\n"


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """Mostly a valid text file, with up to three more parts: fields and files under the names
    the upload routes read, or others; at times cut short."""
    parts = []
    if not draw(sometimes(4)):
        parts.append(_part("file", "本文です。".encode(), "メモ.txt", "text/plain"))
    for _ in range(draw(st.integers(0, 3))):
        content = draw(
            st.sampled_from([b"", b"hello", "こんにちは".encode(), b'{"scope": "ephemeral"}'])
            | st.binary(max_size=64)
            | depths.map(lambda n: b"[" * n + b"]" * n)
            | texts.map(lambda t: t.encode("utf-8", "surrogatepass"))
        )
        parts.append(
            _part(
                draw(st.sampled_from(["file", "data", "data", "title"]) | texts),
                content,
                draw(st.none() | st.sampled_from(["a.txt", "../../x.md", "資料.pdf"]) | texts),
                draw(
                    st.none()
                    | st.sampled_from(["text/plain", "application/json", "application/pdf"])
                    | texts
                ),
            )
        )
    raw = b"".join(draw(st.permutations(parts))) + f"--{BOUNDARY}--\r\n".encode()
    if draw(sometimes(10)):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    url: str
    key: str
    headers: dict[str, Any]
    body: bytes

    def describe(self, response: httpx.Response) -> str:
        shown = self.body[:300]
        return (
            f"{self.endpoint.method} {self.url} key={self.key} headers={self.headers} "
            f"body={shown!r} -> {response.status_code} {response.text[:300]}"
        )


junk_ids = st.sampled_from(["0", "-1", "abc", "9" * 25, UNKNOWN_UUID, "あ", "%", " ", "\x00"])


@st.composite
def cases(draw: st.DrawFn, target: Target) -> Case:
    endpoint = draw(st.sampled_from(target.endpoints))
    url = endpoint.path
    for name, ids in target.ids.items():
        value = draw(junk_ids if draw(sometimes(5)) else st.sampled_from(ids))
        url = url.replace("{" + name + "}", quote(value, safe=""))
    url = url.replace("{form_request_id}", draw(st.sampled_from([UNKNOWN_UUID, "1", "x"])))
    multipart = endpoint.multipart and (not endpoint.json or draw(st.booleans()))
    if draw(sometimes(20)):
        multipart = not multipart  # the other kind of body
    body = draw(multipart_bodies()) if multipart else draw(json_bodies(target, endpoint))
    natural = f"multipart/form-data; boundary={BOUNDARY}" if multipart else "application/json"
    content_type = draw(
        st.sampled_from(
            [natural] * 12
            + [None, "text/plain", "multipart/form-data", "application/json; charset=latin-1"]
            + ["application/x-www-form-urlencoded"]
        )
    )
    key = draw(st.sampled_from(["management"] * 5 + ["chat", "none", "wrong", "blank"]))
    headers: dict[str, Any] = {}
    if content_type is not None:
        headers["content-type"] = content_type
    credential = {
        "management": target.api.key,
        "chat": target.api.chat_key,
        "wrong": draw(st.sampled_from([b"kw_not-a-real-key", b"\xff\xfe", b"x" * 5_000])),
        "blank": b"",
    }.get(key)
    if credential is not None:
        headers["x-api-key"] = credential
    retry = draw(st.none() | st.sampled_from([b"retry-1", b"retry-1", b"", b"\xe3\x81\x82"]))
    if retry is not None:
        headers["idempotency-key"] = retry
    return Case(endpoint, url, key, headers, body)


def check(target: Target, case: Case) -> None:
    before = target.counts()
    response = target.loop.run(
        target.api.client.request(
            case.endpoint.method, case.url, content=case.body, headers=case.headers
        )
    )
    described = case.describe(response)
    event(f"answered {response.status_code}")
    assert response.status_code < 500, described
    if case.key not in ("management", "chat"):
        # A body declared over the limit is refused as such before anything (unread, too).
        too_large = len(case.body) > target.api.app.state.services.settings.max_body_bytes
        assert response.status_code == (413 if too_large else 401), described
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), described
        body = response.json()
        assert set(body) == ENVELOPE_KEYS, described
        assert body["data"] is None, described
        assert body["error_code"] not in (0, None), described
        assert isinstance(body["message"], str), described
        assert body["message"], described
        assert target.counts() == before, described


def test_the_endpoints_are_read_from_the_openapi_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIWA_CONFIG", str(tmp_path / "absent.toml"))
    app = create_app(Settings(data_dir=tmp_path))
    found = {(endpoint.method, endpoint.path) for endpoint in endpoints(app.openapi())}
    assert ("POST", "/api/v1/chats/upload-file") in found
    assert ("POST", "/api/v1/knowledge-bases/{knowledge_base_id}/documents") in found
    assert ("PATCH", "/api/v1/agents/{agent_id}") in found
    assert ("POST", "/api/v1/chats/{chat_id}/messages") in found
    assert all(method != "GET" for method, _ in found)


# Starlette's multipart parser leaves the spooled file of a part cut short by the end of the
# body unclosed (python-multipart's `finalize()` does not see the truncation); it is freed, and
# warned about, as the parser goes. Not a 5xx, and nothing of ours to close: tolerated here only.
@pytest.mark.filterwarnings("ignore:Unclosed file <tempfile.SpooledTemporaryFile:ResourceWarning")
@EXAMPLES
@given(draw=st.data())
def test_no_request_to_a_body_endpoint_is_answered_with_a_5xx(
    target: Target, draw: st.DataObject
) -> None:
    check(target, draw.draw(cases(target)))
