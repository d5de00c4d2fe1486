"""The tool loop through real provider protocols: a real `kaiwa serve` whose agents run on the fake
OpenAI and Anthropic servers and read pages from the fake web site, all on loopback.

Each test scripts the provider's two answer calls (a tool call, then a Japanese answer) and the
chat's title call, which races the first answer call and so is told apart by its system prompt.
It then checks the SSE stream a client reads and the requests the provider received: the tool
offered in the provider's shape, and the call and its result sent back in the provider's shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from tests.e2e.conftest import KaiwaServer, Launcher, Streamed
from tests.fakes import anthropic_server, openai_server
from tests.fakes.web_server import (
    ARTICLE_TEXT,
    ARTICLE_TITLE,
    BOILERPLATE,
    JAPANESE_TEXT,
    JAPANESE_TITLE,
    FakeWeb,
)

SYSTEM_PROMPT = "あなたは灯台の案内係です。必要ならページを読んでから答えてください。"
QUESTION = "このページには何と書いてありますか?"
LEAD = "ページを確認します。"
CHUNKS = ["フレネルレンズは", "光を一本の", "水平な光線に", "まとめます🗼", "。"]
ANSWER = "".join(CHUNKS)
TITLE = "灯台のレンズ"
API_KEY = "sk-e2e-provider-tools"
FETCH_STEP = "consultant_fetch_web_content"
FETCH_TOOL = "fetch_web_content"
FIRST_USAGE, SECOND_USAGE, TITLE_USAGE = (12, 5), (20, 6), (7, 3)
MISSING_URL = "argument 'url' must be a non-empty string"


@dataclass(frozen=True)
class Call:
    """One tool call the scripted model makes."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, eq=False)
class SourceOf:
    """Equal to the text the fetch tool hands the model for a page: its main text in `<source>`."""

    url: str
    title: str
    text: str

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith(f'<source title="{self.title}" ref="{self.url}">\n')
            and other.endswith("\n</source>")
            and self.text in other
            and not any(noise in other for noise in BOILERPLATE)
        )

    def __hash__(self) -> int:
        return hash(self.url)


