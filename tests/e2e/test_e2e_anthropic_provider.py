"""A whole kaiwa server on the `anthropic` provider: the fake Anthropic Messages API on loopback.

One kaiwa process serves the module. Its `kaiwa.toml` names three providers of type `anthropic`,
each pointing at its own fake: `claude` answers normally (scripted per test), `overloaded`
answers 529 to everything, and `flaky` starts answering, then sends an `overloaded_error` event
mid-stream. The fakes run in threads of the test process, so a test can script them and read
what they received.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

MODEL = "claude-sonnet-4-5"
SYSTEM_PROMPT = "あなたは店舗の案内係です。丁寧に答えてください。"
QUESTION = "営業時間は何時ですか?"
# Every piece ends or starts in the middle of a word; the fake also writes its body one or two
# bytes at a time, so multi-byte characters (three bytes, four for the emoji) are cut in half.
CHUNKS = ["営業時", "間は平日の", "午前9時から午後6", "時までです🍣", "。"]
ANSWER = "".join(CHUNKS)
API_KEY = "sk-ant-e2e-key"
MAX_TOKENS = 1024


def _fakes() -> ModuleType:
    # tests/fakes is a package of the repository, not of this directory.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tests.fakes.anthropic_server")


fakes = _fakes()


def _provider(name: str, base_url: str, **options: float | int) -> str:
    lines = [f"[providers.{name}]", 'type = "anthropic"', f'base_url = "{base_url}"']
    lines.append(f'api_key = "{API_KEY}"')
    lines += [f"{option} = {value}" for option, value in options.items()]
    return "\n".join(lines) + "\n"


class Setup:
    def __init__(self, server: Any, claude: Any, overloaded: Any, flaky: Any) -> None:
        self.server = server
        self.claude = claude
        self.overloaded = overloaded
        self.flaky = flaky
        self.agents: dict[str, str] = {}

    def agent(self, provider: str) -> str:
        if provider not in self.agents:
            agent = self.server.create_agent(
                name=f"on {provider}",
                llm_model=f"{provider}/{MODEL}",
                system_prompt=SYSTEM_PROMPT,
            )
            assert agent["llm_model"] == f"{provider}/{MODEL}"
            self.agents[provider] = agent["id"]
        return self.agents[provider]


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Any) -> Iterator[Setup]:
    with (
        fakes.FakeAnthropic(api_key=API_KEY) as claude,
        fakes.FakeAnthropic(
            api_key=API_KEY, default=fakes.Status(529, retry_after=0.01)
        ) as overloaded,
        fakes.FakeAnthropic(
            api_key=API_KEY, default=fakes.ErrorEvent(chunks=CHUNKS, after_chunks=2)
        ) as flaky,
    ):
        config = (
            _provider("claude", claude.base_url, max_tokens=MAX_TOKENS)
            + _provider("overloaded", overloaded.base_url, max_retries=1)
            + _provider("flaky", flaky.base_url)
        )
        server = kaiwa_launcher.start("anthropic", config=config)
        try:
            yield Setup(server, claude, overloaded, flaky)
        finally:
            server.stop()


def test_japanese_answer_streams_intact_with_title_and_usage(setup: Setup) -> None:
    server, claude = setup.server, setup.claude
    agent_id = setup.agent("claude")
    claude.requests.clear()
    # One reply for the answer and one for the title, in whichever order they are asked for.
    claude.enqueue(
        fakes.Reply(chunks=CHUNKS, usage=(12, 5), split_bytes=True),
        fakes.Reply(chunks=CHUNKS, usage=(7, 3), split_bytes=True),
    )
    chat = server.create_chat("anthropic", agent_id=agent_id)

    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.events[0]["model"] == f"claude/{MODEL}"
    assert streamed.types[-1] == "response.output_text.completed"
    deltas = [event["delta"] for event in streamed.of("response.output_text.delta")]
    assert "".join(deltas) == ANSWER
    assert all("\ufffd" not in delta for delta in deltas)
    (completed,) = streamed.of("response.output_text.completed")
    assert completed["final_text"] == ANSWER
    (title,) = streamed.of("response.chat.title.updated")
    assert title["name"].startswith("営業時間は")
    # The answer call and the title call, as the fake reported them.
    assert completed["usage"] == {
        "total_prompt_tokens": 12 + 7,
        "total_completion_tokens": 5 + 3,
        "total_tokens": 12 + 7 + 5 + 3,
        "total_calls": 2,
    }

    assert len(claude.requests) == 2
    answer_calls = [r for r in claude.requests if r.body.get("system") == SYSTEM_PROMPT]
    assert len(answer_calls) == 1, [r.body for r in claude.requests]
    (sent,) = answer_calls
    assert sent.body["model"] == MODEL
    assert sent.body["stream"] is True
    assert sent.body["max_tokens"] == MAX_TOKENS
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]}
    ]
    assert sent.api_key == API_KEY
    assert sent.headers["anthropic-version"]
    (title_call,) = [r for r in claude.requests if r is not sent]
    assert title_call.body["max_tokens"] < MAX_TOKENS

    stored = server.messages(chat["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == ANSWER
    assert stored[1]["meta"]["status"] == "completed"
    assert stored[1]["meta"]["token_usage"] == completed["usage"]


def test_an_always_overloaded_provider_ends_the_stream_with_10009(setup: Setup) -> None:
    server = setup.server
    agent_id = setup.agent("overloaded")
    setup.overloaded.requests.clear()
    chat = server.create_chat("overloaded", agent_id=agent_id)

    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.types[-1] == "response.error"
    assert "response.output_text.completed" not in streamed.types
    (error,) = streamed.of("response.error")
    assert error["code"] == 10009
    assert "overloaded" in error["message"]
    assert API_KEY.encode() not in streamed.raw
    assert setup.overloaded.requests, "the provider was never called"
    stored = server.messages(chat["id"])
    assert stored[1]["meta"]["status"] == "failed"


def test_an_error_event_mid_answer_ends_the_stream_with_10009(setup: Setup) -> None:
    server = setup.server
    agent_id = setup.agent("flaky")
    chat = server.create_chat("flaky", agent_id=agent_id)

    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[-1] == "response.error"
    (error,) = streamed.of("response.error")
    assert error["code"] == 10009
    assert "mid-stream" in error["message"]
    deltas = [event["delta"] for event in streamed.of("response.output_text.delta")]
    assert "".join(deltas) == "".join(CHUNKS[:2])
    stored = server.messages(chat["id"])
    assert stored[1]["meta"]["status"] == "failed"
