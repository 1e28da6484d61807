"""The next hop behind the classic content filter of bench/classic.py: takes every message
and keeps none. It is served by mailscan's own SMTP class, so it accepts the long lines real
mail has, as the MTA behind a content filter does; aiosmtpd's own server refuses some
generated mail for them.

    .venv/bin/python -m bench.nexthop PORT [COUNT_FILE]

With COUNT_FILE, each message taken rewrites it in place as "COUNT UNIX_TIME": how many it
has taken and when the last one came, so a benchmark counts mail where it ends, not at the
MTA's 250 (bench/behind_postfix.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.stacks import LOOPBACK
from mailserver.front.smtpsession import LenientSMTP


class Discard:
    """A handler of mailscan's SMTP class that answers 250 and keeps nothing."""

    async def open_message(self, session: Any, envelope: Any) -> Discard:
        return self

    async def write(self, data: bytes) -> None:
        pass

    async def discard(self) -> None:
        pass

    async def handle_DATA(self, server: Any, session: Any, envelope: Any, message: Any) -> str:
        return "250 OK"


class Counting(Discard):
    """Keeps nothing either, but counts what it takes in ``path``."""

    def __init__(self, path: Path) -> None:
        self.taken = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._write()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any, message: Any) -> str:
        self.taken += 1
        self._write()
        return "250 OK"

    def _write(self) -> None:
        # Fixed width, so a reader never sees a shorter line's leftovers.
        os.pwrite(self.fd, f"{self.taken:12d} {time.time():20.6f}\n".encode(), 0)


def read_count(path: Path) -> tuple[int, float]:
    """What a ``Counting`` next hop wrote: messages taken and the time of the last one."""
    count, at = path.read_text().split()
    return int(count), float(at)


async def serve_smtp(handler: object, port: int) -> None:
    """Serve ``handler`` with the front's own SMTP class on loopback until SIGTERM."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: LenientSMTP(handler, data_size_limit=30 * 2**20, enable_SMTPUTF8=True),
        LOOPBACK,
        port,
    )
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    async with server:
        await stopped.wait()


if __name__ == "__main__":
    handler = Counting(Path(sys.argv[2])) if len(sys.argv) > 2 else Discard()
    asyncio.run(serve_smtp(handler, int(sys.argv[1])))
