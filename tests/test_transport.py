"""The workers' Redis transport keeps kombu's delivery guarantees while reusing one client
object: a job taken and not acknowledged stays in the unacked index until it is, and a job
of a consumer that went away comes back to its queue. A channel whose connection has let go
fails as a lost connection, which Celery survives."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kombu import Connection, Queue
from kombu.message import Message

from tasks import redisauth
from tasks.transport import Transport

pytestmark = pytest.mark.integration
QUEUE = "transport-probe"  # nobody else consumes it
# Bookkeeping keys of their own: the pools of the shared stack use kombu's defaults.
KEYS = {
    "unacked_key": "probe-unacked",
    "unacked_index_key": "probe-unacked-index",
    "unacked_mutex_key": "probe-unacked-mutex",
}


def connection(settings) -> Connection:
    return Connection(redisauth.client_url(settings), transport=Transport, transport_options=KEYS)


def publish_and_take(conn: Connection) -> Message:
    queue = Queue(QUEUE, routing_key=QUEUE)
    conn.Producer().publish({"n": 0}, routing_key=QUEUE, declare=[queue])
    return conn.SimpleQueue(queue).get(timeout=5)


def test_one_client_object_per_pool(stack, settings):
    with connection(settings) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._disconnect_pools()  # what kombu does after a lost connection
        again = channel._create_client()
        assert again is not first
        assert again.connection_pool is channel.pool
        assert again.ping()


def test_taken_jobs_are_tracked_until_acked_and_come_back_when_not(stack, settings):
    client = redisauth.connect(settings)
    client.delete(QUEUE, *KEYS.values())
    queue = Queue(QUEUE, routing_key=QUEUE)
    with connection(settings) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, routing_key=QUEUE, declare=[queue])
        taken = [conn.SimpleQueue(queue).get(timeout=5) for _ in range(3)]
        assert client.hlen(KEYS["unacked_key"]) == 3
        taken[0].ack()
        assert client.hlen(KEYS["unacked_key"]) == 2
        # Two jobs left unacknowledged when the consumer goes away: kombu puts them back.
    with connection(settings) as conn:
        back = [conn.SimpleQueue(queue).get(timeout=5) for _ in range(2)]
        for message in back:
            message.ack()
    assert sorted(message.payload["n"] for message in back) == [1, 2]
    assert client.llen(QUEUE) == 0
    assert client.hlen(KEYS["unacked_key"]) == 0


def test_workers_use_it_and_other_processes_do_not(settings):
    probe = (
        "from celery import signals; from tasks.celery import app; "
        "app.loader.import_default_modules(); "
        "print(app.connection_for_write().as_uri()); "
        "signals.celeryd_init.send(sender='probe', instance=None, conf=app.conf, options={}); "
        "print(app.connection_for_write().as_uri())"
    )
    env = {"MAILSCAN_REDIS_URL": settings.redis_url, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].startswith("redis://")  # what Flower and the logs of other services show
    assert out[1].startswith("tasks.transport:Transport://")


def test_a_channel_whose_connection_let_go_fails_as_a_lost_connection(guard_redis):
    guard_redis.flushdb()
    port = guard_redis.connection_pool.connection_kwargs["port"]
    conn = Connection(f"redis://127.0.0.1:{port}/0", transport=Transport, transport_options=KEYS)
    taken = publish_and_take(conn)
    channel = conn.default_channel
    # Where Celery's second close of a channel finds it after Redis went away with a BRPOP
    # pending: the first close stopped at that read, and the connection let go of the
    # transport. kombu then failed with AttributeError, which ends a worker.
    conn._do_close_transport()
    with pytest.raises(Transport.connection_errors):
        channel.close()  # it restores the unacked job through a pool made anew
    with pytest.raises(Transport.connection_errors):
        taken.ack()  # a late ack of a job the worker ran meanwhile
    # Nothing lost: the job waits in the unacked index for the visibility timeout.
    assert guard_redis.hlen(KEYS["unacked_key"]) == 1
    assert guard_redis.llen(QUEUE) == 0


def test_under_sentinel_workers_use_its_twin(settings):
    """Also after switching to another sentinel's address, as a worker does when the one
    it used does not answer: kombu parses that address again, and its own transport ended
    the worker at the next lost connection."""
    probe = (
        "from celery import signals; from tasks.celery import app; "
        "app.loader.import_default_modules(); "
        "signals.celeryd_init.send(sender='probe', instance=None, conf=app.conf, options={}); "
        "conn = app.connection_for_read(); print(conn.as_uri()); "
        "conn.switch(conn.alt[1]); print(type(conn.transport)); "
        "conn.switch(conn.alt[0]); print(type(conn.transport))"
    )
    env = {"MAILSCAN_REDIS_URL": settings.redis_url, "PATH": "",
           "MAILSCAN_REDIS_SENTINELS": "127.0.0.1:26390,127.0.0.1:26391"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    first, *switched = out.splitlines()
    assert first.startswith("tasks.transport:SentinelTransport://"), out
    assert switched == ["<class 'tasks.transport.SentinelTransport'>"] * 2, out
