"""Redis under Sentinel loses no mail: under a stream of mail through the SMTP front the
primary is killed with SIGKILL and the sentinels promote the replica. Every message gets its
final answer, every 250 is delivered exactly once, a 451 only for a message in flight while
no primary answered; the pools, beat and the console go on without a restart, and the
crashdumps of the stream are all kept. The old primary then comes back as a replica (and
`mailscan status` says so), and nothing is delivered twice. Real redis-server and
redis-sentinel, on a stack of its own."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.store import open_store
from tasks.settings import Settings
from tasks.wire.keys import BEAT_LOCK_KEY, HEALTH_KEY, POOLS
from tests.conftest import mailscan, wait_for
from tests.console_session import logged_in
from tests.sentinel_stack import (
    CONSOLE_PORT,
    Failover,
    both_nodes_up,
    kill_primary,
    primary,
    stream_mail,
)
from tests.test_soak import (
    Sent,
    await_a_crashdump_per_fault,
    chaos_dumps,
    copies_delivered,
    run_stream,
)

pytestmark = pytest.mark.integration

MESSAGES, CONCURRENCY, KILL_AT = 300, 4, 100
AFTER_REJOIN = 30
# Filled by the stream test: the rejoin test goes on from the failover it caused.
_state: dict[str, object] = {}


class ServiceWatch:
    """Fails the test for every service that died, but the Redis the test killed: a pool,
    beat or the console that needed a restart did not follow the failover."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.died, self.killed = stack, set(), ""
        self.pids = {name: stack.pid(name) for name in stack.started}

    def check(self) -> bool:
        self.died |= {name for name in self.stack.exited() if name != self.killed}
        return False  # run_stream's wait_for goes on

    def restarted(self) -> list[str]:
        now = {name: self.stack.pid(name) for name in self.pids if name != self.killed}
        return sorted(self.died | {n for n, pid in now.items() if pid != self.pids[n]})


def in_window(sent: Sent, failover: Failover) -> list[tuple[int, float, float]]:
    """The attempts answered with a 4xx (or no reply) that were not in flight while no
    primary answered: (reply, start, end), relative to the kill."""
    outside = []
    for code, (start, end) in zip(sent.replies, sent.attempts, strict=True):
        if code != 250 and not (start <= failover.promoted_at and end >= failover.killed_at):
            outside.append((code, start - failover.killed_at, end - failover.killed_at))
    return outside


def test_killing_the_primary_under_a_stream_loses_and_duplicates_nothing(ha, hs):
    both_nodes_up(ha, hs)  # a node an earlier test killed is back before the watch starts
    watch, marks = ServiceWatch(ha), {}
    log_start = (ha.log_dir / "av-worker.log").stat().st_size
    dumps_before = chaos_dumps(hs)  # the client tests' faults, when they ran first

    def kill() -> None:
        marks["failover"] = kill_primary(ha, hs)
        watch.killed = marks["failover"].killed

    mail = stream_mail(MESSAGES, "ha")
    sent, stream_s = run_stream(mail, hs.smtp_port, [(KILL_AT, kill)], watch.check, CONCURRENCY)
    failover: Failover = marks["failover"]
    _state["failover"] = failover
    wait_for(lambda: not any((hs.spool_dir / "queue").iterdir()), 120, "an empty spool")

    copies = copies_delivered(hs)
    assert [i for i, s in sent.items() if s.final is None] == [], "no final answer"
    assert [i for i, s in sent.items() if s.final != 250] == [], "refused"
    assert [i for i in mail if copies[i] == 0] == [], "answered 250, then lost"
    assert [i for i in mail if copies[i] > 1] == [], "delivered twice"
    outside = {i: found for i, s in sent.items() if (found := in_window(s, failover))}
    assert outside == {}, "a 451 outside the failover window (seconds after the kill)"
    assert watch.restarted() == [], "needed a restart to follow the failover"
    assert_pools_beat_and_console_work_on(hs, failover)
    faults = await_a_crashdump_per_fault(ha, hs, log_start, dumps_before)
    report(sent, failover, stream_s, faults)


def assert_pools_beat_and_console_work_on(settings: Settings, failover: Failover) -> None:
    """Beat's lock and its health probes, the pools' answers to them, and a console page
    that reads Redis, all on the new primary."""
    client = redisauth.connect(settings)
    assert client.connection_pool.get_master_address() == failover.new
    since = time.time() - (time.monotonic() - failover.promoted_at)

    def probed_since_promotion() -> bool:
        records = client.hgetall(HEALTH_KEY)
        probes = {k.decode(): v for k, v in records.items()}
        return all(_probe_at(probes.get(f"{pool}@{settings.hostname}")) > since for pool in POOLS)

    wait_for(probed_since_promotion, 30, "health probes sent by beat, answered by the pools")
    assert client.get(BEAT_LOCK_KEY), "beat holds no lock on the new primary"
    console = logged_in(f"http://127.0.0.1:{CONSOLE_PORT}")
    try:
        newest = open_store(settings).ids(limit=1)
        page = console.get("/crashdumps")
    finally:
        console.close()
    assert page.status_code == 200
    assert not newest or newest[0] in page.text


def _probe_at(record: bytes | None) -> float:
    return json.loads(record)["at"] if record else 0.0


def report(sent: dict[str, Sent], failover: Failover, stream_s: float, faults: Counter) -> None:
    tempfails = sum(code != 250 for s in sent.values() for code in s.replies)
    print(
        f"\nsentinel failover: primary {failover.old[1]} killed, {failover.new[1]} promoted "
        f"after {failover.window_s:.1f} s; {tempfails} 4xx (or no reply) of "
        f"{len(sent)} messages at concurrency {CONCURRENCY} in {stream_s:.1f} s; "
        f"faults injected: {dict(faults)}"
    )


def _named(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def test_the_old_primary_comes_back_as_a_replica_and_nothing_is_delivered_twice(ha, hs, ha_env):
    failover = _state.get("failover") or kill_primary(ha, hs)
    assert isinstance(failover, Failover)
    both_nodes_up(ha, hs)  # the killed one restarted: a replica of the new primary, in sync
    assert primary(hs) == failover.new, "the old primary took the role back"
    shown = mailscan("status", "--json", env=ha_env)
    assert shown.returncode == 0, shown.stderr
    redis = json.loads(shown.stdout)["redis"]
    assert (redis["primary"], redis["replicas"]) == (_named(failover.new), [_named(failover.old)])
    mail = stream_mail(AFTER_REJOIN, "rejoined")
    sent, _ = run_stream(mail, hs.smtp_port, [], lambda: False, CONCURRENCY)
    assert {s.final for s in sent.values()} == {250}
    wait_for(lambda: not any((hs.spool_dir / "queue").iterdir()), 60, "an empty spool")
    copies = copies_delivered(hs)
    assert [i for i in mail if copies[i] != 1] == [], "lost or delivered twice"
    assert {i: n for i, n in copies.items() if n > 1} == {}, "delivered twice, the stream's too"
