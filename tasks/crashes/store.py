"""Where crashdumps are kept: Redis, the one store every host shares, or a local spool folder
when Redis cannot take them; ``drain`` moves the spooled ones to Redis later. A crashdump is
never lost because the broker is down.

Every incident counts in its group (same signature), but only the first of each window of
``full_every_s`` seconds keeps a full record: a plugin that fails on every message would
otherwise write one record per message into a Redis that never evicts, until every write,
mail included, fails.

The first incident of a signature starts a new group, which raises an alert for the
administrator (tasks/alerts/)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import redis

from tasks import redisauth
from tasks.alerts.events import raise_alert
from tasks.settings import Settings
from tasks.wire.jobids import parse_job_id
from tasks.wire.keys import (
    CRASHDUMP_INDEX,
    CRASHDUMP_KEY,
    CRASHDUMP_ONCE_KEY,
    CRASHDUMPS_OF_MESSAGE_KEY,
    CRASHGROUP_INDEX,
    CRASHGROUP_KEY,
    CRASHGROUP_WINDOW_KEY,
)

log = logging.getLogger(__name__)
ONCE_TTL_S = 3600
# As long as the message log keeps a message by default (MAILSCAN_MESSAGE_LOG_DAYS).
MESSAGE_LINK_TTL_S = 30 * 86400
FULL_EVERY_S = 60.0
# KEYS: once mark, window mark, record, record index, group, group index.
# ARGV: id, record JSON, time, signature, once TTL, window TTL, group field/value pairs.
# Returns where the record went, and 1 when its group is new.
SAVE_SCRIPT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[5]) then return {'duplicate', 0} end
local full = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[6])
if full then
  redis.call('SET', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[5], 'last_id', ARGV[1])
end
local new = redis.call('HSETNX', KEYS[5], 'first_seen', ARGV[3])
redis.call('HINCRBY', KEYS[5], 'count', 1)
redis.call('HSET', KEYS[5], unpack(ARGV, 7))
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[4])
if full then return {'redis', new} end
return {'counted', new}
"""


