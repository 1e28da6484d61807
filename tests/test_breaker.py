"""The circuit breaker is fleet-wide: two av workers on two hosts share one Redis; when one
worker's failures open the breaker, the other skips the engine without calling it, and a
health probe closes it for both once the backend answers again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from mailserver.supervisor.services import control_app
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import BREAKER_OPEN_KEY, HEALTH_KEY, HEALTH_TASKS
from tasks.wire.submit import submit
from tests.conftest import make_message, wait_for

pytestmark = pytest.mark.integration
OTHER_HOST = "second-host"
PROBE_WITHIN_S = 10


@pytest.fixture
def second_av_worker(faults, fs, fault_env) -> Iterator[Stack]:
    """An av worker of another host (its own name, folder and log) on the same Redis."""
    # It reads the front's spool, as a second host sharing it would: a worker that cannot
    # would rightly make the front stop sharing big messages with the pools.
    env = {**fault_env, "MAILSCAN_HOSTNAME": OTHER_HOST,
           "MAILSCAN_VAR_DIR": str(fs.var_dir / OTHER_HOST),
           "MAILSCAN_SPOOL_DIR": str(fs.spool_dir)}  # fmt: skip
    other = Stack(load_settings(env), env)
    other.start(["av-worker"], progress=lambda _: None)
    yield other
    consume_av_only_on(fs, f"av@{fs.hostname}")
    other.stop()
    redisauth.connect(fs).hdel(HEALTH_KEY, f"av@{OTHER_HOST}")  # no probe of a worker gone


def consume_av_only_on(fs: Settings, node: str) -> None:
    control = control_app(fs).control
    for worker in (f"av@{fs.hostname}", f"av@{OTHER_HOST}"):
        if worker == node:
            control.add_consumer("av", destination=[worker], reply=True, timeout=5)
        else:
            control.cancel_consumer("av", destination=[worker], reply=True, timeout=5)


def scan(fs: Settings, test_id: str) -> dict:
    """The av pool's verdict on a small message, scanned by whichever worker consumes."""
    client, app = redisauth.connect(fs), control_app(fs)
    raw = make_message(X_Test_Id=test_id).as_bytes()
    ids = submit(app, client, f"brk{time.time_ns():x}", raw, 120)
    return app.AsyncResult(ids["av"]).get(timeout=60)


def engine(result: dict, name: str) -> dict:
    return next(v for v in result["verdicts"] if v["engine"] == name)


def test_a_breaker_opened_by_one_worker_is_honoured_by_the_other(second_av_worker, faults, fs):
    client = redisauth.connect(fs)
    this, other = f"av@{fs.hostname}", f"av@{OTHER_HOST}"
    is_open = lambda: bool(client.exists(BREAKER_OPEN_KEY.format(plugin="clamav")))  # noqa: E731
    other_log = lambda: second_av_worker.log_tail("av-worker", 2000)  # noqa: E731
    consume_av_only_on(fs, this)
    os.killpg(faults.pid("clamd"), signal.SIGKILL)
    try:
        for n in range(fs.breaker_failures):
            failed = scan(fs, f"breaker-{n}")
            assert failed["worker"] == this
            assert engine(failed, "clamav")["status"] == "error"
        assert is_open()
        assert "breaker for clamav opened after 3 failures" in faults.log_tail("av-worker", 400)

        consume_av_only_on(fs, other)
        skipped = scan(fs, "breaker-other")
        assert skipped["worker"] == other
        assert engine(skipped, "clamav")["detail"] == "circuit breaker open: backend down"
        # It never asked clamd: a call would have failed and been logged as a failure.
        assert "plugin clamav failed" not in other_log()
        assert is_open()  # its own probe beside the skip found clamd still down
    finally:
        faults.restart("clamd")
    # Well before the cooldown would end it: closed by the probe, not by the clock.
    assert client.ttl(BREAKER_OPEN_KEY.format(plugin="clamav")) > PROBE_WITHIN_S
    control_app(fs).send_task(HEALTH_TASKS["av"])
    wait_for(lambda: not is_open(), PROBE_WITHIN_S, "the health probe to close the breaker")
    assert "health probe av: chaos ok, clamav ok" in other_log()
    assert engine(scan(fs, "breaker-closed"), "clamav")["status"] == "clean"
