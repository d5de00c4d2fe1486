"""`Deadlines`: each armed key expires once, in order, after its delay, on one timer."""

from __future__ import annotations

import asyncio

from kaiwa.deadlines import Deadlines


async def test_keys_expire_in_the_order_armed_after_the_delay() -> None:
    loop = asyncio.get_running_loop()
    expired: list[tuple[str, float]] = []
    deadlines: Deadlines[str] = Deadlines(0.05, lambda key: expired.append((key, loop.time())))
    armed = {}
    for key in ("a", "b", "c"):
        armed[key] = loop.time()
        deadlines.arm(key)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert [key for key, _ in expired] == ["a", "b", "c"]
    for key, when in expired:
        assert when >= armed[key] + 0.05  # never before its deadline
    assert len(deadlines) == 0


async def test_a_disarmed_key_never_expires_and_a_rearmed_one_starts_over() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(0.05, expired.append)
    deadlines.arm("gone")
    deadlines.arm("moved")
    deadlines.arm("kept")
    await asyncio.sleep(0.03)
    deadlines.disarm("gone")
    deadlines.arm("moved")  # now the last, 0.05 s from here
    deadlines.disarm("never armed")
    await asyncio.sleep(0.04)
    assert expired == ["kept"]
    await asyncio.sleep(0.04)
    assert expired == ["kept", "moved"]


async def test_an_expiry_may_arm_another_key() -> None:
    expired: list[str] = []

    def expire(key: str) -> None:
        expired.append(key)
        if key == "first":
            deadlines.arm("second")

    deadlines: Deadlines[str] = Deadlines(0.02, expire)
    deadlines.arm("first")
    deadlines.arm("other")
    await asyncio.sleep(0.1)
    assert expired == ["first", "other", "second"]


def test_a_new_event_loop_starts_afresh() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(0.01, expired.append)

    async def arm_and_leave() -> None:
        deadlines.arm("left behind")

    async def arm_and_wait() -> None:
        deadlines.arm("here")
        await asyncio.sleep(0.05)

    asyncio.run(arm_and_leave())  # its loop closes with the key armed
    asyncio.run(arm_and_wait())
    assert expired == ["here"]
