"""Whether big messages reach the pools through this front's spool, or through Redis.

A pool that cannot read the spool (on another machine, or with a folder of its own) is found
out two ways: its job answers that it could not read a message (mailserver/front/pipeline.py scans
that message again through Redis), and its health probe names the spool it sees
(tasks/health.py), every ``MAILSCAN_HEALTH_PROBE_EVERY_S``. The probes tell the front before
its first big message, and tell it when every pool sees the spool again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A probe this many intervals old no longer speaks for its worker (stopped, or beat is).
PROBES_FRESH_FOR = 3


@dataclass
class SpoolSharing:
    spool_id: str
    spool_dir: Path
    probe_every_s: float
    stopped_at: float | None = None  # when big mail started going through Redis

    @property
    def shared(self) -> bool:
        return self.stopped_at is None

    def stop(self, pool: str, worker: str, how: str) -> None:
        """Big messages go through Redis from now on: a pool cannot read them from here.
        ``pool`` and ``worker``: who said so, in a job's verdict or a health probe."""
        if self.shared:
            self.stopped_at = time.time()
            log.warning(
                "the %s pool (%s) cannot read big messages from the spool at %s (%s): they "
                "go through Redis until every pool's health probe sees the spool (or this "
                "front restarts). Share the spool folder with every pool (read-only), or set "
                "MAILSCAN_SHARED_SPOOL_FROM_BYTES=0",
                pool, worker, self.spool_dir, how,
            )  # fmt: skip

    def follow(self, probes: dict[str, dict[str, Any]], now: float) -> None:
        """What the pools' latest health probes say about the spool."""
        fresh = [p for p in probes.values() if self._fresh(p, now) and "spool" in p]
        blind = [p for p in fresh if p["spool"].get("id") != self.spool_id]
        if blind:
            seen = blind[0]["spool"].get("id")
            how = f"its health probe found {'another spool' if seen else 'no spool'} there"
            self.stop(blind[0].get("pool", "?"), blind[0].get("worker", "?"), how)
        elif fresh and not self.shared and min(p["at"] for p in fresh) > (self.stopped_at or 0):
            # Every pool has probed since sharing stopped, and every one sees the spool.
            self.stopped_at = None
            log.warning("every pool's health probe sees the spool at %s: big messages reach "
                        "the pools through it again", self.spool_dir)  # fmt: skip

    def _fresh(self, probe: dict[str, Any], now: float) -> bool:
        return now - probe.get("at", 0) < PROBES_FRESH_FOR * self.probe_every_s
