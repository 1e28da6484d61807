"""The memory budget of the mailserver: messages over the budget wait their turn, first come
first served; small ones and a message larger than the whole budget are never stuck."""

from __future__ import annotations

import asyncio

from mailserver.front.membudget import MemoryBudget


async def _hold(budget: MemoryBudget, size: int, log: list[str], name: str, gate: asyncio.Event):
    async with budget.hold(size) as let_in:
        assert let_in
        log.append(f"{name} in")
        await gate.wait()
    log.append(f"{name} out")


async def _until(check, what: str) -> None:
    try:
        async with asyncio.timeout(5):
            while not check():
                await asyncio.sleep(0)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_messages_wait_while_the_budget_is_held_and_go_in_order():
    async def run() -> list[str]:
        budget, log = MemoryBudget(100, unmetered_bytes=10), []
        gates = {name: asyncio.Event() for name in "abcd"}
        sizes = {"a": 60, "b": 60, "c": 30, "d": 5}
        tasks = {}
        for name in "abcd":
            tasks[name] = asyncio.create_task(_hold(budget, sizes[name], log, name, gates[name]))
            await asyncio.sleep(0)
        # a holds 60; b does not fit; c would fit but stands behind b; d is small: no wait.
        await _until(lambda: log == ["a in", "d in"], "a and d in")
        assert budget.waiting == 2
        gates["a"].set()
        await _until(lambda: "c in" in log, "b and c in")
        assert log[:4] == ["a in", "d in", "a out", "b in"]
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks.values())
        assert budget.free == 100
        return log

    asyncio.run(run())


def test_a_message_larger_than_the_budget_waits_for_it_empty_and_goes_alone():
    async def run() -> None:
        budget, log = MemoryBudget(100, unmetered_bytes=10), []
        small, huge = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_hold(budget, 50, log, "first", small))
        await _until(lambda: log == ["first in"], "first in")
        second = asyncio.create_task(_hold(budget, 1000, log, "huge", huge))
        await _until(lambda: budget.waiting == 1, "huge waiting")
        small.set()
        await _until(lambda: "huge in" in log, "huge in")
        assert budget.free == 0
        huge.set()
        await asyncio.gather(first, second)
        assert budget.free == 100

    asyncio.run(run())


def test_a_wait_past_its_limit_is_refused_and_holds_nothing():
    async def run() -> None:
        budget, log, gate = MemoryBudget(100, unmetered_bytes=10), [], asyncio.Event()
        holder = asyncio.create_task(_hold(budget, 100, log, "holder", gate))
        await _until(lambda: log == ["holder in"], "holder in")
        async with budget.hold(50, wait_s=0.05) as let_in:
            assert not let_in
        assert budget.waiting == 0
        gate.set()
        await holder
        assert budget.free == 100

    asyncio.run(run())


def test_a_session_gone_while_waiting_leaves_its_place_to_the_next():
    async def run() -> None:
        budget, log = MemoryBudget(100, unmetered_bytes=10), []
        gates = {name: asyncio.Event() for name in ("holder", "gone", "next")}
        holder = asyncio.create_task(_hold(budget, 80, log, "holder", gates["holder"]))
        await _until(lambda: log == ["holder in"], "holder in")
        gone = asyncio.create_task(_hold(budget, 90, log, "gone", gates["gone"]))
        after = asyncio.create_task(_hold(budget, 20, log, "next", gates["next"]))
        await _until(lambda: budget.waiting == 2, "two waiting")
        gone.cancel()  # the client hung up while its message waited
        await _until(lambda: "next in" in log, "the next let in")
        gates["next"].set()
        gates["holder"].set()
        await asyncio.gather(holder, after)
        assert budget.free == 100
        assert "gone in" not in log

    asyncio.run(run())
