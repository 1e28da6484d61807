"""``mailscan status``: what the workers themselves report, how deep each queue is, and what
the pools' last health probes found: their engines, and whether they see the front's spool."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from mailserver.front.server import check_redis
from tasks import sizing
from tasks.celery import app
from tasks.poolsize import pool_size
from tasks.redisauth import masked, sentinel
from tasks.settings import Settings
from tasks.wire.fleet import json_records, probes
from tasks.wire.keys import QUEUES, SPOOL_REPORT_KEY

FRONT_GONE_AFTER_S = 300.0


def collect(settings: Settings) -> dict[str, Any]:
    client = check_redis(settings)
    stats = app.control.inspect(timeout=1.0).stats() or {}
    pools: dict[str, Any] = {
        pool: {"queue_depth": client.llen(pool), "workers": {}, "probes": {}} for pool in QUEUES
    }
    for worker, info in sorted(stats.items()):
        pool = worker.split("@", 1)[0]
        if pool in pools:
            pools[pool]["workers"][worker] = {
                "concurrency": pool_size(info),
                "processes": info.get("pool", {}).get("processes", []),
                "tasks_done": sum(info.get("total", {}).values()),
            }
    for worker, probe in probes(client).items():
        if probe.get("pool") in pools:
            pools[probe["pool"]]["probes"][worker] = probe
    return {
        "redis": redis_report(settings, client),
        "fronts": json_records(client, SPOOL_REPORT_KEY),
        "pools": pools,
        # Worked out again here: the same settings on the same machine give what `mailscan
        # up` chose; the workers' own lines below say what they run now.
        "sizing": sizing.plan(settings).lines(),
    }


def redis_report(settings: Settings, client: Any) -> dict[str, Any]:
    """Where Redis runs: the URL (password masked), the current primary and its replicas,
    and under Sentinel the sentinels that were asked."""
    report: dict[str, Any] = {"url": masked(settings.redis_url)}
    if settings.redis_sentinels:
        sentinels = sentinel(settings)
        primary = sentinels.discover_master(settings.redis_master)
        replicas = sentinels.discover_slaves(settings.redis_master)
        report["sentinels"] = [str(s) for s in settings.redis_sentinels]
        report["master_name"] = settings.redis_master
    else:
        url = urlsplit(settings.redis_url)
        primary = (url.hostname, url.port or 6379) if url.hostname else (url.path, 0)
        shown = client.info("replication").values()
        replicas = [(r["ip"], r["port"]) for r in shown if isinstance(r, dict) and "ip" in r]
    report["primary"] = _address(*primary)
    report["replicas"] = [_address(*replica) for replica in replicas]
    return report


def _address(host: str, port: int) -> str:
    return f"{host}:{port}" if port else host


def status_lines(report: dict[str, Any], now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    fronts = report.get("fronts", {})
    # The spool of each front still running: the ones every pool must see.
    spools = {h: f["spool_id"] for h, f in fronts.items() if _running(f, now) and f.get("spool_id")}
    lines = [_redis_line(report["redis"])]
    for host, front in fronts.items():
        through = "the spool" if front.get("spool_shared", True) else "Redis"
        lines.append(f"SMTP front {host}: spool {front.get('spool_id') or '?'}, "
                     f"{front.get('count', 0)} message(s) without an outcome, "
                     f"big messages to the pools through {through}")  # fmt: skip
        if "verdict_subscriber" in front and _running(front, now):  # older fronts say nothing
            lines.append(_subscriber_line(front["verdict_subscriber"]))
        if alarm := dead_letter_alarm(front):
            lines.append(f"  ALARM: {alarm}")
    lines += _sizing_lines(report.get("sizing", []))
    for pool, info in report["pools"].items():
        workers = info["workers"]
        lines.append(f"pool {pool}: {len(workers)} worker(s), {info['queue_depth']} job(s) queued")
        for name, worker in workers.items():
            lines.append(
                f"  {name}: concurrency {worker['concurrency']}, {worker['tasks_done']} tasks done"
            )
        if not workers:
            lines.append("  no worker answered")
        for name, probe in info.get("probes", {}).items():
            lines += _probe_lines(name, probe, spools, now)
    return lines


def _sizing_lines(sizing: list[str]) -> list[str]:
    if not sizing:
        return []
    return ["sizes `mailscan up` chooses on this host:", *(f"  {line}" for line in sizing)]


def _redis_line(redis: dict[str, Any]) -> str:
    replicas = ", ".join(redis["replicas"]) or "none"
    line = f"redis {redis['url']}: primary {redis['primary']}, replicas {replicas}"
    if "sentinels" in redis:
        line += (
            f" (sentinels {', '.join(redis['sentinels'])}, primary named {redis['master_name']})"
        )
    return line


def dead_letter_alarm(front: dict[str, Any]) -> str:
    """What a front's spool holds that no outcome was reached for, or ''."""
    dead, corrupt = front.get("dead", 0), front.get("corrupt", 0)
    where = front.get("spool_dir", "the spool")
    found = [f"{dead} message(s) dead-lettered in {where}/dead"] if dead else []
    found += [f"{corrupt} unreadable entr(ies) set aside in {where}/corrupt"] if corrupt else []
    return ", ".join(found)


def _probe_lines(name: str, probe: dict[str, Any], spools: dict[str, str], now: float) -> list[str]:
    engines = ", ".join(_engine(n, answer) for n, answer in probe.get("plugins", {}).items())
    lines = [f"  {name}: health probe {now - probe.get('at', 0):.0f} s ago: {engines or '-'}"]
    if "spool" not in probe:  # stored by a worker from before probes named the spool
        return lines
    spool = probe["spool"]
    missed = [host for host, their_id in spools.items() if their_id != spool.get("id")]
    seen = [host for host in spools if host not in missed]
    if seen:
        lines.append(
            f"    reads big messages from the spool of {', '.join(seen)} at {spool.get('dir')}"
        )
    if missed:
        lines.append(
            f"    does not see the spool of {', '.join(missed)} at {spool.get('dir')}: "
            "big messages from there reach it through Redis"
        )
    return lines


def _subscriber_line(alive: bool) -> str:
    if alive:
        return "  verdict subscriber up"
    return "  verdict subscriber down: its messages wait their whole deadline"


def _engine(plugin: str, answer: dict[str, Any]) -> str:
    if answer.get("ok"):
        return f"{plugin} {answer.get('version', '')}"
    return f"{plugin} failing ({answer.get('error', '')})"


def _running(front: dict[str, Any], now: float) -> bool:
    """A front reports its spool every redrive interval (30 s by default) while it runs; one
    that stopped long ago is no front the pools must see."""
    return now - front.get("at", 0) < FRONT_GONE_AFTER_S
