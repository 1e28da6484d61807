"""Guards: each isolation policy in a file of its own, with hooks that do nothing by default.

The runner calls ``before_*`` hooks in order and ``after_*`` / ``on_failure`` hooks in
reverse. A guard that fails is logged and never takes the scan or the worker down, except
for Celery's SoftTimeLimitExceeded, which always reaches Celery.
"""

from tasks.guards.attempts import AttemptsGuard
from tasks.guards.base import Guard, JobContext, ScanContext
from tasks.guards.breaker import BreakerGuard
from tasks.guards.cache import VerdictCacheGuard
from tasks.guards.crashes import CrashGuard
from tasks.guards.metrics import MetricsGuard
from tasks.guards.virusfirst import VirusFirstGuard
from tasks.guards.watchdog import WatchdogGuard

__all__ = ["Guard", "JobContext", "ScanContext", "default_guards"]


def default_guards() -> list[Guard]:
    # Order matters: the watchdog arms first; a cached verdict needs no backend; the breaker
    # is asked before an attempt is counted, so a skipped plugin does not count against a
    # message. (The virus-first guard acts on whole jobs, before any of that.)
    return [
        VirusFirstGuard(), WatchdogGuard(), MetricsGuard(), VerdictCacheGuard(), BreakerGuard(),
        AttemptsGuard(), CrashGuard(),
    ]  # fmt: skip
