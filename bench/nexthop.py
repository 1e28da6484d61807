"""The next hop behind the classic content filter of bench/classic.py: takes every message
and keeps none. It is mailscan's own SMTP class (``LenientSMTP``) with aiosmtpd's Sink, so
it accepts the long lines real mail has, as the MTA behind a content filter does; aiosmtpd's
own server refused a tenth of the generated mail for them.

    .venv/bin/python -m bench.nexthop PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.handlers import Sink

from bench.stacks import LOOPBACK
from mailserver.server import LenientSMTP

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


async def serve(port: int) -> None:
    def factory() -> LenientSMTP:
        return LenientSMTP(Sink(), data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True)

    server = await asyncio.get_running_loop().create_server(factory, LOOPBACK, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
