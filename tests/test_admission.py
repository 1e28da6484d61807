"""The admission check's view of the backlog: one Redis read serves every session for a
tenth of a second, a failed read reaches the caller, and only scan jobs give it an age."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from mailserver.front.admission import MAX_AGE_S, BacklogGauge, oldest_scan_wait_s
from mailserver.front.smtp import BUSY
from mailserver.supervisor.services import control_app
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.jobids import job_ids, parse_job_id
from tasks.wire.keys import AV_POOL, HEALTH_KEY, HEALTH_TASKS, SPAM_POOL
from tasks.wire.submit import submit
from tests.conftest import BACKENDS, POOLS, make_message, send, stack_env, wait_for

OFFSET = 7  # ports of a stack of its own (tests/conftest.py stack_env)
CLIENTS, LOAD_S = 6, 12.0


class CountingRead:
    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = 0, fail

    def __call__(self) -> tuple[int, float]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("Redis is away")
        return self.calls, 0.5


def test_sessions_at_once_share_one_read_and_a_stale_reading_is_read_again():
    read = CountingRead()

    async def run() -> tuple[list, tuple]:
        gauge = BacklogGauge(read, max_age_s=0.05)
        together = await asyncio.gather(*(gauge.current() for _ in range(50)))
        await asyncio.sleep(0.1)
        return together, await gauge.current()

    together, later = asyncio.run(run())
    assert set(together) == {(1, 0.5)}
    assert later == (2, 0.5)
    assert read.calls == 2


def test_a_failed_read_is_raised_and_the_next_call_tries_again():
    read = CountingRead(fail=True)

    async def run() -> None:
        gauge = BacklogGauge(read)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await gauge.current()

    asyncio.run(run())
    assert read.calls == 2


def _queued(task_id: str) -> bytes:
    """A job as kombu's Redis transport keeps it on a queue (the parts the check reads)."""
    return json.dumps({"body": "", "headers": {"id": task_id, "task": "t"}}).encode()


def test_a_probe_or_foreign_job_at_the_tail_neither_ages_the_backlog_nor_hides_it():
    scan_job = job_ids(f"{time.time_ns():024x}")["av"]
    now = parse_job_id(scan_job).enqueued_at + 5.0
    probe, foreign = _queued(str(uuid.uuid4())), _queued("operator.check")
    # Newest first, as LRANGE returns a queue's tail: the last entry waits longest.
    assert oldest_scan_wait_s([probe, foreign], now) == 0.0
    assert oldest_scan_wait_s([_queued(scan_job), foreign, probe], now) == pytest.approx(5.0)
    assert oldest_scan_wait_s([b"not json", _queued(scan_job), b"[]"], now) == pytest.approx(5.0)


@pytest.fixture(scope="module")
def probed_env() -> dict[str, str]:
    """Beat probes both pools every second, so probes keep waiting among the scan jobs."""
    return stack_env("admission", OFFSET, health_probe_every_s="1")


@pytest.fixture(scope="module")
def probed(probed_env) -> Iterator[Stack]:
    running = Stack(load_settings(probed_env), probed_env)
    try:
        running.start([*BACKENDS, *POOLS, "beat", "mailserver"], progress=lambda _: None)
        yield running
    finally:
        running.stop()


def _probed_since(client: redis.Redis, since: float) -> bool:
    records = [json.loads(raw) for raw in client.hvals(HEALTH_KEY)]
    return {r["pool"] for r in records if r["at"] >= since} == {"av", "spam"}


def _load(port: int, until: float, replies: list[tuple[int, str, float]]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        reply = send(make_message(X_Test_Id="load"), port)
        replies.append((reply.code, reply.text, time.monotonic() - started))


@pytest.mark.integration
def test_sustained_load_among_health_probes_is_never_refused_busy(probed):
    settings = probed.settings
    client = redisauth.connect(settings)
    started = time.time()
    wait_for(lambda: _probed_since(client, started), 30, "beat's probes through both pools")
    replies: list[tuple[int, str, float]] = []
    until = time.monotonic() + LOAD_S
    clients = [
        threading.Thread(target=_load, args=(settings.smtp_port, until, replies))
        for _ in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    busy = [text for code, text, _ in replies if "4.3.2" in text]
    assert busy == [], f"{len(busy)} of {len(replies)} messages refused busy"
    assert {code for code, _, _ in replies} == {250}
    # No scan job waited anywhere near half a deadline: no refusal would have been right.
    assert max(took for _, _, took in replies) < settings.scan_deadline_s / 2
    assert _probed_since(client, started + LOAD_S / 2)  # the probes ran all along


@pytest.fixture
def front_with_short_deadline(probed, probed_env) -> Iterator[Settings]:
    """A second SMTP front on the same Redis, refusing once a job waited 2 s."""
    env = {**probed_env, "MAILSCAN_SCAN_DEADLINE_S": "4",
           "MAILSCAN_SMTP_PORT": str(probed.settings.smtp_port + 2),
           "MAILSCAN_METRICS_PORT": str(probed.settings.metrics_port + 100),
           "MAILSCAN_VAR_DIR": str(probed.settings.var_dir / "short-deadline")}  # fmt: skip
    front = Stack(load_settings(env), env)
    front.start(["mailserver"], progress=lambda _: None)
    yield front.settings
    front.stop()


@pytest.mark.integration
def test_a_real_backlog_behind_a_probe_and_a_foreign_job_is_refused_at_once(
    probed, front_with_short_deadline
):
    settings = front_with_short_deadline
    client, app = redisauth.connect(settings), control_app(settings)
    probed.stop(["beat", *POOLS])
    try:
        client.delete(AV_POOL, SPAM_POOL)  # what the stopped pools gave back: a known tail
        for pool, task in HEALTH_TASKS.items():
            app.send_task(task, task_id=f"operator.check.{pool}")  # an id of its own
            app.send_task(task)  # as beat sends a probe: a Celery uuid
        ids = submit(app, client, f"backlog{time.time_ns():x}", b"Subject: x\r\n\r\nx", 60)
        enqueued = parse_job_id(ids["av"]).enqueued_at
        half_deadline = settings.scan_deadline_s / 2 + MAX_AGE_S
        wait_for(lambda: time.time() - enqueued > half_deadline, 10, "half a deadline")
        started = time.monotonic()
        reply = send(make_message(X_Test_Id="behind-backlog"), settings.smtp_port)
        assert f"{reply.code} {reply.text}" == BUSY
        assert time.monotonic() - started < 2.0  # at once, not after the deadline
    finally:
        probed.start([*POOLS, "beat"], progress=lambda _: None)
