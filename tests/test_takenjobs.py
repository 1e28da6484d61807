"""A worker killed whole gets back the jobs it had taken when it starts again
(tasks/takenjobs.py): the taker of each job is noted beside kombu's unacked index, and goes
with it however the job leaves (ack, reject, restore)."""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from kombu import Connection, Queue
from kombu.transport import redis as kombu_redis

from tasks import redisauth
from tasks.takenjobs import Taker, takers_key
from tasks.transport import Transport
from tests.test_isolation import answered_soon_through
from tests.test_transport import KEYS, QUEUE

pytestmark = pytest.mark.integration
TAKERS = takers_key(KEYS["unacked_key"])

# Taken by a process of its own, then SIGKILL: nothing of kombu's runs at the end.
TAKE_AND_WAIT = textwrap.dedent("""
    import sys, time
    from kombu import Connection, Queue
    from tasks.takenjobs import Taker
    from tasks.transport import Transport
    from tests.test_transport import KEYS, QUEUE
    Taker.node = sys.argv[2]
    conn = Connection(sys.argv[1], transport=Transport, transport_options=KEYS)
    for _ in range(int(sys.argv[3])):
        conn.SimpleQueue(Queue(QUEUE, routing_key=QUEUE)).get(timeout=5)
    print("taken", flush=True)
    time.sleep(60)
""")


def _url(redis) -> str:
    return f"redis://127.0.0.1:{redis.connection_pool.connection_kwargs['port']}/0"


def _publish(conn: Connection, count: int, first: int = 0) -> None:
    queue = Queue(QUEUE, routing_key=QUEUE)
    for n in range(first, first + count):
        conn.Producer().publish({"n": n}, routing_key=QUEUE, declare=[queue])


def _taken_then_killed(url: str, node: str, count: int) -> None:
    taker = subprocess.Popen(
        [sys.executable, "-c", TAKE_AND_WAIT, url, node, str(count)],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )  # fmt: skip
    try:
        assert taker.stdout.readline().strip() == "taken"
    finally:
        taker.send_signal(signal.SIGKILL)
        taker.wait(10)


def test_a_restarted_worker_puts_back_only_what_its_earlier_start_took(guard_redis, monkeypatch):
    guard_redis.flushdb()
    url = _url(guard_redis)
    with Connection(url, transport=Transport, transport_options=KEYS) as conn:
        _publish(conn, 3)
        _taken_then_killed(url, "av@here", 2)  # its earlier start
        _taken_then_killed(url, "spam@here", 1)  # another worker, maybe alive
        assert guard_redis.hlen(KEYS["unacked_key"]) == 3
        assert guard_redis.llen(QUEUE) == 0
        monkeypatch.setattr(Taker, "node", "av@here")  # this process: the worker started again
        assert conn.default_channel.qos.put_back_earlier_starts("av@here") == 2
        assert guard_redis.llen(QUEUE) == 2
        assert guard_redis.hlen(KEYS["unacked_key"]) == 1
        queue = conn.SimpleQueue(Queue(QUEUE, routing_key=QUEUE))
        back = [queue.get(timeout=5) for _ in range(2)]
        assert sorted(m.payload["n"] for m in back) == [0, 1]
        assert all(m.delivery_info.get("redelivered") or m.headers.get("redelivered") for m in back)
        for message in back:
            message.ack()
    assert [v.split()[0] for v in guard_redis.hvals(TAKERS)] == [b"spam@here"]


def test_the_taker_leaves_with_the_job_on_ack_and_on_reject(guard_redis, monkeypatch):
    guard_redis.flushdb()
    monkeypatch.setattr(Taker, "node", "av@here")
    with Connection(_url(guard_redis), transport=Transport, transport_options=KEYS) as conn:
        _publish(conn, 3)
        queue = conn.SimpleQueue(Queue(QUEUE, routing_key=QUEUE))
        taken = [queue.get(timeout=5) for _ in range(3)]
        assert guard_redis.hlen(TAKERS) == 3
        assert set(guard_redis.hvals(TAKERS)) == {f"av@here {Taker.start}".encode()}
        taken[0].ack()
        taken[1].reject()
        taken[2].requeue()  # Celery's reject on a lost pool process
        assert guard_redis.hlen(TAKERS) == 0
        assert guard_redis.hlen(KEYS["unacked_key"]) == 0
        assert guard_redis.llen(QUEUE) == 1


def test_kombus_acknowledgement_emulation_is_the_one_read():
    """TakenQoS.append is kombu's with one more command in its pipeline, and every way out
    of the unacked index (ack, reject, restore) goes through ``_remove_from_indices``: a new
    kombu must be read before it is let in."""
    names = ("append", "ack", "reject", "_remove_from_indices", "restore_by_tag")
    source = "".join(inspect.getsource(getattr(kombu_redis.QoS, name)) for name in names)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "cad57f160d371edf"


def test_a_pool_killed_whole_mid_scan_runs_the_job_again_once_it_is_back(faults, fs):
    """SIGKILL of the av pool's whole process group while it scans: started again, it takes
    the job back at once, so the message is answered long before its scan deadline, and
    delivered once."""
    client = redisauth.connect(fs)

    def taken_by_av() -> bool:
        return any(v.startswith(b"av@") for v in client.hvals("unacked:takers"))

    def kill_the_pool() -> None:
        os.killpg(faults.pid("av-worker"), signal.SIGKILL)
        faults.restart("av-worker")

    answered_soon_through(fs, "poolkill-slow", taken_by_av, kill_the_pool)
    assert "are back on their queues" in faults.log_tail("av-worker", 200)
