"""A whole kaiwa server on an OpenAI-compatible provider: the fake OpenAI server on loopback.

One kaiwa process serves the module. Its `kaiwa.toml` names three providers, each pointing at its
own fake: `fake` answers normally (scripted per test), `broken` answers 500 to everything, and
`stalling` goes silent mid-answer for longer than the provider's `chunk_timeout`. The fakes run
in threads of the test process, so a test can script them and read what they received.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SYSTEM_PROMPT = "あなたは店舗の案内係です。丁寧に答えてください。"
QUESTION = "営業時間は何時ですか?"
# Every piece ends or starts in the middle of a word; the fake also writes its body one or two
# bytes at a time, so multi-byte characters (three bytes, four for the emoji) are cut in half.
CHUNKS = ["営業時", "間は平日の", "午前9時から午後6", "時までです🍣", "。"]
ANSWER = "".join(CHUNKS)
API_KEY = "test-key"
STALL_SECONDS = 4.0
CHUNK_TIMEOUT = 0.5


def _fakes() -> ModuleType:
    # tests/fakes is a package of the repository, not of this directory.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tests.fakes.openai_server")


fakes = _fakes()


def _provider(name: str, base_url: str, **options: float | int) -> str:
    lines = [f"[providers.{name}]", 'type = "openai"', f'base_url = "{base_url}"']
    lines.append(f'api_key = "{API_KEY}"')
    lines += [f"{option} = {value}" for option, value in options.items()]
    return "\n".join(lines) + "\n"


class Setup:
    def __init__(self, server: Any, good: Any, broken: Any, stalling: Any) -> None:
        self.server = server
        self.good = good
        self.broken = broken
        self.stalling = stalling
        self.agents: dict[str, str] = {}

    def agent(self, provider: str) -> str:
        if provider not in self.agents:
            agent = self.server.create_agent(
                name=f"on {provider}",
                llm_model=f"{provider}/gpt-test",
                system_prompt=SYSTEM_PROMPT,
            )
            assert agent["llm_model"] == f"{provider}/gpt-test"
            assert agent["published_version"] == 1
            self.agents[provider] = agent["id"]
        return self.agents[provider]


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Any) -> Iterator[Setup]:
    with (
        fakes.FakeOpenAI() as good,
        fakes.FakeOpenAI(default=fakes.Status(500, retry_after=0.01)) as broken,
        fakes.FakeOpenAI(
            default=fakes.Stall(chunks=CHUNKS, after_chunks=1, seconds=STALL_SECONDS)
        ) as stalling,
    ):
        config = (
            _provider("fake", good.base_url)
            + _provider("broken", broken.base_url, max_retries=1)
            + _provider("stalling", stalling.base_url, chunk_timeout=CHUNK_TIMEOUT)
        )
        server = kaiwa_launcher.start("openai", config=config)
        try:
            yield Setup(server, good, broken, stalling)
        finally:
            server.stop()


def test_japanese_split_across_chunks_and_bytes_arrives_intact(setup: Setup) -> None:
    server, good = setup.server, setup.good
    agent_id = setup.agent("fake")
    good.requests.clear()
    # One reply for the answer and one for the title, in whichever order they are asked for.
    good.enqueue(
        fakes.Reply(chunks=CHUNKS, usage=(12, 5), split_bytes=True),
        fakes.Reply(chunks=CHUNKS, usage=(7, 3), split_bytes=True),
    )
    chat = server.create_chat("openai", agent_id=agent_id)

    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.events[0]["model"] == "fake/gpt-test"
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

    answer_calls = [r for r in good.requests if r.body["messages"][0]["content"] == SYSTEM_PROMPT]
    assert len(answer_calls) == 1, [r.body for r in good.requests]
    sent = answer_calls[0]
    assert sent.body["model"] == "gpt-test"
    assert sent.body["stream"] is True
    assert sent.body["messages"][0]["role"] == "system"
    assert sent.body["messages"][-1] == {"role": "user", "content": QUESTION}
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert len(good.requests) == 2

    stored = server.messages(chat["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == ANSWER
    assert stored[1]["meta"]["status"] == "completed"
    assert stored[1]["meta"]["token_usage"] == completed["usage"]


def test_a_provider_that_always_fails_ends_the_stream_with_10009(setup: Setup) -> None:
    server = setup.server
    agent_id = setup.agent("broken")
    setup.broken.requests.clear()
    chat = server.create_chat("broken", agent_id=agent_id)

    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.types[-1] == "response.error"
    assert "response.output_text.completed" not in streamed.types
    (error,) = streamed.of("response.error")
    assert error["code"] == 10009
    assert error["message"]
    assert API_KEY.encode() not in streamed.raw
    assert setup.broken.requests, "the provider was never called"
    stored = server.messages(chat["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["meta"]["status"] == "failed"


def test_a_provider_that_stalls_past_chunk_timeout_ends_the_stream_with_10009(
    setup: Setup,
) -> None:
    server = setup.server
    agent_id = setup.agent("stalling")
    chat = server.create_chat("stalling", agent_id=agent_id)

    started = time.monotonic()
    streamed = server.stream(chat["id"], QUESTION, agent_id=agent_id)
    elapsed = time.monotonic() - started

    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.types[-1] == "response.error"
    (error,) = streamed.of("response.error")
    assert error["code"] == 10009
    # The chunk timeout, not the end of the stall, ended it.
    assert elapsed < STALL_SECONDS, elapsed
    deltas = [event["delta"] for event in streamed.of("response.output_text.delta")]
    assert ANSWER.startswith("".join(deltas))
    stored = server.messages(chat["id"])
    assert stored[1]["meta"]["status"] == "failed"
