"""What mailscan did with the messages, seen from outside: the Maildir, the queues in Redis
and the services' logs."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from tasks import redisauth
from tasks.settings import Settings
from tasks.wire.keys import POOLS

HEAD_BYTES = 16_384  # mailscan's headers and the client's X-Bench-Id are all in here
BENCH_ID = re.compile(rb"(?m)^X-Bench-Id: (\S+)")
SPAM_FLAG = re.compile(rb"(?m)^X-Spam-Flag: (\S+)")
SPAM_UNKNOWN = re.compile(rb"(?m)^X-Spam-Status: Unknown")  # delivered without a spam verdict
LOG_TROUBLE = re.compile(r"\b(warn|warning|error|critical|traceback)\b", re.IGNORECASE)
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport: "<queue>\x06\x16<priority>"


def delivered(maildir: Path, prefix: str) -> dict[str, list[str]]:
    """X-Bench-Id -> one mark per copy in the Maildir ("spam", "ham" or "unscanned": spam
    scan failed or timed out), for ids with ``prefix``; two marks mean delivered twice."""
    found: dict[str, list[str]] = {}
    for folder in (maildir / "new", maildir / "cur"):
        for path in folder.iterdir() if folder.is_dir() else []:
            with path.open("rb") as file:
                head = file.read(HEAD_BYTES).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            bench_id = BENCH_ID.search(head)
            if bench_id and bench_id.group(1).decode().startswith(prefix):
                found.setdefault(bench_id.group(1).decode(), []).append(_spam_mark(head))
    return found


def _spam_mark(head: bytes) -> str:
    if SPAM_UNKNOWN.search(head):
        return "unscanned"
    flag = SPAM_FLAG.search(head)
    return "spam" if flag and flag.group(1) == b"YES" else "ham"


def queue_depths(settings: Settings) -> dict[str, float]:
    """Jobs waiting in each pool's queue (all priorities)."""
    client = redisauth.connect(settings, socket_timeout=2)
    depths = {}
    for pool in POOLS:
        names = [pool, *(f"{pool}{PRIORITY_SEPARATOR}{p}" for p in range(1, 10))]
        depths[f"queue {pool}"] = float(sum(client.llen(n) for n in names))
    return depths


def log_trouble(log_dir: Path) -> dict[str, Counter[str]]:
    """Lines that look like warnings or errors, per service log, counted by their shape."""
    trouble = {}
    for path in sorted(log_dir.glob("*.log")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if _bad(ln)]
        trouble[path.stem] = Counter(_shape(ln) for ln in lines)
    return trouble


def _bad(line: str) -> bool:
    # A succeeded task's log line may quote a verdict that mentions "error".
    return bool(LOG_TROUBLE.search(line)) and " succeeded in " not in line


def _shape(line: str) -> str:
    """The line without its time stamp, ids, numbers and paths (they name this machine)."""
    text = re.sub(r"^\S+ \S+ ", "", line)
    text = re.sub(r"(?<![\w.])/[\w.\-]+(?:/[\w.\-]+)+", "<path>", text)
    text = re.sub(r"\b[0-9a-f]{8,}\b|\d+", "#", text)
    return text[:140]


GOOD_FATES = ("250, delivered once", "4xx, not delivered", "5xx, refused")


def fates(found: dict[str, list[str]], records: list[list[Any]], prefix: str) -> Counter[str]:
    """What became of each message sent, from its reply and the Maildir: anything not in
    GOOD_FATES is mail lost, duplicated, or left unknown to the sender."""
    counts: Counter[str] = Counter()
    for index, _, _, outcome in records:
        counts[_fate(outcome, len(found.get(f"{prefix}-{index}", [])))] += 1
    return counts


def _fate(outcome: str, copies: int) -> str:
    if outcome == "250":
        return {0: "250, NOT delivered", 1: "250, delivered once"}.get(
            copies, "250, delivered twice"
        )
    if outcome in ("4xx", "5xx"):
        refused = "not delivered" if outcome == "4xx" else "refused"
        return f"{outcome}, {refused}" if copies == 0 else f"{outcome}, delivered anyway"
    return f"{outcome}: no SMTP answer, " + ("delivered" if copies else "not delivered")
