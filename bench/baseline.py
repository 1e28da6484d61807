"""The backend-only baseline: each message scanned by clamd (INSTREAM) and then spamd (SYMBOLS)
called directly, the calls the two pools' plugins make (the same INSTREAM in large chunks,
``tasks.plugins.clamav``), without Redis, Celery or SMTP.

The calls are blocking, as in the plugins; they run on a thread pool as large as the number of
clients. Each thread makes one aiospamc client and event loop and reuses them, as the
spamassassin plugin does in each pool process: the one-call helpers (``aiospamc.symbols``)
build a TLS context on every call, about 30 ms of CPU, even for plain TCP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from aiospamc.client import Client
from aiospamc.connections import TcpConnectionManager, Timeout
from aiospamc.requests import Request
from loguru import logger

from bench.load import Answer, Work
from tasks.plugins.clamav import clamd_client
from tasks.plugins.truncation import truncate
from tasks.settings import Settings

logger.disable("aiospamc")  # one INFO line per request otherwise
_per_thread = threading.local()


def direct_scan(settings: Settings, message: bytes) -> Answer:
    started = time.perf_counter()
    try:
        clamd = clamd_status(settings, message)
        between = time.perf_counter()
        spamd = spamd_status(settings, message)
    except Exception as err:  # any failure is an outcome to count, not a crash
        _per_thread.spamd = None  # a half-done request may be left on its loop: start afresh
        return Answer("error", f"{type(err).__name__}: {err}"[:70])
    ended = time.perf_counter()
    detail = {
        "clamd": clamd,
        "spamd": spamd,
        "clamd_s": between - started,
        "spamd_s": ended - between,
    }
    outcome = "ok" if "error" not in (clamd, spamd) else "error"
    return Answer(outcome, f"clamd {clamd}, spamd {spamd}", detail=detail)


def clamd_status(settings: Settings, message: bytes) -> str:
    """``OK`` or ``FOUND`` (or ``ERROR``)."""
    client = clamd_client(settings.clamd, settings.clamd_timeout_s)
    status, _ = client.instream_bytes(message).get("stream", ("error", None))
    return status


def _spamd_client(settings: Settings) -> tuple[asyncio.AbstractEventLoop, Client]:
    if getattr(_per_thread, "spamd", None) is None:
        endpoint, timeout = settings.spamd, Timeout(total=settings.spamd_timeout_s)
        manager = TcpConnectionManager(endpoint.host, endpoint.port, None, timeout)
        _per_thread.spamd = (asyncio.new_event_loop(), Client(manager))
    return _per_thread.spamd


def spamd_status(settings: Settings, message: bytes) -> str:
    given = truncate(message, settings.spam_max_bytes)  # as the spamassassin plugin does
    loop, client = _spamd_client(settings)
    response = loop.run_until_complete(client.request(Request("SYMBOLS", body=given)))
    spam = response.headers.get("Spam")
    if spam is None:
        return "error"
    return "spam" if spam.value else "ham"


def direct_work(
    settings: Settings, messages: list[bytes], threads: int
) -> tuple[Work, ThreadPoolExecutor]:
    """An async ``work(i)`` for the load generator, and the pool to shut down afterwards."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="baseline")

    async def work(index: int) -> Answer:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, direct_scan, settings, messages[index])

    return work, pool
