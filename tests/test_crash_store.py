"""The crash store when Redis goes away in the middle of a save: every incident is counted
once, whether the connection died before Redis did the work or after it, before the reply."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tasks.crashes import records as crashdumps
from tasks.crashes.records import Incident
from tasks.crashes.store import CrashStore


class DropsOneCommand(redis.Redis):
    """A client whose connection dies at its n-th command, before or after Redis ran it."""

    def __init__(self, fail_at: int, after_running: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_at, self.after_running, self.sent = fail_at, after_running, 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent += 1
        if self.sent != self.fail_at:
            return super().execute_command(*args, **options)
        if self.after_running:
            super().execute_command(*args, **options)
        raise redis.ConnectionError("connection lost (test)")


def incident() -> dict[str, Any]:
    return crashdumps.record(Incident("crash", "av", {"name": "engine"}, "job-1", {"blob": "b"}))


@pytest.mark.parametrize("after_running", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_save_cut_off_by_a_lost_connection_is_counted_once(
    guard_redis, tmp_path, fail_at, after_running
):
    guard_redis.flushdb()
    kwargs = guard_redis.connection_pool.connection_kwargs
    flaky = DropsOneCommand(fail_at, after_running, host=kwargs["host"], port=kwargs["port"])
    dump = incident()
    CrashStore(flaky, tmp_path).save(dump)
    CrashStore(guard_redis, tmp_path).drain()
    store = CrashStore(guard_redis, tmp_path)
    assert [g["count"] for g in store.groups()] == [1]
    assert store.get(dump["id"]) == dump
    assert not list((tmp_path / "pending").glob("*.json"))


def test_repeats_in_one_window_count_without_a_full_record_each(guard_redis, tmp_path):
    guard_redis.flushdb()
    store = CrashStore(guard_redis, tmp_path)
    first, repeat = incident(), incident()
    repeat["worker"]["pid"] += 1  # another process failing the same way
    assert [store.save(first), store.save(repeat), store.save(first)] == [
        "redis", "counted", "duplicate"]  # fmt: skip
    assert [g["count"] for g in store.groups()] == [2]
    assert store.get(first["id"]) == first
    assert store.get(repeat["id"]) is None
