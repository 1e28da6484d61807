"""Guards: each isolation policy in a file of its own, with hooks that do nothing by default.

The runner calls ``before_*`` hooks in order and ``after_*`` / ``on_failure`` hooks in
reverse. A guard that fails is logged and never takes the scan or the worker down, except
for Celery's SoftTimeLimitExceeded, which always reaches Celery.
"""

from tasks.guards.base import Guard, JobContext, ScanContext, default_guards

__all__ = ["Guard", "JobContext", "ScanContext", "default_guards"]
