"""A whole stack on Redis under Sentinel (a primary, a replica, three sentinels, as
``MAILSCAN_LOCAL_REDIS=sentinel`` starts them), and the failover the sentinel tests cause:
the primary killed with SIGKILL, the replica promoted, the old primary back as a replica."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis

from mailserver.supervisor import localsentinel
from mailserver.supervisor.redisnodes import REPLICA, SENTINELS, node_client, redis_names
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings
from tests.conftest import make_message, port, wait_for
from tests.console_session import add_admin

OFFSET = 12  # ports of a stack of its own (tests/conftest.py stack_env); the replica: 13
SENTINEL_PORTS = [port(16470) + n for n in range(len(SENTINELS))]
CONSOLE_PORT = port(18025) + 10 * OFFSET
HA_SETTINGS = {
    "local_redis": "sentinel",
    "redis_sentinels": ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS),
    # Short, for the test: a silent primary is replaced within seconds.
    "local_sentinel_down_after_s": "1",
    # Plugin faults that leave crashdumps, and mail delivered tagged when they hit: a 451 may
    # then come from the failover only.
    "av_plugins": "chaos,clamav",
    "chaos": "raise@0.05",
    "av_failure_policy": "deliver-tagged",
    "scan_deadline_s": "20",
    "health_probe_every_s": "2",
    "stats_every_s": "2",
    "console_port": str(CONSOLE_PORT),
}
SERVICES = ("clamd", "spamd", "av-worker", "spam-worker", "ops-worker", "beat", "mailserver",
            "console")  # fmt: skip
PROMOTION_TIMEOUT_S = 60.0


def start_ha(settings: Settings, env: dict[str, str]) -> Iterator[Stack]:
    """The stack, once every sentinel knows the replica and the two other sentinels (a
    failover needs two of them to agree)."""
    running = Stack(settings, env)
    try:
        running.start([*redis_names(settings), *SERVICES], progress=lambda _: None)
        add_admin(env)
        wait_for(lambda: sentinels_agree(settings), 60, "the sentinels to know each other")
        yield running
    finally:
        running.stop()


def sentinels_agree(settings: Settings) -> bool:
    name = settings.redis_master
    for sentinel_port in SENTINEL_PORTS:
        sentinel = node_client(settings, sentinel_port)
        if len(sentinel.sentinel_sentinels(name)) != len(SENTINELS) - 1:
            return False
        if len(redisauth.sentinel(settings).discover_slaves(name)) != 1:
            return False
    return True


def primary(settings: Settings) -> tuple[str, int]:
    return redisauth.sentinel(settings).discover_master(settings.redis_master)


def service_at(settings: Settings, address: tuple[str, int]) -> str:
    return REPLICA if address[1] == localsentinel.replica_port(settings) else "redis"


@dataclass
class Failover:
    """One primary killed and its replica promoted: which service died, the new primary,
    and when (time.monotonic)."""

    killed: str
    old: tuple[str, int]
    new: tuple[str, int]
    killed_at: float
    promoted_at: float

    @property
    def window_s(self) -> float:
        return self.promoted_at - self.killed_at


def kill_primary(
    stack: Stack, settings: Settings, during: Callable[[], None] | None = None
) -> Failover:
    """SIGKILL to the primary, then ``during`` while no primary answers; returns once the
    sentinels name the new one."""
    both_nodes_up(stack, settings)
    old = primary(settings)
    killed = service_at(settings, old)
    os.kill(stack.pid(killed), signal.SIGKILL)
    killed_at = time.monotonic()
    if during:
        during()
    wait_for(lambda: _promoted(settings, old), PROMOTION_TIMEOUT_S, "the replica's promotion")
    return Failover(killed, old, primary(settings), killed_at, time.monotonic())


def _promoted(settings: Settings, old: tuple[str, int]) -> bool:
    try:
        return primary(settings) != old
    except redis.RedisError:
        return False


def both_nodes_up(stack: Stack, settings: Settings) -> None:
    """Bring back a Redis killed before (a failover's old primary), and wait until it is a
    replica of the current primary that holds its data."""
    for name in [n for n in stack.exited() if n in ("redis", REPLICA)]:
        stack.restart(name)
    wait_for(lambda: _one_replica_in_sync(settings), 60, "the old primary back as a replica")
    wait_for(lambda: sentinels_agree(settings), 60, "the sentinels to see the replica")


def _one_replica_in_sync(settings: Settings) -> bool:
    try:
        current = primary(settings)
        other = localsentinel.replica_port(settings) + localsentinel.primary_port(settings)
        info = node_client(settings, other - current[1]).info("replication")
    except redis.RedisError:
        return False
    return (
        info["role"] == "slave"
        and info.get("master_port") == current[1]
        and info.get("master_link_status") == "up"
    )


def stream_mail(count: int, prefix: str) -> dict[str, bytes]:
    """Messages each with its own id (``X-Soak-Id``, as tests/test_soak.py counts them) and
    its own body (no verdict cache answers for another)."""
    return {
        f"{prefix}-{n:04d}": make_message(
            body=f"Message {prefix}-{n:04d} of a stream ({time.time_ns()}).",
            X_Soak_Id=f"{prefix}-{n:04d}",
        ).as_bytes()
        for n in range(count)
    }
