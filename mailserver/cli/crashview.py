"""``mailscan crashdumps``: the records and their groups, for a terminal or a script."""

from __future__ import annotations

import time
from typing import Any

from mailserver.front.server import check_redis
from tasks.crashes.store import CrashStore
from tasks.errors import MailscanError
from tasks.settings import Settings


def store(settings: Settings) -> CrashStore:
    crashes = CrashStore(check_redis(settings), settings.crashdump_dir)
    crashes.drain()  # records kept on this host while Redis was away belong in the list
    return crashes


def list_lines(records: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    if not records:
        return ["no crashdumps"]
    lines = [f"{len(records)} crashdump(s) in {len(groups)} group(s), newest first:"]
    for dump in records:
        plugin = dump["plugin"].get("name", "?")
        what = dump["exception"]["type"] or dump.get("signal") or ""
        lines.append(
            f"{dump['id']}  {dump['time']}  {dump['pool']:<4} {plugin:<12} "
            f"{dump['kind']:<10} {what}"
        )
    lines.append("groups (signature: count, first seen, last seen):")
    for group in groups:
        first, last = _when(group.get("first_seen")), _when(group.get("last_seen"))
        lines.append(
            f"  {group['signature']}: {group['count']}x {group.get('plugin')} "
            f"{group.get('kind')} {group.get('exception')}, {first} .. {last}"
        )
    return lines


def show(settings: Settings, dump_id: str) -> dict[str, Any]:
    dump = store(settings).get(dump_id)
    if dump is None:
        raise MailscanError(f"no crashdump {dump_id!r}")
    return dump


def show_lines(dump: dict[str, Any]) -> list[str]:
    head = [
        f"crashdump {dump['id']} ({dump['kind']}) at {dump['time']}",
        f"pool {dump['pool']}, plugin {dump['plugin']}",
        f"worker {dump['worker']['host']} pid {dump['worker']['pid']}, job {dump['job_id']}",
        f"message {dump['message']}",
        f"exception {dump['exception']['type']}: {dump['exception']['message']}",
        f"signal {dump['signal']}, exit status {dump['exit_status']}",
        f"signature {dump['signature']}, versions {dump['versions']}",
    ]
    if dump.get("note"):
        head.append(f"note: {dump['note']}")
    sections = [("traceback", "traceback"), ("threads", "stacks of every thread"),
                ("faulthandler", "faulthandler output")]  # fmt: skip
    for key, title in sections:
        if dump.get(key):
            head += ["", f"--- {title} ---", dump[key].rstrip()]
    return head


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) if ts else "?"
