"""The local stack's Redis services: one Redis (``MAILSCAN_LOCAL_REDIS=single``), or a
primary, a replica and three sentinels (``sentinel``, mailserver/supervisor/localsentinel.py).
Each is ready when it answers on its own port: the sentinels are not asked for the primary
before they run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import redis

from mailserver.supervisor import localredis, localsentinel
from mailserver.supervisor.service import Service, binary
from tasks import redisauth
from tasks.settings import Settings

REPLICA = "redis-replica"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def redis_names(settings: Settings) -> list[str]:
    """The services that make this stack's Redis, in the order they start."""
    if settings.local_redis != "sentinel":
        return ["redis"]
    return ["redis", REPLICA, *SENTINELS]


def redis_services(settings: Settings) -> list[Service]:
    if settings.local_redis != "sentinel":
        return [_node(settings, "redis", localredis.config_path(settings), localredis.write_config)]
    primary = _node(settings, "redis", localredis.config_path(settings), _primary_config)
    replica = _node(
        settings, REPLICA, localsentinel.replica_config_path(settings),
        localsentinel.write_replica_config,
    )  # fmt: skip
    return [primary, replica, *(_sentinel(settings, n) for n in range(len(SENTINELS)))]


def node_client(settings: Settings, port: int) -> redis.Redis:
    """A client of one Redis (or sentinel) of this machine, whatever its role."""
    secret = localredis.ensure_password(settings)
    return redis.Redis(port=port, password=secret or None, socket_timeout=1)


def _primary_config(settings: Settings) -> Path:
    path = localredis.config_path(settings)
    elected = localsentinel.elected_primary_port(settings)  # after a failover: not this one
    localredis.write_node_config(
        settings, path, localsentinel.primary_port(settings), elected=elected
    )
    return path


def _node(
    settings: Settings, name: str, config: Path, write: Callable[[Settings], Path]
) -> Service:
    argv = [binary("redis-server", "redis-server"), str(config)]
    port = _port_in(settings, name)

    def ready() -> bool:
        if settings.local_redis != "sentinel":
            return bool(redisauth.connect(settings, socket_timeout=1).ping())
        role = node_client(settings, port).info("replication")
        # A replica serves no stale answers: ready once it holds the primary's data.
        return role["role"] == "master" or role.get("master_link_status") == "up"

    return Service(name, argv, ready, port=port, before_start=functools.partial(write, settings))


def _port_in(settings: Settings, name: str) -> int:
    if name == REPLICA:
        return localsentinel.replica_port(settings)
    return localsentinel.primary_port(settings)


def _sentinel(settings: Settings, index: int) -> Service:
    config = localsentinel.sentinel_config_path(settings, index)
    argv = [binary("redis-sentinel", "redis-sentinel"), str(config)]
    port = settings.redis_sentinels[index].port

    def ready() -> bool:
        found = node_client(settings, port).sentinel_get_master_addr_by_name(settings.redis_master)
        return bool(found)

    def configure() -> None:
        localsentinel.write_sentinel_config(settings, index)

    return Service(SENTINELS[index], argv, ready, port=port, before_start=configure)
