"""A response whose events outgrow the log's cap ends with an error, and its log stays whole."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from api_support import Api, parse_stream

from kaiwa.protocol import ResponseError

MakeApi = Callable[..., Awaitable[Api]]


async def test_an_answer_over_the_log_cap_ends_with_10011_and_keeps_its_partial_text(
    make_api: MakeApi,
) -> None:
    api = await make_api(log_max_bytes_per_response=4000)
    pieces = [{"text": f"{index:03d}番目の文です。"} for index in range(200)]
    agent_id = await api.scripted_agent(pieces, title="上限")
    chat = await api.create_chat(agent_id)

    stream = await api.stream(chat["id"], "長い答え", agent_id=agent_id)

    assert stream.ids == list(range(1, len(stream.ids) + 1))  # no gap where the cap hit
    error = stream.events[-1]
    assert isinstance(error, ResponseError)
    assert error.code == 10011
    assert "4000 bytes" in error.message
    assert 0 < len(stream.deltas) < sum(len(p["text"]) for p in pieces)
    answer = (await api.messages(chat["id"]))[-1]
    assert answer["meta"]["status"] == "failed"
    assert answer["content"] == stream.deltas
    # A resume replays the very same log.
    replay = await api.get(f"/api/v1/chats/{chat['id']}/responses/{error.response_id}/events")
    assert parse_stream(replay.content).raw == stream.raw
