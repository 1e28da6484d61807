"""The backlog autoscaler's own decisions: how many processes, and what a worker's reply means."""

from types import SimpleNamespace

from beat import autoscaler
from beat.autoscaler import step, target
from tasks.poolsize import pool_size, refusal
from tasks.settings import load_settings


def test_grows_at_once_for_the_backlog_and_shrinks_one_at_a_time():
    assert target(depth=12, current=2, low=1, high=8, per_process=4) == 3
    assert target(depth=100, current=2, low=1, high=8, per_process=4) == 8
    assert target(depth=0, current=3, low=1, high=8, per_process=4) == 2
    assert target(depth=0, current=1, low=1, high=8, per_process=4) == 1
    assert target(depth=5, current=2, low=1, high=8, per_process=4) == 2


def test_a_worker_that_refuses_says_why_and_silence_is_a_refusal_too():
    worker = "av@host"
    assert refusal([{worker: {"ok": "pool will shrink"}}], worker) is None
    busy = [{"other@host": {"ok": "x"}}, {worker: {"error": "Can't shrink pool. All busy!"}}]
    assert refusal(busy, worker) == "Can't shrink pool. All busy!"
    assert refusal([], worker) == "no reply"
    assert refusal(None, worker) == "no reply"


def test_an_empty_process_list_is_a_pool_with_no_process_left():
    assert pool_size({"pool": {"processes": [], "max-concurrency": 2}}) == 0
    assert pool_size({"pool": {"processes": [11, 12, 13], "max-concurrency": 2}}) == 3
    assert pool_size({"pool": {"max-concurrency": 4}}) == 4  # a pool without processes


class Workers:
    """Workers as a step sees them: each reports ``processes`` until told otherwise, and
    grants every resize (a prefork pool lists a shrunk process until it has exited)."""

    def __init__(self, processes: int) -> None:
        self.processes, self.resizes = processes, []
        self.control = self

    def inspect(self, timeout: float):
        return self

    def stats(self):
        # As a prefork worker reports: its limit at start stays whatever the pool now runs.
        pool = {"processes": list(range(self.processes)), "max-concurrency": 2}
        return {"av@host": {"pool": pool}}

    def pool_shrink(self, n, destination, reply, timeout):
        self.resizes.append(-n)
        return [{destination[0]: {"ok": "pool will shrink"}}]

    def pool_grow(self, n, destination, reply, timeout):
        self.resizes.append(n)
        return [{destination[0]: {"ok": "pool will grow"}}]


class Store:
    """The few Redis calls a step makes, in memory."""

    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}

    def llen(self, _: str) -> int:
        return 0

    def hget(self, _: str, field: str) -> str | None:
        return self.hashes.get(field)

    def hset(self, _: str, field: str, value: str) -> None:
        self.hashes[field] = value


def test_a_step_waits_for_the_last_resize_to_show_before_it_resizes_again(monkeypatch):
    settings = load_settings({})
    workers, store, now = Workers(processes=2), Store(), [1000.0]
    monkeypatch.setattr(autoscaler, "time", SimpleNamespace(time=lambda: now[0]))
    step(workers, store, "av", settings)
    assert workers.resizes == [-1]
    # The shrunk process is still listed: shrinking again would leave none.
    for _ in range(5):
        now[0] += 1.0
        assert step(workers, store, "av", settings)["av@host"]["waiting"] == 2
    assert workers.resizes == [-1]
    workers.processes = 1  # it has exited: the pool is at its minimum
    now[0] += 1.0
    step(workers, store, "av", settings)
    assert workers.resizes == [-1]
    # A report that goes on not showing a resize (a restarted worker, say) is believed once
    # SETTLE_S has passed.
    workers.processes, now[0] = 3, now[0] + 1.0
    step(workers, store, "av", settings)
    assert workers.resizes == [-1, -1]
    now[0] += autoscaler.SETTLE_S - 1.0
    step(workers, store, "av", settings)
    assert workers.resizes == [-1, -1]
    now[0] += 2.0
    step(workers, store, "av", settings)
    assert workers.resizes == [-1, -1, -1]


def test_a_pool_left_without_processes_is_grown_back_to_its_minimum():
    workers = Workers(processes=0)
    step(workers, Store(), "av", load_settings({}))
    assert workers.resizes == [1]
