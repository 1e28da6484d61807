"""The antivirus verdict cache: identical content is scanned once per signature version.

The key is the engine's identity (name and signature database version, so a signature update
empties the cache by itself) and a digest of the content an engine judges: the MIME headers
that decide how the body is read, and the body. Headers such as To, Date or Message-ID
differ for every copy of a bulk mailing and are left out, so a campaign with the same
attachment is scanned once. Spam verdicts are never cached: they depend on every header.
"""

from __future__ import annotations

import hashlib
import json

from tasks.guards.base import Guard, JobContext, Reads, ScanContext
from tasks.plugins.base import Verdict
from tasks.wire.blobs import content_key
from tasks.wire.keys import AV_POOL, AVCACHE_KEY

CACHE_TTL_S = 6 * 3600


class VerdictCacheGuard(Guard):
    """The content key comes with the job (the SMTP front computes it with the other digests
    of the message, tasks/wire/blobs.py), so the cache is read in the fetch's round trip."""

    def __init__(self) -> None:
        self._content_key = ""

    def plan_reads(self, job: JobContext, reads: Reads) -> None:
        self._content_key = job.ref.get("content", "") if job.pool == AV_POOL else ""
        for plugin in job.plugins:
            key = self._key_for(plugin.cache_identity())
            if key:
                reads.add(_cached(plugin.name), "get", key)

    def before_job(self, job: JobContext) -> None:
        if job.pool == AV_POOL and not self._content_key:
            self._content_key = content_key(job.message)  # a job from before the front did

    def _key_for(self, identity: str | None) -> str | None:
        if not self._content_key or identity is None:
            return None
        engine = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return AVCACHE_KEY.format(engine=engine, content=self._content_key)

    def _key(self, scan: ScanContext) -> str | None:
        return self._key_for(scan.plugin.cache_identity())

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        key = self._key(scan)
        if not key:
            return None
        cached = scan.job.read(_cached(scan.plugin.name), lambda: scan.job.redis.get(key))
        if cached is None:
            return None
        return Verdict.from_record({**json.loads(cached), "detail": "cached", "elapsed_ms": 0.0})

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        key = self._key(scan)
        if key and verdict.status in ("clean", "infected") and verdict.detail != "cached":
            scan.job.writes.set(key, json.dumps(verdict.to_record()), ex=CACHE_TTL_S)


def _cached(plugin: str) -> str:
    return f"avcache:{plugin}"
