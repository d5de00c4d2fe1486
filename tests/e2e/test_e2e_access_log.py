"""The access log keeps no secret: a resume token or a key sent in a query string is redacted."""

from __future__ import annotations

import time
from typing import Any


def test_a_resume_token_never_reaches_the_access_log(kaiwa_server: Any) -> None:
    chat = kaiwa_server.create_chat("log")
    answer = kaiwa_server.stream(chat["id"], "こんにちは")
    created = answer.of("response.created")[0]
    token, response_id = created["resume_token"], created["response_id"]
    path = f"/api/v1/chats/{chat['id']}/responses/{response_id}/events"
    replay = kaiwa_server.client.get(path, params={"token": token, "after": 1})
    assert replay.status_code == 200
    assert replay.content.endswith(b"data: [DONE]\n\n")

    wanted = f"{path}?token=[redacted]&after=1"
    for _ in range(100):  # the access line is written as the response ends
        if wanted in kaiwa_server.log_text():
            break
        time.sleep(0.02)
    log = kaiwa_server.log_text()
    assert wanted in log
    assert token not in log


def test_a_key_sent_in_any_query_parameter_never_reaches_the_access_log(kaiwa_server: Any) -> None:
    key = kaiwa_server.api_key
    for name in ("key", "api_key", "x-api-key", "auth"):
        kaiwa_server.client.get("/api/v1/chats", params={name: key, "limit": 1})
    wanted = [f"/api/v1/chats?{name}=[redacted]&limit=1" for name in ("key", "api_key", "auth")]
    for _ in range(100):
        if all(line in kaiwa_server.log_text() for line in wanted):
            break
        time.sleep(0.02)
    log = kaiwa_server.log_text()
    assert all(line in log for line in wanted), log[-2000:]
    assert key not in log
    assert key[3:] not in log
