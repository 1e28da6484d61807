"""Where Redis is, and how long message bytes stay in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks import setting_parsers as parse
from tasks.redisauth import masked
from tasks.setting_parsers import Endpoint
from tasks.settings.declare import folder, setting


@dataclass(frozen=True)
class RedisSettings:
    """The ``Redis`` section of the settings."""

    redis_url: str = setting(
        "redis://127.0.0.1:6390/0", parse.redis_url,
        "broker, result backend and message store (`rediss://` for TLS); may carry the "
        "password, `redis://:PASSWORD@host:port/0`. Shown everywhere (status, logs, "
        "`mailscan up`) with the password masked",
        section="Redis", mask=masked,
    )  # fmt: skip
    redis_password_file: Path = folder(
        "redis/password",
        "the Redis password when the URL carries none; every client (pools, front, beat, "
        "Flower, console, the `mailscan` command) reads it. `mailscan up` makes one there on "
        "its first start (mode 600) and gives it to its Redis through `var/redis/redis.conf` "
        "(mode 600), never on a command line. No file, no password",
    )
    redis_sentinels: tuple[Endpoint, ...] = setting(
        (), parse.sentinels,
        "Redis under Sentinel: the sentinels as `HOST:PORT,HOST:PORT,...`. Every client "
        "(pools, front, beat, Flower, console, the `mailscan` command) then asks them for the "
        "current primary and finds the new one after a failover; `MAILSCAN_REDIS_URL` gives "
        "only the password and the database number (and, for `MAILSCAN_LOCAL_REDIS=sentinel`, "
        "the first primary's port). The sentinels take the same password as Redis. Empty: "
        "the URL names Redis itself",
        shown="none; with `MAILSCAN_LOCAL_REDIS=sentinel`, the Redis port + 20000, +20001, +20002",
    )  # fmt: skip
    redis_master: str = setting(
        "mailscan", parse.master_name, "the primary's name, as the sentinels monitor it"
    )
    local_redis: str = setting(
        "single", parse.choice(*parse.LOCAL_REDIS),
        "what `mailscan up` starts: `single`, one Redis; `sentinel`, a primary (the URL's "
        "port), one replica (that port + 1) and three sentinels (`MAILSCAN_REDIS_SENTINELS`), "
        "all on loopback with the password",
    )  # fmt: skip
    local_sentinel_down_after_s: float = setting(
        5.0, parse.seconds,
        "with `MAILSCAN_LOCAL_REDIS=sentinel`: how long the primary must not answer before "
        "the sentinels promote the replica",
    )  # fmt: skip
    blob_ttl_s: int = setting(
        24 * 3600, parse.positive_int,
        "the longest message bytes stay in Redis for the pools; they are removed as soon as "
        "the message has its outcome, and kept in memory only (not in Redis's append-only file)",
    )  # fmt: skip
