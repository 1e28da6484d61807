"""The backlog autoscaler's own decisions: how many processes, and what a worker's reply means."""

from beat.autoscaler import refusal, target


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
