"""What the chat says went wrong: the URL tried and the setting to change, never a Python
argument; and which published agent `--agent` names (an id, else a name, whatever its case)."""

from __future__ import annotations

import httpx
import pytest

from kaiwa.chat.errors import (
    AmbiguousAgent,
    UnknownAgent,
    explain,
    server_url,
)
from kaiwa.chat.lang import EN, JA
from kaiwa.chat.session import find_agent
from kaiwa.client import (
    Agent,
    APIConnectionError,
    Client,
    KaiwaError,
    NotFoundError,
    PermissionDeniedError,
)

URL = "http://127.0.0.1:9/"
DESK = Agent(id="8c1f-desk", name="Front Desk")
TWINS = [Agent(id="a-1", name="Twin"), Agent(id="a-2", name="twin ")]


def refused() -> APIConnectionError:
    try:
        raise APIConnectionError("GET /chats/published-agents failed") from httpx.ConnectError(
            "[Errno 111] Connection refused"
        )
    except APIConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            PermissionDeniedError("Invalid API key", code=10001, status=401),
            f"the API key was refused by {URL} (error_code 10001): "
            "pass --api-key or set KAIWA_API_KEY",
        ),
        (
            NotFoundError("Chat not found", code=10003, status=404),
            "Chat not found (error_code 10003)",
        ),
        (
            refused(),
            f"could not reach {URL} ([Errno 111] Connection refused): is kaiwa running? "
            "pass --url or set KAIWA_BASE_URL",
        ),
        (
            UnknownAgent("nobody", [DESK]),
            "no published agent is named nobody; published: Front Desk (8c1f-desk)",
        ),
    ],
)
def test_explain_names_the_url_and_what_to_set(error: KaiwaError, said: str) -> None:
    assert explain(error, EN, URL) == said


def test_explain_speaks_japanese_too() -> None:
    said = explain(refused(), JA, URL)

    assert said.startswith(f"{URL} に接続できませんでした（[Errno 111] Connection refused）")


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://127.0.0.1:9", "http://127.0.0.1:9/"),
        ("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9/"),
        ("https://chat.example/kaiwa/", "https://chat.example/kaiwa"),
    ],
)
def test_server_url_is_the_url_without_the_api_prefix(base_url: str, shown: str) -> None:
    with Client(base_url=base_url, api_key="k") as client:
        assert server_url(client) == shown


@pytest.mark.parametrize(
    "wanted", ["8c1f-desk", "8C1F-DESK", "Front Desk", "front desk", " FRONT DESK "]
)
def test_find_agent_by_id_or_by_name_whatever_the_case(wanted: str) -> None:
    assert find_agent([*TWINS, DESK], wanted) == DESK


def test_find_agent_refuses_an_ambiguous_or_unknown_name_with_the_candidates() -> None:
    with pytest.raises(AmbiguousAgent) as ambiguous:
        find_agent([*TWINS, DESK], "TWIN")
    with pytest.raises(UnknownAgent) as unknown:
        find_agent([*TWINS, DESK], "nobody")

    assert ambiguous.value.candidates == TWINS
    assert "Twin (a-1), twin  (a-2)" in explain(ambiguous.value, EN, URL)
    assert unknown.value.published == [*TWINS, DESK]