class OpenAIWire:
    """The fake OpenAI server, and chat completions' shapes for tools, calls and results."""

    name = "openai"

    def __init__(self, fake: openai_server.FakeOpenAI) -> None:
        self.fake = fake

    def provider_config(self) -> str:
        return f'type = "openai"\nbase_url = "{self.fake.base_url}"\napi_key = "{API_KEY}"\n'

    def is_answer(self, body: dict[str, Any]) -> bool:
        return bool(body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT})

    def tool_calls(self, calls: Sequence[Call], *, text: Sequence[str] = ()) -> Any:
        return openai_server.ToolCalls(
            calls=[openai_server.FakeToolCall(c.name, c.arguments, id=c.id) for c in calls],
            text=text,
            fragment=5,  # every call's arguments arrive in several pieces
            interleave=len(calls) > 1,
            usage=FIRST_USAGE,
        )

    def reply(self, chunks: Sequence[str], usage: tuple[int, int]) -> Any:
        return openai_server.Reply(chunks=chunks, usage=usage)

    def offered_tools(self, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Each offered tool's parameter schema, by name."""
        tools = body.get("tools", [])
        assert all(tool["type"] == "function" for tool in tools), tools
        return {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}

    def turn(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages after the system prompt."""
        return list(body["messages"][1:])

    def expected_turn(
        self, text: str, calls: Sequence[Call], results: Sequence[object]
    ) -> list[dict[str, Any]]:
        assistant = {
            "role": "assistant",
            "content": text,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False),
                    },
                }
                for call in calls
            ],
        }
        replies = [
            {"role": "tool", "tool_call_id": call.id, "content": result}
            for call, result in zip(calls, results, strict=True)
        ]
        return [{"role": "user", "content": QUESTION}, assistant, *replies]


class AnthropicWire:
    """The fake Anthropic server, and the Messages API's shapes for tools, calls and results."""

    name = "anthropic"

    def __init__(self, fake: anthropic_server.FakeAnthropic) -> None:
        self.fake = fake

    def provider_config(self) -> str:
        return f'type = "anthropic"\nbase_url = "{self.fake.base_url}"\napi_key = "{API_KEY}"\n'

    def is_answer(self, body: dict[str, Any]) -> bool:
        return bool(body.get("system") == SYSTEM_PROMPT)

    def tool_calls(self, calls: Sequence[Call], *, text: Sequence[str] = ()) -> Any:
        return anthropic_server.ToolUse(
            calls=[anthropic_server.FakeToolUse(c.name, c.arguments, id=c.id) for c in calls],
            text=text,
            fragment=5,
            usage=FIRST_USAGE,
        )

    def reply(self, chunks: Sequence[str], usage: tuple[int, int]) -> Any:
        return anthropic_server.Reply(chunks=chunks, usage=usage)

    def offered_tools(self, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {tool["name"]: tool["input_schema"] for tool in body.get("tools", [])}

    def turn(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return list(body["messages"])

    def expected_turn(
        self, text: str, calls: Sequence[Call], results: Sequence[object]
    ) -> list[dict[str, Any]]:
        said = [{"type": "text", "text": text}] if text else []
        uses = [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in calls
        ]
        # All results of one round in one user turn, as the API requires.
        # A failed tool's result is marked as an error, as the API provides for.
        answers = [
            {"type": "tool_result", "tool_use_id": call.id, "content": result}
            | ({"is_error": True} if str(result).startswith("Error: ") else {})
            for call, result in zip(calls, results, strict=True)
        ]
        return [
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [*said, *uses]},
            {"role": "user", "content": answers},
        ]


Wire = OpenAIWire | AnthropicWire


@dataclass
class Setup:
    server: KaiwaServer
    wires: dict[str, Wire]
    agents: dict[str, str]


@pytest.fixture(scope="module")
def setup(kaiwa_launcher: Launcher, _fake_web_server: FakeWeb) -> Iterator[Setup]:
    with (
        openai_server.FakeOpenAI() as gpt,
        anthropic_server.FakeAnthropic(api_key=API_KEY) as claude,
    ):
        wires: dict[str, Wire] = {"openai": OpenAIWire(gpt), "anthropic": AnthropicWire(claude)}
        config = "".join(f"[providers.{n}]\n{w.provider_config()}" for n, w in wires.items())
        env = {"KAIWA_FETCH_ALLOW_PRIVATE": "127.0.0.1"}
        server = kaiwa_launcher.start("provider-tools", env=env, config=config)
        try:
            agents = {
                name: server.create_agent(
                    name=f"reader on {name}",
                    llm_model=f"{name}/model-test",
                    system_prompt=SYSTEM_PROMPT,
                    unified_tools=[{"type": FETCH_TOOL}],
                )["id"]
                for name in wires
            }
            yield Setup(server, wires, agents)
        finally:
            server.stop()


@dataclass
class Run:
    """One provider, reset for one test, with the agent that runs on it."""

    server: KaiwaServer
    wire: Wire
    agent_id: str
    chat_id: int = 0

    def script(self, first: Any) -> None:
        """Answer calls: `first`, then the Japanese answer; the title call gets `TITLE`."""
        fake = self.wire.fake
        fake.reset()
        fake.enqueue_for(self.wire.is_answer, first, self.wire.reply(CHUNKS, SECOND_USAGE))
        fake.enqueue(self.wire.reply([TITLE], TITLE_USAGE))

    def ask(self) -> Streamed:
        chat = self.server.create_chat(agent_id=self.agent_id)
        streamed = self.server.stream(chat["id"], QUESTION, agent_id=self.agent_id)
        assert streamed.status == 200, streamed.raw[-300:]
        assert streamed.done, streamed.raw[-300:]
        assert streamed.types[-1] == "response.output_text.completed", streamed.types
        self.chat_id = int(chat["id"])
        return streamed

    def answer_calls(self) -> list[dict[str, Any]]:
        """The bodies of the agent's two model calls (the title call left out)."""
        requests = self.wire.fake.requests
        bodies = [r.body for r in requests if self.wire.is_answer(r.body)]
        assert len(bodies) == 2, [r.body for r in requests]
        assert len(requests) == 3, [r.body for r in requests]
        return bodies


@pytest.fixture(params=["openai", "anthropic"])
def run(request: pytest.FixtureRequest, setup: Setup, fake_web: FakeWeb) -> Run:
    name: str = request.param
    return Run(setup.server, setup.wires[name], setup.agents[name])


def steps(streamed: Streamed) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each step's start and end, in the order they started; every start ends after it."""
    starts = [e["step"] for e in streamed.of("response.reasoning_step.start")]
    ends = {e["step"]["id"]: e["step"] for e in streamed.of("response.reasoning_step.end")}
    assert set(ends) == {start["id"] for start in starts}
    at = {
        (e["type"], e["step"]["id"]): n
        for n, e in enumerate(streamed.events)
        if e["type"].startswith("response.reasoning_step.")
    }
    for start in starts:
        begun = at["response.reasoning_step.start", start["id"]]
        assert begun < at["response.reasoning_step.end", start["id"]]
    return [(start, ends[start["id"]]) for start in starts]


def assert_completed(streamed: Streamed, text: str) -> None:
    """The answer completed with `text`, which is what the deltas said."""
    (done,) = streamed.of("response.output_text.completed")
    deltas = "".join(e["delta"] for e in streamed.of("response.output_text.delta"))
    assert done["final_text"] == deltas == text
    assert done["status"] == "completed"


def assert_three_calls_counted(streamed: Streamed, run: Run) -> None:
    """Both answer calls and the title call, as the provider reported them."""
    (title,) = streamed.of("response.chat.title.updated")
    assert title["name"] == TITLE
    calls = (FIRST_USAGE, SECOND_USAGE, TITLE_USAGE)
    prompt = sum(usage[0] for usage in calls)
    completion = sum(usage[1] for usage in calls)
    usage = streamed.of("response.output_text.completed")[0]["usage"]
    assert usage == {
        "total_prompt_tokens": prompt,
        "total_completion_tokens": completion,
        "total_tokens": prompt + completion,
        "total_calls": 3,
    }
    stored = run.server.messages(run.chat_id)
    assert stored[1]["meta"]["token_usage"] == usage


def assert_offers_fetch(run: Run, body: dict[str, Any]) -> None:
    schema = run.wire.offered_tools(body)[FETCH_TOOL]
    assert list(run.wire.offered_tools(body)) == [FETCH_TOOL]
    assert schema["type"] == "object"
    assert schema["required"] == ["url"]
    assert schema["properties"]["url"]["type"] == "string"


def test_a_tool_call_runs_as_a_step_and_its_result_goes_back_in_the_provider_shape(
    run: Run, fake_web: FakeWeb
) -> None:
    url = fake_web.url("/article")
    call = Call(f"{run.wire.name}_call_1", FETCH_TOOL, {"url": url})
    run.script(run.wire.tool_calls([call], text=[LEAD[:4], LEAD[4:]]))

    streamed = run.ask()

    ((start, end),) = steps(streamed)
    assert start["type"] == end["type"] == FETCH_STEP
    assert start["tool_name"] == end["tool_name"] == FETCH_TOOL
    assert start["args"] == {"url": url}
    assert start["content"] == f"{url} を読み込んでいます"
    assert end["result"]["success"] is True
    data = end["result"]["data"]
    assert (data["url"], data["title"]) == (url, ARTICLE_TITLE)
    assert data["content_type"].startswith("text/html")
    assert ARTICLE_TEXT[:100] in data["excerpt"]
    assert end["token_usage"]["total_calls"] == 0
    # The text said before the call streams before the step; the answer after its end.
    first_delta = streamed.types.index("response.output_text.delta")
    step_start = streamed.types.index("response.reasoning_step.start")
    step_end = streamed.types.index("response.reasoning_step.end")
    after = [e["delta"] for e in streamed.events[step_end:] if "delta" in e]
    assert first_delta < step_start
    assert "".join(after) == ANSWER
    assert_completed(streamed, LEAD + ANSWER)
    assert_three_calls_counted(streamed, run)
    assert fake_web.paths == ["/article"]

    first, second = run.answer_calls()
    assert_offers_fetch(run, first)
    assert_offers_fetch(run, second)
    assert run.wire.turn(first) == run.wire.turn(second)[:1]
    assert run.wire.turn(second) == run.wire.expected_turn(
        LEAD, [call], [SourceOf(url, ARTICLE_TITLE, ARTICLE_TEXT)]
    )
    stored = run.server.messages(run.chat_id)
    assert stored[1]["content"] == LEAD + ANSWER
    assert [s["id"] for s in stored[1]["meta"]["reasoning_steps"]] == [start["id"]]


def test_parallel_tool_calls_run_as_steps_in_order_and_all_results_go_back(
    run: Run, fake_web: FakeWeb
) -> None:
    pages = [
        (fake_web.url("/article"), ARTICLE_TITLE, ARTICLE_TEXT),
        (fake_web.url("/ja/meta"), JAPANESE_TITLE, JAPANESE_TEXT),
    ]
    calls = [Call(f"call_{n}", FETCH_TOOL, {"url": url}) for n, (url, _, _) in enumerate(pages)]
    run.script(run.wire.tool_calls(calls))

    streamed = run.ask()

    done = steps(streamed)
    assert [start["args"] for start, _ in done] == [call.arguments for call in calls]
    assert [end["result"]["success"] for _, end in done] == [True, True]
    assert [end["result"]["data"]["title"] for _, end in done] == [ARTICLE_TITLE, JAPANESE_TITLE]
    # One after the other: the second starts once the first has ended.
    kinds = [t.rsplit(".", 1)[1] for t in streamed.types if ".reasoning_step." in t]
    assert kinds == ["start", "end", "start", "end"]
    assert_completed(streamed, ANSWER)
    assert_three_calls_counted(streamed, run)
    assert fake_web.paths == ["/article", "/ja/meta"]

    _, second = run.answer_calls()
    assert run.wire.turn(second) == run.wire.expected_turn(
        "", calls, [SourceOf(*page) for page in pages]
    )


def test_a_call_missing_its_argument_ends_the_step_failed_and_the_model_reads_why(
    run: Run, fake_web: FakeWeb
) -> None:
    url = fake_web.url("/article")
    call = Call("call_bad", FETCH_TOOL, {"address": url})
    run.script(run.wire.tool_calls([call]))

    streamed = run.ask()

    ((start, end),) = steps(streamed)
    assert start["type"] == FETCH_STEP
    assert start["args"] == {"address": url}
    assert start["content"] == "ウェブページを読み込んでいます"  # the user writes Japanese
    assert end["result"] == {"success": False, "data": {"error": MISSING_URL}}
    assert_completed(streamed, ANSWER)
    assert_three_calls_counted(streamed, run)
    assert fake_web.paths == []

    _, second = run.answer_calls()
    assert run.wire.turn(second) == run.wire.expected_turn("", [call], [f"Error: {MISSING_URL}"])


def test_a_call_to_an_unknown_tool_is_no_step_and_the_model_is_told(
    run: Run, fake_web: FakeWeb
) -> None:
    call = Call("call_unknown", "search_web", {"query": "フレネルレンズ"})
    run.script(run.wire.tool_calls([call]))

    streamed = run.ask()

    assert not [t for t in streamed.types if t.startswith("response.reasoning_step.")]
    assert_completed(streamed, ANSWER)
    assert_three_calls_counted(streamed, run)
    assert fake_web.paths == []

    first, second = run.answer_calls()
    assert_offers_fetch(run, first)
    told = f"Error: there is no tool 'search_web'; the tools are: {FETCH_TOOL}"
    assert run.wire.turn(second) == run.wire.expected_turn("", [call], [told])