class CrashStore:
    """Save, list and read crashdump records."""

    def __init__(
        self, client: redis.Redis, spool_dir: Path, full_every_s: float = FULL_EVERY_S
    ) -> None:
        self.redis = client
        self.pending = spool_dir / "pending"
        self.full_every_s = full_every_s
        self._save_script = client.register_script(SAVE_SCRIPT)

    def save(self, dump: dict[str, Any]) -> str:
        """Store the record; return "redis", "counted" (only its group counted it: a record
        of the same failure was kept in this window), "spooled" or "duplicate"."""
        try:
            return self._stored(dump)
        except redis.RedisError as err:
            log.warning("crashdump %s kept locally, Redis unavailable: %s", dump["id"], err)
            self._to_spool(dump)
            return "spooled"

    def _stored(self, dump: dict[str, Any]) -> str:
        saved = self._to_redis(dump)
        if saved != "duplicate":
            self._link_to_message(dump, saved == "redis")
        return saved

    def _link_to_message(self, dump: dict[str, Any], full: bool) -> None:
        """The message's page lists the record of its failure: its own, or, when only its
        group counted it, the group's last full record of the same failure."""
        job = parse_job_id(dump.get("job_id", ""))
        if job is None:
            return  # a health probe's, or a job not made by the front
        record_id = dump["id"] if full else self.redis.hget(
            CRASHGROUP_KEY.format(signature=dump["signature"]), "last_id")  # fmt: skip
        if not record_id:
            return
        key = CRASHDUMPS_OF_MESSAGE_KEY.format(blob_id=job.blob_id)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, record_id).expire(key, MESSAGE_LINK_TTL_S).execute()

    def of_message(self, blob_id: str) -> list[str]:
        """The ids of the records still kept of failures on the message's path."""
        ids = sorted(i.decode() for i in self.redis.smembers(
            CRASHDUMPS_OF_MESSAGE_KEY.format(blob_id=blob_id)))  # fmt: skip
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:  # one round trip for all
            for dump_id in ids:
                pipe.exists(CRASHDUMP_KEY.format(id=dump_id))
            found = pipe.execute()
        return [dump_id for dump_id, there in zip(ids, found, strict=True) if there]

    def _to_redis(self, dump: dict[str, Any]) -> str:
        # One script, so Redis does all of it or none: a connection lost between the
        # "once" mark and the counting would leave the spooled copy looking like a
        # duplicate, and the incident uncounted.
        window = int(dump["ts"] // self.full_every_s)
        keys = [
            # Celery can report one hard time limit twice: one record per job and process.
            CRASHDUMP_ONCE_KEY.format(job_id=dump["job_id"], pid=dump["worker"]["pid"]),
            # The window of the incident's own time, so a record drained from the local
            # spool later counts in the window it happened in.
            CRASHGROUP_WINDOW_KEY.format(signature=dump["signature"], window=window),
            CRASHDUMP_KEY.format(id=dump["id"]),
            CRASHDUMP_INDEX,
            CRASHGROUP_KEY.format(signature=dump["signature"]),
            CRASHGROUP_INDEX,
        ]
        fields = [item for pair in _group_fields(dump).items() for item in pair]
        args = [dump["id"], json.dumps(dump), dump["ts"], dump["signature"], ONCE_TTL_S,
                2 * math.ceil(self.full_every_s), *fields]  # fmt: skip
        saved, new_group = self._save_script(keys=keys, args=args, client=self.redis)
        if new_group:
            _announce_group(self.redis, dump)
        return saved.decode() if isinstance(saved, bytes) else saved

    def _to_spool(self, dump: dict[str, Any]) -> None:
        self.pending.mkdir(parents=True, exist_ok=True)
        staging = self.pending / f".{dump['id']}.tmp"
        with open(staging, "w") as handle:
            json.dump(dump, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, self.pending / f"{dump['id']}.json")

    def drain(self) -> int:
        """Move spooled records to Redis; return how many moved. Stops at the first failure."""
        moved = 0
        for path in sorted(self.pending.glob("*.json")) if self.pending.is_dir() else []:
            try:
                self._stored(json.loads(path.read_text()))
            except redis.RedisError:
                break
            path.unlink()
            moved += 1
        return moved

    def ids(self, newest_first: bool = True, limit: int = 1000) -> list[str]:
        found = self.redis.zrange(CRASHDUMP_INDEX, 0, limit - 1, desc=newest_first)
        return [i.decode() for i in found]

    def get(self, dump_id: str) -> dict[str, Any] | None:
        if not dump_id.isalnum():
            return None
        stored = self.redis.get(CRASHDUMP_KEY.format(id=dump_id))
        return json.loads(stored) if stored else None

    def records(self, limit: int = 1000) -> list[dict[str, Any]]:
        ids = self.ids(limit=limit)
        stored = self.redis.mget([CRASHDUMP_KEY.format(id=i) for i in ids]) if ids else []
        return [json.loads(s) for s in stored if s]

    def groups(self) -> list[dict[str, Any]]:
        signatures = [s.decode() for s in self.redis.zrange(CRASHGROUP_INDEX, 0, -1, desc=True)]
        groups = []
        for sig in signatures:
            fields = {k.decode(): v.decode() for k, v in self.redis.hgetall(
                CRASHGROUP_KEY.format(signature=sig)).items()}  # fmt: skip
            groups.append({"signature": sig, **fields, "count": int(fields.get("count", 0))})
        return groups


def _announce_group(client: redis.Redis, dump: dict[str, Any]) -> None:
    plugin, kind = dump["plugin"].get("name", ""), dump["kind"]
    exception = dump["exception"]["type"]
    summary = f"new crash group: {plugin} in the {dump['pool']} pool, {kind} ({exception})"
    raise_alert(client, "crash-group", summary, plugin=plugin, pool=dump["pool"],
                exception=exception, signature=dump["signature"], crashdump=dump["id"])  # fmt: skip


def _group_fields(dump: dict[str, Any]) -> dict[str, Any]:
    return {
        "last_seen": dump["ts"],
        "plugin": dump["plugin"].get("name", ""),
        "kind": dump["kind"],
        "exception": dump["exception"]["type"],
        "pool": dump["pool"],
    }


def open_store(settings: Settings) -> CrashStore:
    client = redisauth.connect(settings, socket_timeout=5, socket_connect_timeout=3)
    return CrashStore(client, settings.crashdump_dir, settings.crashdump_full_every_s)
