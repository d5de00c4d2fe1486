"""The minimal clients the Codeer streaming docs show must stream from kaiwa unchanged.

Each client here is written the way the docs write theirs — read lines, keep the `data: ` ones,
JSON-parse them, stop at `[DONE]` — and knows nothing of kaiwa beyond the base URL and key:
Python `requests` (`iter_lines`), Python `aiohttp` (`async for line in response.content`), and
Node `fetch` with a `getReader()` loop (`fetch_client.mjs`). Every test runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

QUESTION = "営業時間は何時ですか?"
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
NODE = shutil.which("node") or "/usr/bin/node"
FETCH_CLIENT = Path(__file__).with_name("fetch_client.mjs")


@dataclass
class Seen:
    """What a documented client can tell from the stream."""

    types: list[str] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    title: str | None = None
    completed: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    done: bool = False

    def handle(self, event: dict[str, Any]) -> None:
        self.types.append(event["type"])
        if event["type"] == "response.output_text.delta":
            self.deltas.append(event["delta"])
        elif event["type"] == "response.chat.title.updated":
            self.title = event["name"]
        elif event["type"] == "response.output_text.completed":
            self.completed = event
        elif event["type"] == "response.error":
            self.error = event


def _request(
    base_url: str, chat_id: int, message: str, agent_id: str, api_key: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of a send, as the docs' examples build them."""
    url = f"{base_url}/api/v1/chats/{chat_id}/messages"
    headers = {
        "x-api-key": api_key,
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    payload = {"message": message, "stream": True, "agent_id": agent_id}
    return url, headers, payload


def stream_with_requests(
    base_url: str, chat_id: int, message: str, agent_id: str, api_key: str
) -> Seen:
    url, headers, payload = _request(base_url, chat_id, message, agent_id, api_key)
    seen = Seen()
    with requests.Session() as http:
        http.trust_env = False  # loopback only: never through a proxy from the environment
        with http.post(url, headers=headers, json=payload, stream=True, timeout=(5, 30)) as resp:
            if not resp.ok:
                _ = resp.content  # read the JSON error body while the connection is open
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line:
                    continue
                text = line.decode("utf-8")
                if text.startswith("data: "):
                    data = text[6:]
                    if data == "[DONE]":
                        seen.done = True
                        break
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        continue
                    seen.handle(event)
    return seen


async def stream_with_aiohttp(
    base_url: str, chat_id: int, message: str, agent_id: str, api_key: str
) -> tuple[int, dict[str, Any] | None, Seen]:
    """(status, the error envelope when the status is not 2xx, what the stream showed)."""
    url, headers, payload = _request(base_url, chat_id, message, agent_id, api_key)
    seen = Seen()
    timeout = aiohttp.ClientTimeout(total=30, sock_read=15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, headers=headers, json=payload) as response,
    ):
        if not response.ok:
            # `json()` refuses anything but application/json: an SSE error body would fail here.
            return response.status, await response.json(), seen
        async for raw in response.content:
            line = raw.decode("utf-8").strip()
            if not line:
                continue
            if line.startswith("data: "):
                data = line[6:]
                if data == "[DONE]":
                    seen.done = True
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    continue
                seen.handle(event)
    return response.status, None, seen


