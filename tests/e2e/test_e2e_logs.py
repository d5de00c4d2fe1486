"""`KAIWA_LOG_FORMAT=json`: a real server's output is one JSON object per line, and the lines of a
request and of the answer it started carry their ids; no key or message text is logged."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

FAILING = {"answer": [{"text": "途中まで"}, {"fail": "the upstream model broke"}], "title": "x"}
KEY = re.compile(r"kw_[A-Za-z0-9_-]{20,}")

Line = dict[str, Any]


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.start("json-logs", env={"KAIWA_LOG_FORMAT": "json"})
    try:
        yield server
    finally:
        server.stop()


def lines(server: Any) -> list[Line]:
    """Every line of the server's output, each parsed (a line that is not JSON fails)."""
    parsed = []
    for number, text in enumerate(server.log_text().splitlines(), 1):
        line = json.loads(text)
        assert isinstance(line, dict), (number, text)
        parsed.append(line)
    return parsed


def wait_line(server: Any, matches: Callable[[Line], bool]) -> Line:
    """The first line that matches, once it is written (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in lines(server) if matches(line)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.05)


def test_every_line_is_a_json_object_with_time_level_logger_and_message(server: Any) -> None:
    server.api("GET", "/api/v1/chats")
    parsed = lines(server)
    assert len(parsed) > 5
    for line in parsed:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
    messages = [line["message"] for line in parsed]
    assert any(m.startswith("Uvicorn running on") for m in messages), messages
    # The first run says what it made, but logs no key: a log collector is no place for one.
    (first_run,) = [m for m in messages if m.startswith("first run")]
    assert "kaiwa keys create --workspace" in first_run
    assert not KEY.search(server.log_text())


def test_an_access_line_carries_the_request_and_workspace_ids(server: Any) -> None:
    request_id = f"e2e-{uuid.uuid4()}"
    response = server.api("GET", "/api/v1/chats?limit=5", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id

    line = wait_line(server, lambda line: line.get("request_id") == request_id)
    assert line["logger"] == "uvicorn.access"
    assert line["level"] == "INFO"
    assert line["workspace_id"] == server.workspace_id
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/chats?limit=5", 200)
    assert "response_id" not in line


def test_a_request_without_an_acceptable_id_gets_one_of_its_own(server: Any) -> None:
    for headers in ({}, {"X-Request-ID": "not an id"}):
        response = server.api("GET", "/healthz", headers=headers)
        made = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        line = wait_line(server, lambda line, made=made: line.get("request_id") == made)
        assert line["path"] == "/healthz"


def test_the_lines_of_an_answer_carry_its_request_chat_and_response(server: Any) -> None:
    agent = server.create_agent(
        name="failing", llm_model="scripted/test", meta={"model_settings": {"script": FAILING}}
    )
    chat = server.create_chat("logs", agent_id=agent["id"])
    request_id = f"sse-{uuid.uuid4()}"
    body = {"message": "答えてください", "agent_id": agent["id"], "stream": True}
    response = server.api(
        "POST",
        f"/api/v1/chats/{chat['id']}/messages",
        json=body,
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    assert b"event: response.error" in response.content
    response_id = response.headers["x-kaiwa-response-id"]

    # The producer's own line, written by the task the request started.
    failed = wait_line(server, lambda line: "model failed" in line["message"])
    assert failed["logger"] == "kaiwa.runtime.responses"
    assert failed["level"] == "WARNING"
    assert failed["request_id"] == request_id
    assert failed["workspace_id"] == server.workspace_id
    assert failed["chat_id"] == chat["id"]
    assert failed["response_id"] == response_id
    access = wait_line(
        server,
        lambda line: line.get("request_id") == request_id and line["logger"] == "uvicorn.access",
    )
    assert access["response_id"] == response_id
    assert access["path"] == f"/api/v1/chats/{chat['id']}/messages"


def test_no_message_text_and_no_key_reach_the_log(server: Any) -> None:
    secret = f"誰にも見せない{uuid.uuid4().hex}"
    chat = server.create_chat("quiet")
    answer = server.stream(chat["id"], secret)
    assert answer.done
    wait_line(
        server,
        lambda line: line.get("path") == f"/api/v1/chats/{chat['id']}/messages",
    )
    text = server.log_text()
    assert secret not in text
    assert json.dumps(secret)[1:-1] not in text  # nor escaped
    assert server.api_key not in text
