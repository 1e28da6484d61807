"""How many message bytes the mailserver holds in memory at once to scan and deliver.

Every message is on disk in its spool entry before it is processed (staging.py), so a
message that waits here holds its file, not memory. Those small enough to have stayed in
a session's buffer (``unmetered_bytes``) go on at once: they are in memory anyway, and a
burst of large ones must not hold up ordinary mail. The others are let in first come,
first served while their sizes fit the budget; one larger than the whole budget waits until
it is empty and is then processed alone. The holders need nothing from the waiters to
finish (their data is whole), so the wait cannot deadlock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class MemoryBudget:
    """``hold(size)`` around the work that holds a message of ``size`` bytes in memory."""

    def __init__(self, total_bytes: int, unmetered_bytes: int) -> None:
        self.total, self.unmetered = total_bytes, unmetered_bytes
        self.free = total_bytes
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def hold(self, size: int, wait_s: float | None = None) -> AsyncIterator[bool]:
        """Yields True once let in, or False after ``wait_s`` without (nothing is held)."""
        if size <= self.unmetered:
            yield True
            return
        share = min(size, self.total)
        try:
            async with asyncio.timeout(wait_s):
                await self._take(share)
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            self._give_back(share)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def _take(self, share: int) -> None:
        if not self._waiting and share <= self.free:
            self.free -= share
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((share, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_back(share)  # let in just as its session went away
            elif (share, turn) in self._waiting:
                self._waiting.remove((share, turn))
                self._let_in()  # it may have stood before ones that fit now
            raise

    def _give_back(self, share: int) -> None:
        self.free += share
        self._let_in()

    def _let_in(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            share, turn = self._waiting.popleft()
            if not turn.done():  # done: cancelled, its session went away
                self.free -= share
                turn.set_result(None)
