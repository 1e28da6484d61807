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
import re

from tasks.constants import AV_POOL, AVCACHE_KEY
from tasks.guards.base import Guard, JobContext, ScanContext
from tasks.plugins.base import Verdict

CACHE_TTL_S = 6 * 3600
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The headers that change how the body is decoded: a different value must be a different key.
_DECODING_HEADERS = re.compile(
    rb"(?im)^(content-type|content-transfer-encoding|mime-version)[ \t]*:(.*(?:\r?\n[ \t].*)*)"
)


def content_key(message: bytes) -> str:
    split = _HEADER_END.search(message)
    head, body = (message[: split.start()], message[split.end() :]) if split else (message, b"")
    digest = hashlib.sha256()
    for name, value in _DECODING_HEADERS.findall(head):
        digest.update(name.lower() + b":" + b" ".join(value.split()) + b"\n")
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


class VerdictCacheGuard(Guard):
    def __init__(self) -> None:
        self._content_key = ""

    def before_job(self, job: JobContext) -> None:
        self._content_key = content_key(job.message) if job.pool == AV_POOL else ""

    def _key(self, scan: ScanContext) -> str | None:
        identity = scan.plugin.cache_identity()
        if not self._content_key or identity is None:
            return None
        engine = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return AVCACHE_KEY.format(engine=engine, content=self._content_key)

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        key = self._key(scan)
        cached = scan.job.redis.get(key) if key else None
        if cached is None:
            return None
        return Verdict.from_dict({**json.loads(cached), "detail": "cached", "elapsed_ms": 0.0})

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        key = self._key(scan)
        if key and verdict.status in ("clean", "infected") and verdict.detail != "cached":
            scan.job.writes.set(key, json.dumps(verdict.as_dict()), ex=CACHE_TTL_S)
