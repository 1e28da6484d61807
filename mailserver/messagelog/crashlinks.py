"""A message's record with the crashdumps of the failures on its path: the pools link each
record to its message in Redis as they save it (tasks/crashes/store.py), after the message
log's record may already be written. Without Redis the record is shown as logged."""

from __future__ import annotations

import dataclasses

import redis

from mailserver.messagelog.record import MessageRecord
from tasks.crashes.store import CrashStore


def with_crashdumps(record: MessageRecord, crashes: CrashStore) -> MessageRecord:
    try:
        linked = crashes.of_message(record.spool_id)
    except redis.RedisError:
        return record
    return dataclasses.replace(record, crashdumps=tuple(sorted({*record.crashdumps, *linked})))
