"""The next hop behind the classic content filter of bench/classic.py: takes every message
and keeps none. It is served by mailscan's own SMTP class, so it accepts the long lines real
mail has, as the MTA behind a content filter does; aiosmtpd's own server refuses some
generated mail for them.

    .venv/bin/python -m bench.nexthop PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
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
    asyncio.run(serve_smtp(Discard(), int(sys.argv[1])))
