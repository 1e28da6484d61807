"""The next hop behind the classic content filter of bench/classic.py: takes every message
and keeps none. It is aiosmtpd's Sink served by mailscan's own SMTP class
(``bench.smtp_floor.serve_smtp``), so it accepts the long lines real mail has, as the MTA
behind a content filter does; aiosmtpd's own server refused a tenth of the generated mail
for them.

    .venv/bin/python -m bench.nexthop PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.handlers import Sink

from bench.smtp_floor import serve_smtp

if __name__ == "__main__":
    asyncio.run(serve_smtp(Sink(), int(sys.argv[1])))