def stream_with_node_fetch(
    base_url: str, chat_id: int, message: str, agent_id: str, api_key: str
) -> dict[str, Any]:
    config = {
        "baseUrl": base_url,
        "chatId": chat_id,
        "message": message,
        "agentId": agent_id,
        "apiKey": api_key,
    }
    result = subprocess.run(
        [NODE, str(FETCH_CLIENT), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


def _assert_documented_stream(seen: Seen) -> None:
    assert seen.done, "the stream must end with data: [DONE]"
    assert seen.types[0] == "response.created", seen.types
    assert seen.types[-1] == "response.output_text.completed", seen.types
    assert "response.output_text.delta" in seen.types
    assert seen.types.count("response.chat.title.updated") == 1, seen.types
    assert seen.types.index("response.chat.title.updated") < len(seen.types) - 1
    assert seen.error is None
    assert seen.title is not None
    assert JAPANESE.search(seen.title), seen.title
    assert seen.completed is not None
    answer = "".join(seen.deltas)
    assert answer == seen.completed["final_text"]
    assert JAPANESE.search(answer), answer
    usage = seen.completed["usage"]
    assert usage["total_calls"] == 2, usage  # the answer and the title
    assert usage["total_prompt_tokens"] > 0
    assert usage["total_completion_tokens"] > 0
    assert usage["total_tokens"] == usage["total_prompt_tokens"] + usage["total_completion_tokens"]


def _assert_stored(server: Any, chat_id: int, final_text: str, title: str) -> None:
    stored = server.messages(chat_id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == QUESTION
    assert stored[1]["content"] == final_text
    assert stored[1]["meta"]["status"] == "completed"
    chats = server.ok("GET", "/api/v1/chats", params={"limit": 1000})
    assert next(c for c in chats if c["id"] == chat_id)["name"] == title


def test_requests_client_streams_a_japanese_answer(any_server: Any) -> None:
    chat = any_server.create_chat("requests")
    seen = stream_with_requests(
        any_server.base_url, chat["id"], QUESTION, any_server.agent_id, any_server.api_key
    )
    _assert_documented_stream(seen)
    assert seen.completed is not None
    assert seen.title is not None
    _assert_stored(any_server, chat["id"], seen.completed["final_text"], seen.title)


async def test_aiohttp_client_streams_a_japanese_answer(any_server: Any) -> None:
    chat = any_server.create_chat("aiohttp")
    status, envelope, seen = await stream_with_aiohttp(
        any_server.base_url, chat["id"], QUESTION, any_server.agent_id, any_server.api_key
    )
    assert (status, envelope) == (200, None)
    _assert_documented_stream(seen)
    assert seen.completed is not None
    assert seen.title is not None
    _assert_stored(any_server, chat["id"], seen.completed["final_text"], seen.title)


def test_node_fetch_reader_streams_a_japanese_answer(any_server: Any) -> None:
    chat = any_server.create_chat("fetch")
    summary = stream_with_node_fetch(
        any_server.base_url, chat["id"], QUESTION, any_server.agent_id, any_server.api_key
    )
    assert summary["status"] == 200
    assert summary["contentType"] == "text/event-stream; charset=utf-8"
    seen = Seen(
        types=summary["types"],
        deltas=[summary["deltas"]],
        title=summary["title"],
        completed=(
            None
            if summary["finalText"] is None
            else {"final_text": summary["finalText"], "usage": summary["usage"]}
        ),
        error=summary["error"],
        done=summary["done"],
    )
    _assert_documented_stream(seen)
    assert seen.title is not None
    _assert_stored(any_server, chat["id"], summary["finalText"], seen.title)


BAD_KEY = "kw_this-key-does-not-exist"


def _assert_permission_denied(status: int, content_type: str, envelope: dict[str, Any]) -> None:
    assert status == 401
    assert content_type.startswith("application/json"), content_type
    assert envelope["error_code"] == 10001
    assert envelope["data"] is None
    assert envelope["message"]
    assert set(envelope) == {"data", "message", "error_code", "pagination"}


def test_requests_client_sees_a_json_error_for_a_bad_key(any_server: Any) -> None:
    chat = any_server.create_chat("requests bad key")
    with pytest.raises(requests.HTTPError) as failure:
        stream_with_requests(
            any_server.base_url, chat["id"], QUESTION, any_server.agent_id, BAD_KEY
        )
    response = failure.value.response
    assert response is not None
    _assert_permission_denied(
        response.status_code, response.headers["content-type"], response.json()
    )
    assert any_server.messages(chat["id"]) == []


async def test_aiohttp_client_sees_a_json_error_for_a_bad_key(any_server: Any) -> None:
    chat = any_server.create_chat("aiohttp bad key")
    status, envelope, seen = await stream_with_aiohttp(
        any_server.base_url, chat["id"], QUESTION, any_server.agent_id, BAD_KEY
    )
    assert envelope is not None
    _assert_permission_denied(status, "application/json", envelope)
    assert seen.types == []


def test_node_fetch_reader_sees_a_json_error_for_a_bad_key(any_server: Any) -> None:
    chat = any_server.create_chat("fetch bad key")
    summary = stream_with_node_fetch(
        any_server.base_url, chat["id"], QUESTION, any_server.agent_id, BAD_KEY
    )
    assert summary["ok"] is False
    _assert_permission_denied(summary["status"], summary["contentType"], summary["errorBody"])
    assert summary["types"] == []
