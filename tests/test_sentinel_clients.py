"""Each kind of Redis client follows a failover without a restart: the primary is killed with
SIGKILL, the sentinels promote the replica, and a client made before goes on working on the
new primary. One test per kind: the broker and the pools, the result backend and the front's
verdict waiter, the message store and job publisher, the console, beat's lock, the crash
store. Real redis-server and redis-sentinel (tests/sentinel_stack.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.exceptions import OperationalError

from mailserver.front.verdicts import VerdictWaiter
from mailserver.supervisor.services import control_app, node_name
from tasks import redisauth
from tasks.crashes import records as crashdumps
from tasks.crashes.store import open_store
from tasks.transport import SentinelTransport
from tasks.wire import blobs, results
from tasks.wire.jobids import job_ids
from tasks.wire.keys import BEAT_LOCK_KEY, HEALTH_TASKS, POOLS
from tasks.wire.submit import submit
from tasks.wire.verdicts import PoolVerdict
from tests.conftest import find_delivered, make_message, send, wait_for
from tests.console_session import logged_in
from tests.sentinel_stack import CONSOLE_PORT, Failover, kill_primary
from tests.test_transport import KEYS, QUEUE, publish_and_take

pytestmark = pytest.mark.integration
WAIT_S = 30.0


def test_the_pools_take_jobs_and_answer_through_the_new_primary(ha, hs):
    app = control_app(hs)  # made before the failover, as a front's or a console's is
    pools = {pool: ha.pid(f"{pool}-worker") for pool in POOLS}
    failover = kill_primary(ha, hs)
    for pool in POOLS:
        record = app.send_task(HEALTH_TASKS[pool]).get(timeout=WAIT_S)  # a result from there
        assert record["worker"] == node_name(pool, hs)
    # A broadcast on a connection the app pooled before the failover fails once (kombu
    # sends BRPOP without a retry); the next one is made on the new primary.
    workers = [node_name(pool, hs) for pool in POOLS]
    wait_for(lambda: _answered(app, workers), 15, "the pools' answer to a broadcast")
    assert {pool: ha.pid(f"{pool}-worker") for pool in POOLS} == pools
    assert_on(hs, failover)


def test_a_worker_channel_whose_connection_let_go_fails_as_a_lost_connection(ha, hs):
    """tests/test_transport.py's last test, on the Sentinel twin of the workers' transport."""
    options = {**KEYS, **redisauth.celery_transport_options(hs)}
    conn = Connection(
        redisauth.celery_url(hs), transport=SentinelTransport, transport_options=options
    )
    client = redisauth.connect(hs)
    client.delete(QUEUE, *KEYS.values())
    taken = publish_and_take(conn)
    channel = conn.default_channel
    conn._do_close_transport()
    with pytest.raises(SentinelTransport.connection_errors):
        channel.close()
    with pytest.raises(SentinelTransport.connection_errors):
        taken.ack()
    assert client.hlen(KEYS["unacked_key"]) == 1
    assert client.llen(QUEUE) == 0


def _answered(app, workers: list[str]) -> bool:
    try:
        answers = app.control.ping(destination=workers, timeout=2)
    except (redis.RedisError, OperationalError):
        return False
    return {name for answer in answers for name in answer} == set(workers)


def _verdict(pool: str) -> PoolVerdict:
    return PoolVerdict(pool, "clean", worker=f"{pool}@mx")


def test_the_verdict_waiter_subscribes_again_and_reads_what_was_published_meanwhile(ha, hs):
    backend = control_app(hs).backend

    async def run() -> None:
        waiter = VerdictWaiter(redisauth.connect_async(hs), backend.decode_result)
        await waiter.start()
        try:
            await _until(lambda: waiter.alive, "the subscriber")
            meanwhile, after = job_ids(f"{time.time_ns():024x}").values()
            for task_id in (meanwhile, after):
                waiter.expect(task_id)
            client = redisauth.connect(hs)
            await asyncio.to_thread(kill_primary, ha, hs)
            # One transaction on the new primary: the verdict is published while no subscriber
            # listens there (one that came back already is ended with it).
            with client.pipeline(transaction=True) as pipe:
                pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                results.add(pipe, backend, meanwhile, _verdict("av"))
                pipe.execute()
            started = time.monotonic()
            meta = await waiter.wait(meanwhile, WAIT_S)
            assert meta["result"] == _verdict("av").to_record()
            assert time.monotonic() - started < WAIT_S / 2, "not read again on subscribing"
            await _until(lambda: waiter.alive, "the subscriber on the new primary")
            results.store(client.pipeline(transaction=False), backend, after, _verdict("spam"))
            started = time.monotonic()
            meta = await waiter.wait(after, WAIT_S)
            assert meta["result"] == _verdict("spam").to_record()
            assert time.monotonic() - started < WAIT_S / 2, "found by its last read, not heard"
        finally:
            await waiter.close()

    asyncio.run(run())


async def _until(check, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_the_message_store_and_job_publisher_write_to_the_new_primary(ha, hs):
    client = redisauth.connect(hs)  # the front's one client, made at its start
    failover = kill_primary(ha, hs)
    data = make_message(subject="after a failover").as_bytes()
    blob_id = f"{time.time_ns():024x}"
    submit(control_app(hs), client, blob_id, data, ttl_s=60)
    stored = client.get(blobs.BLOB_KEY.format(blob_id=blob_id))
    assert stored, "the message bytes are not on the new primary"
    assert client.connection_pool.get_master_address() == failover.new
    # And the front's own, through SMTP.
    test_id = f"ha-front-{time.time_ns()}"
    assert send(make_message(X_Test_Id=test_id), hs.smtp_port).code == 250
    wait_for(lambda: len(find_delivered(hs.maildir, test_id.encode())) == 1, 30, "delivery")


def test_the_console_reads_the_new_primary(ha, hs):
    pid = ha.pid("console")
    console = logged_in(f"http://127.0.0.1:{CONSOLE_PORT}")
    try:
        assert console.get("/crashdumps").status_code == 200
        kill_primary(ha, hs)
        dump = _crashdump("console")
        assert open_store(hs).save(dump) == "redis"
        page = console.get("/crashdumps")
    finally:
        console.close()
    assert page.status_code == 200
    assert dump["id"] in page.text, "the console lists what the new primary holds"
    assert ha.pid("console") == pid


def test_beat_keeps_its_lock_on_the_new_primary(ha, hs):
    pid = ha.pid("beat")
    failover = kill_primary(ha, hs)
    client = redisauth.connect(hs)
    left_ms = client.pttl(BEAT_LOCK_KEY)
    # Beat renews its lock at every tick, or takes it anew if the failover lost it.
    wait_for(lambda: client.pttl(BEAT_LOCK_KEY) > left_ms + 500, 30, "beat's lock renewed")
    assert ha.pid("beat") == pid
    assert_on(hs, failover)


def test_crash_records_written_while_no_primary_answers_are_kept(ha, hs):
    store = open_store(hs)  # made before the failover, as a pool process's is
    during: list[tuple[dict[str, Any], str]] = []

    def crash() -> None:
        dump = _crashdump("during")
        during.append((dump, store.save(dump)))

    failover = kill_primary(ha, hs, during=crash)
    ((dump, kept),) = during
    assert kept in ("spooled", "redis")  # locally, or on the new primary if it came in time
    after = _crashdump("after")
    assert store.save(after) == "redis"
    store.drain()
    for record in (dump, after):
        assert (store.get(record["id"]) or {}).get("job_id") == record["job_id"]
    assert not list(store.pending.glob("*.json")), "left in the local spool"
    assert_on(hs, failover)


def _crashdump(job: str) -> dict[str, Any]:
    # A plugin name of its own: a second record of one signature within a minute is only
    # counted in its group.
    plugin = {"name": f"probe-{job}-{time.time_ns()}"}
    incident = crashdumps.Incident("exception", "av", plugin, f"job-{job}", {"blob": "x"})
    return crashdumps.record(incident)


def assert_on(settings, failover: Failover) -> None:
    assert redisauth.connect(settings).connection_pool.get_master_address() == failover.new
