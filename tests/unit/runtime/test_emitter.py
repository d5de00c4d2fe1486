"""`Emitter`'s idle deadline: events push it forward, silence expires the answer's timeout, and
the timeout keeps no timer of its own meanwhile (one is shared by every answer)."""

from __future__ import annotations

import asyncio

import pytest

from kaiwa.bus.memory import MemoryEventLog
from kaiwa.runtime.emitter import Emitter


async def _emitter() -> Emitter:
    log = MemoryEventLog()
    await log.create("resp_1")
    return Emitter(log, "resp_1", 7)


async def test_silence_past_the_idle_timeout_expires_the_answers_timeout() -> None:
    emitter = await _emitter()
    loop = asyncio.get_running_loop()
    seen: list[asyncio.Timeout] = []

    async def silent_answer() -> None:
        async with asyncio.timeout(0.1) as deadline:
            seen.append(deadline)
            with emitter.watching_idle(deadline, Emitter.idle_deadlines(0.1)):
                assert deadline.when() is None  # the shared timer stands in for its own
                await asyncio.sleep(5)

    started = loop.time()
    with pytest.raises(TimeoutError):
        await silent_answer()
    assert 0.1 <= loop.time() - started < 1.0
    assert seen[0].expired()


async def test_events_push_the_idle_deadline_forward() -> None:
    emitter = await _emitter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(0.2) as deadline:
        with emitter.watching_idle(deadline, Emitter.idle_deadlines(0.2)):
            for _ in range(8):  # 0.4 s in all, never 0.2 s without an event
                await asyncio.sleep(0.05)
                await emitter.delta("x")
    assert loop.time() - started >= 0.4
    assert not deadline.expired()


async def test_after_the_watch_the_timeout_keeps_the_last_deadline_pushed() -> None:
    emitter = await _emitter()
    loop = asyncio.get_running_loop()
    whens: list[float | None] = []

    async def answer_then_late_events() -> None:
        async with asyncio.timeout(0.1) as deadline:
            with emitter.watching_idle(deadline, Emitter.idle_deadlines(0.1)):
                await asyncio.sleep(0.05)
            whens.append(deadline.when())
            await emitter.delta("late")  # outside the watch: it moves nothing
            whens.append(deadline.when())
            await asyncio.sleep(5)

    started = loop.time()
    with pytest.raises(TimeoutError):
        await answer_then_late_events()
    assert whens[0] is not None
    assert whens[0] == whens[1]
    assert loop.time() - started < 1.0
