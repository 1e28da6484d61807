"""The local stack's Redis under Sentinel (``MAILSCAN_LOCAL_REDIS=sentinel``): a primary on
the URL's port, one replica on the next port and three sentinels, all on loopback.

Every one of them takes the password from a config file (mode 600), never from its command
line. The sentinels write what they learn (the current primary, the replicas, the other
sentinels, their epochs) back into their own config files, and Redis writes a new
``replicaof`` into its own when a sentinel gives it another role. A restart of one of them
keeps that: the stack after a failover comes back as the failover left it, never with the
old primary's stale data taking the role back.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import redis

from mailserver.supervisor.localredis import (
    ensure_password,
    quoted,
    write_node_config,
    write_private,
)
from tasks import redisauth
from tasks.settings import Settings

QUORUM = 2  # of three sentinels: one may be down and a failover still happens
# What a sentinel learnt, kept across our rewrite of its config (its own lines say it).
LEARNT = ("myid", "known-replica", "known-sentinel", "current-epoch", "config-epoch",
          "leader-epoch")  # fmt: skip


def primary_port(settings: Settings) -> int:
    return urlsplit(settings.redis_url).port or 6379


def replica_port(settings: Settings) -> int:
    return primary_port(settings) + 1


def replica_config_path(settings: Settings) -> Path:
    return (settings.var_dir / "redis-replica" / "redis.conf").resolve()


def sentinel_config_path(settings: Settings, index: int) -> Path:
    return (settings.var_dir / f"sentinel-{index + 1}" / "sentinel.conf").resolve()


def write_replica_config(settings: Settings) -> Path:
    path = replica_config_path(settings)
    write_node_config(
        settings, path, replica_port(settings), primary=primary_port(settings),
        elected=elected_primary_port(settings),
    )  # fmt: skip
    return path


def elected_primary_port(settings: Settings) -> int:
    """The port of the primary the sentinels name now; 0 when none answers (the first
    start: they start after the nodes)."""
    try:
        return redisauth.sentinel(settings).discover_master(settings.redis_master)[1]
    except (redis.RedisError, OSError):
        return 0


def write_sentinel_config(settings: Settings, index: int) -> Path:
    """The config of sentinel ``index``: what it learnt so far, else the first primary."""
    path = sentinel_config_path(settings, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    name, secret = settings.redis_master, quoted(ensure_password(settings))
    kept = _sentinel_lines(path)
    monitor = [line for line in kept if line.startswith("sentinel monitor ")] or [
        f"sentinel monitor {name} 127.0.0.1 {primary_port(settings)} {QUORUM}"
    ]
    down_ms = round(settings.local_sentinel_down_after_s * 1000)
    lines = [
        "bind 127.0.0.1",
        f"port {settings.redis_sentinels[index].port}",
        f"dir {quoted(str(path.parent))}",
        "daemonize no",
        f"requirepass {secret}",  # clients and the other sentinels
        *monitor[:1],
        f"sentinel auth-pass {name} {secret}",  # to the primary and the replicas
        f"sentinel down-after-milliseconds {name} {down_ms}",
        # Also how long a failed failover waits before the next try: a few times the above.
        f"sentinel failover-timeout {name} {max(3 * down_ms, 3000)}",
        f"sentinel parallel-syncs {name} 1",
        *(line for line in kept if line.split()[1] in LEARNT),
    ]
    write_private(path, "\n".join(lines) + "\n")
    return path


def _sentinel_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line.startswith("sentinel ") and len(line.split()) > 2]
