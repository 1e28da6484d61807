"""The one narrow interface every scanner plugin implements, and the verdict it returns."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tasks.errors import BackendUnavailable
from tasks.settings import Settings
from tasks.wire.blobs import Message
from tasks.wire.verdicts import EngineVerdict, Status

T = TypeVar("T")
# A daemon restarting (clamd reloading, spamd respawning) refuses for a moment: two quick
# tries more cover it, and stay far inside any soft time limit.
RECONNECT_DELAYS_S = (0.1, 0.4)

# The verdict is part of the contract with the front (tasks/wire/verdicts.py); plugins know
# it by this name.
Verdict = EngineVerdict


@dataclass
class Plugin(ABC):
    """A scanner. ``scan`` returns a Verdict or raises ScanError; it never swallows
    Celery's SoftTimeLimitExceeded. ``health`` raises BackendUnavailable when the backend
    does not answer and returns its version otherwise."""

    name: ClassVar[str]
    pools: ClassVar[tuple[str, ...]]
    settings: Settings
    pool: str = "av"

    @abstractmethod
    def scan(self, message: Message) -> Verdict: ...

    def health(self) -> str:
        return "ok"

    def backend_version(self) -> str:
        """What this engine last learnt of its backend's version, for crashdumps; never asks
        the backend (it may be the thing that just failed)."""
        return ""

    def cache_identity(self) -> str | None:
        """Name and signature version, when this engine's verdicts may be cached by content
        (the same bytes, the same signatures, the same answer); None never caches."""
        return None

    def size_limit(self) -> int | None:
        """The largest message this engine looks at, or None for any size. When every engine
        of a job has a limit below the message's size, the job skips them all without
        fetching the message (a 25 MB message is not read to be skipped)."""
        return None

    def too_large(self, started: float) -> Verdict:
        return self.verdict("skipped", started, detail=f"larger than {self.size_limit()} bytes")

    def reset(self) -> None:  # noqa: B027 - most plugins hold no connection to drop
        """Drop connections and caches; called after a failure so the next scan starts clean."""

    def describe(self) -> dict[str, Any]:
        """Name, version and configuration without secrets, for status pages and crashdumps."""
        return {"name": self.name, "pool": self.pool}

    def reconnecting(self, call: Callable[[], T]) -> T:
        """Run ``call``; after a refused or dropped connection, try again with backoff."""
        for delay_s in (*RECONNECT_DELAYS_S, None):
            try:
                return call()
            except BackendUnavailable as err:
                if delay_s is None or err.timed_out:
                    raise
                time.sleep(delay_s)
        raise AssertionError("unreachable")

    def verdict(self, status: Status, started: float, **details: Any) -> Verdict:
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Verdict(engine=self.name, status=status, elapsed_ms=round(elapsed_ms, 3), **details)
