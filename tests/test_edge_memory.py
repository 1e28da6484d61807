"""Many big messages at once cost the SMTP front bounded memory: each session holds a buffer
while its DATA streams into the spool, and only the memory budget's worth of messages is
read back to be scanned and delivered; the rest wait on disk.

The bound, for N sessions at once: the front's memory before the burst, plus N times a
session's buffers (``SESSION_BYTES``), plus twice the budget (a message and its copies
while it is delivered). Holding every message whole, as the front did, is N times 25 MB.

A front and pools of their own, with a small budget (the session stack's Redis, clamd and
spamd): the bound is then far below N messages whole with a burst that is quick to scan, and
the front's peak is this burst's alone.
"""

from __future__ import annotations

import base64
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.front.admission import read_backlog
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tests.conftest import POOLS, port, stack_env, wait_for
from tests.raw_client import RawClient

pytestmark = [pytest.mark.integration, pytest.mark.load]

CLIENTS = int(os.environ.get("EDGE_MEMORY_CLIENTS", "20"))
MESSAGE_BYTES = 25_000_000
BUDGET_BYTES = 64 * 1024 * 1024  # two of the burst's messages at once
MEMORY_DB, SMTP_PORT = 6, port(12525) + 130
# The stream's buffer (twice its limit, and a read), the piece being checked, the staging
# buffer and the write in flight: well under a MiB.
SESSION_BYTES = 1024 * 1024
# Delivered; the memory budget full for a scan deadline; the scan past its deadline.
ANSWERS = (b"250 2.0.0", b"451 4.3.2", b"451 4.7.1")


@pytest.fixture(scope="module")
def small_budget(stack) -> Iterator[Stack]:
    env = stack_env(
        "edgememory", 0,
        redis_url=f"redis://127.0.0.1:{port(16390)}/{MEMORY_DB}",
        smtp_port=str(SMTP_PORT),
        metrics_port=str(SMTP_PORT + 7000),
        message_memory_bytes=str(BUDGET_BYTES),
    )  # fmt: skip
    running = Stack(load_settings(env), env)
    try:
        running.start([*POOLS, "mailserver"], progress=lambda _: None)
        yield running
    finally:
        running.stop()


def memory_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, f"no {field} for process {pid}"
    return int(match.group(1))


def _big_body() -> bytes:
    """Random base64, as an attachment is: neither compressible nor quick to search."""
    raw = random.Random(25).randbytes(MESSAGE_BYTES * 3 // 4 - 4096)
    return base64.encodebytes(raw).replace(b"\n", b"\r\n")


def _send_big(port: int, head: bytes, body: memoryview, replies: list[bytes], source: str) -> None:
    try:
        with RawClient(port, timeout_s=240, source=source) as client:
            client.start_data()
            client.send(head)
            client.send(body)
            client.send(b".\r\n")
            replies.append(client.reply())
            client.command(b"QUIT")
    except OSError as err:
        replies.append(f"client failed: {err!r}".encode())


def _remove_delivered(maildir: Path, marker: bytes) -> int:
    """The burst's copies leave the Maildir, so later tests do not read 5 GB of them."""
    removed = 0
    for path in (maildir / "new").iterdir():
        with open(path, "rb") as handle:
            if marker in handle.read(4096):
                path.unlink()
                removed += 1
    return removed


def _burst(port: int, marker: bytes) -> tuple[list[bytes], float]:
    """Every client at once, each with its own message of the same big body."""
    body = memoryview(_big_body())
    replies: list[bytes] = []
    heads = [b"Subject: big\r\nX-Test-Id: %s-%d\r\n\r\n" % (marker, n) for n in range(CLIENTS)]
    # From many loopback addresses: the front takes only so many connections per client.
    sources = [f"127.0.1.{1 + n % 200}" for n in range(CLIENTS)]
    clients = [
        threading.Thread(target=_send_big, args=(port, h, body, replies, source))
        for h, source in zip(heads, sources, strict=True)
    ]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return replies, time.monotonic() - started


def _settled(settings: Settings) -> bool:
    """Every message of the burst has its outcome and the pools have nothing left of it, so
    the tests after this one meet neither a backlog nor the burst's spool entries."""
    queued = [p for p in (settings.spool_dir / "queue").iterdir() if p.is_file()]
    return not queued and read_backlog(redisauth.connect(settings))[0] == 0


def test_many_big_messages_at_once_keep_the_front_within_its_memory_bound(small_budget):
    settings, pid = small_budget.settings, small_budget.pid("mailserver")
    before_kb = memory_kb(pid, "VmRSS")
    marker = f"burst-{time.time_ns()}".encode()
    try:
        replies, took_s = _burst(settings.smtp_port, marker)
        peak_kb = memory_kb(pid, "VmHWM")
        wait_for(lambda: _settled(settings), 180, "the burst's messages and jobs finished")
    finally:
        _remove_delivered(settings.maildir, marker)
    bound_kb = before_kb + (CLIENTS * SESSION_BYTES + 2 * settings.message_memory_bytes) // 1024
    answers = Counter(r[:9].decode() if r[:9] in ANSWERS else r.decode() for r in replies)
    print(f"\n{CLIENTS} x {MESSAGE_BYTES / 1e6:.0f} MB in {took_s:.0f} s: {dict(answers)}; "
          f"front peak RSS {peak_kb / 1024:.0f} MiB (before {before_kb / 1024:.0f} MiB, bound "
          f"{bound_kb / 1024:.0f} MiB)")  # fmt: skip
    # Each client has its answer: delivered, or try later when the scanners could not keep
    # up (pools that scan 25 MB in seconds); none is left hanging or cut off.
    assert sum(answers.values()) == CLIENTS
    assert set(answers) <= {a.decode() for a in ANSWERS}, answers
    assert answers["250 2.0.0"] > 0
    assert peak_kb < bound_kb
