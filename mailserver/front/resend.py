"""Scan jobs sent again after Redis came back, for messages still waiting for a verdict.

A pool that loses its Redis connection while it runs a job cancels the job and puts it back
on its queue; when Redis is down at that moment (a restart, a failover), putting it back
fails and the job is gone until Redis's visibility timeout, an hour, brings it back. The
message's bytes in Redis are kept out of its persistence (tasks/wire/blobs.py), so a
restart loses them too. Its message would wait for its whole scan deadline. So when the
verdict subscriber is subscribed again (mailserver/front/verdicts.py), each message with a
job still without a result is submitted again as it was first: its bytes, then both jobs
under the same ids. A job that was not lost then runs twice; its message takes the first
verdict.

The message's attempts count (tasks/guards/attempts.py) is cleared first: a job Redis took
away was ended by the lost connection, not by its content, and a message caught by a few
restarts in a row must not be given up as poison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from mailserver.front.verdicts import VerdictWaiter
from tasks.wire.keys import ATTEMPTS_KEY

log = logging.getLogger(__name__)


class JobResender:
    """How to submit each waiting job's message again, by job id; the waiter calls
    ``resend`` once subscribed again."""

    def __init__(self, waiter: VerdictWaiter | None, redis: Any = None) -> None:
        self._submit_again: dict[str, tuple[str, Callable[[], object]]] = {}
        self._redis = redis
        if waiter is not None:  # None: a pipeline that never scans (tests of its other steps)
            waiter.resend = self.resend

    def expect(
        self, task_ids: Iterable[str], message_id: str, submit_again: Callable[[], object]
    ) -> None:
        for task_id in task_ids:
            self._submit_again[task_id] = (message_id, submit_again)

    def done(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._submit_again.pop(task_id, None)

    def resend(self, task_ids: list[str]) -> int:
        """Submit again the messages of these jobs, each once; how many. Called on a thread."""
        found = (self._submit_again.get(task_id) for task_id in task_ids)
        messages = dict(message for message in found if message)
        sent = 0
        for message_id, submit_again in messages.items():
            try:
                if self._redis is not None:
                    self._redis.delete(ATTEMPTS_KEY.format(message=message_id))
                submit_again()
                sent += 1
            except RedisError as err:
                log.warning("could not submit a waiting message again: %s", err)
        if sent:
            log.warning("Redis came back: %d waiting messages submitted again", sent)
        return sent
