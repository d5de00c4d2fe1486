"""Chat titles: once, on the first turn, in the user's language; never after a manual rename."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from api_support import Api, data

from kaiwa.protocol import ChatTitleUpdated

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


async def _chat_name(api: Api, chat_id: int) -> str:
    chats = data(await api.get("/api/v1/chats"))
    name: str = next(c["name"] for c in chats if c["id"] == chat_id)
    return name


async def test_first_turn_titles_the_chat_in_japanese_and_counts_the_title_call(
    api: Api,
) -> None:
    chat = await api.create_chat(name="New chat")
    stream = await api.stream(chat["id"], "営業時間を教えてください。土曜日も開いていますか?")
    titles = stream.of("response.chat.title.updated")
    assert len(titles) == 1
    title = titles[0]
    assert isinstance(title, ChatTitleUpdated)
    assert JAPANESE.search(title.name), title.name
    assert not re.search(r"[A-Za-z]", title.name), title.name
    assert await _chat_name(api, chat["id"]) == title.name
    assert stream.completed.usage.total_calls == 2

    second = await api.stream(chat["id"], "日曜日はどうですか?")
    assert second.of("response.chat.title.updated") == []
    assert second.completed.usage.total_calls == 1
    assert await _chat_name(api, chat["id"]) == title.name


async def test_english_message_gets_an_english_title(api: Api) -> None:
    chat = await api.create_chat(name="New chat")
    stream = await api.stream(chat["id"], "What are your opening hours on Saturday?")
    (title,) = stream.of("response.chat.title.updated")
    assert isinstance(title, ChatTitleUpdated)
    assert not JAPANESE.search(title.name)
    assert "opening hours" in title.name.lower()
    assert await _chat_name(api, chat["id"]) == title.name


async def test_chat_renamed_by_hand_before_its_first_message_keeps_its_name(api: Api) -> None:
    chat = await api.create_chat(name="New chat")
    data(await api.put(f"/api/v1/chats/{chat['id']}", json={"name": "My own name"}))
    stream = await api.stream(chat["id"], "営業時間を教えてください")
    assert stream.of("response.chat.title.updated") == []
    assert stream.completed.usage.total_calls == 1
    assert await _chat_name(api, chat["id"]) == "My own name"


async def test_title_comes_from_the_model_and_is_stored_with_stream_false(api: Api) -> None:
    agent_id = await api.scripted_agent([{"text": "ok"}], title="「挨拶について」")
    chat = await api.create_chat(agent_id, name="untitled")
    assert data(await api.send(chat["id"], "こんにちは", agent_id=agent_id, stream=False)) == "ok"
    assert await _chat_name(api, chat["id"]) == "挨拶について"


async def test_failed_first_turn_still_titles_only_once(api: Api) -> None:
    agent_id = await api.scripted_agent([{"delay": 0.2}, {"fail": "boom"}], title="First title")
    chat = await api.create_chat(agent_id, name="untitled")
    first = await api.stream(chat["id"], "hello", agent_id=agent_id)
    assert first.events[-1].type == "response.error"
    titles = first.of("response.chat.title.updated")
    assert [e.name for e in titles if isinstance(e, ChatTitleUpdated)] == ["First title"]
    assert len(titles) == 1
    second = await api.stream(chat["id"], "hello again", agent_id=agent_id)
    assert second.of("response.chat.title.updated") == []
    assert await _chat_name(api, chat["id"]) == "First title"


async def test_slow_title_is_skipped_without_holding_the_answer(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(title_timeout=0.2, idle_timeout=5.0)
    agent_id = await api.scripted_agent([{"text": "answer"}], title="late", title_delay=3)
    chat = await api.create_chat(agent_id, name="untitled")
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await api.stream(chat["id"], "hello", agent_id=agent_id)
    assert loop.time() - started < 1.5
    assert stream.of("response.chat.title.updated") == []
    assert stream.completed.final_text == "answer"
    assert stream.completed.status == "completed"
    assert await _chat_name(api, chat["id"]) == "untitled"
    # Titles come on the first turn only, even when that turn had none.
    second = await api.stream(chat["id"], "again", agent_id=agent_id)
    assert second.of("response.chat.title.updated") == []


async def test_title_slower_than_the_idle_timeout_does_not_fail_a_finished_answer(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(idle_timeout=0.3, title_timeout=20.0)
    agent_id = await api.scripted_agent([{"text": "whole answer"}], title="late", title_delay=3)
    chat = await api.create_chat(agent_id, name="untitled")
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await api.stream(chat["id"], "hello", agent_id=agent_id)
    assert loop.time() - started < 1.5
    assert stream.types[-1] == "response.output_text.completed", stream.types
    assert stream.completed.final_text == "whole answer"
    assert (await api.messages(chat["id"]))[-1]["meta"]["status"] == "completed"
    assert await _chat_name(api, chat["id"]) == "untitled"


async def test_title_arriving_after_the_answer_is_still_emitted_before_completed(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(idle_timeout=1.0)
    agent_id = await api.scripted_agent([{"text": "quick"}], title="Slow title", title_delay=0.3)
    chat = await api.create_chat(agent_id, name="untitled")
    stream = await api.stream(chat["id"], "hello", agent_id=agent_id)
    assert stream.types[-2:] == ["response.chat.title.updated", "response.output_text.completed"]
    assert stream.completed.final_text == "quick"
    assert stream.completed.usage.total_calls == 2
    assert await _chat_name(api, chat["id"]) == "Slow title"
