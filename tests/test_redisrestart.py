"""Redis restarting never ends a worker. On a stack of its own, Redis is restarted again and
again while slow jobs are in flight: both pools keep their process (nothing had to be
revived), every message gets a final answer and is delivered once. Senders behave as MTAs
do: a message without a final answer is sent again."""

from __future__ import annotations

import random
import smtplib
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from mailserver.supervisor.stack import Stack
from tasks.plugins.chaos import SLOW_S, marker
from tasks.settings import Settings, load_settings
from tests.conftest import (
    FAULT_SETTINGS,
    POOLS,
    find_delivered,
    make_message,
    running_stack,
    send,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.integration

OFFSET = 4  # ports of a stack of its own (tests/conftest.py stack_env)
RESTARTS, MESSAGES, SENDERS = 3, 30, 3
SENDER_GIVES_UP_S = 240.0
# More av processes than senders: the pool has jobs in flight and a BRPOP waiting for more
# when Redis goes away, the state in which a lost connection used to end the worker.
RR_SETTINGS = {
    **FAULT_SETTINGS,
    "av_concurrency": "4",
    # A job taken when Redis went away is submitted again by the front once Redis is back
    # (mailserver/front/resend.py); a short deadline still answers a message whose second
    # submission failed too, and its sender sends it again.
    "scan_deadline_s": "10",
}


@pytest.fixture(scope="module")
def rr_env() -> dict[str, str]:
    return stack_env("redisrestart", OFFSET, **RR_SETTINGS)


@pytest.fixture(scope="module")
def rs(rr_env) -> Settings:
    return load_settings(rr_env)


@pytest.fixture(scope="module")
def rr(rs, rr_env) -> Iterator[Stack]:
    yield from running_stack(rs, rr_env)


def slow_message(test_id: str) -> bytes:
    body = f"Slow on purpose ({test_id}): {marker('slow').decode()}"
    return make_message(body=body, X_Test_Id=test_id).as_bytes()


def is_final(code: int) -> bool:
    return bool(code) and not 400 <= code < 500  # 0: the connection died without a reply


def send_until_final(raw: bytes, port: int) -> list[int]:
    """Every reply the sender saw until a final one, as an MTA's queue would send it."""
    replies: list[int] = []
    gives_up = time.monotonic() + SENDER_GIVES_UP_S
    while not (replies and is_final(replies[-1])) and time.monotonic() < gives_up:
        try:
            replies.append(send(raw, port).code)
        except (OSError, smtplib.SMTPException):
            replies.append(0)
        if not is_final(replies[-1]):
            time.sleep(0.5)  # an MTA's retry interval, shortened
    return replies


def slow_jobs_started(stack: Stack) -> int:
    log = (stack.log_dir / "av-worker.log").read_text(errors="replace")
    return log.count("chaos: injecting slow")


class Watch:
    """Revives what died, as `mailscan up` and compose's restart policy do, and remembers it:
    a revival would hide a worker that Redis's restart took down."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.revived = stack, []

    def slow_jobs_since(self, started: int) -> int:
        self.revived += self.stack.revive()
        return slow_jobs_started(self.stack) - started


def restart_redis_under_load(stack: Stack, futures: list[Future], rounds: int) -> list[str]:
    """Restart Redis ``rounds`` times, each at a random moment of a slow job; return the
    services the stack had to revive meanwhile."""
    watch, chance = Watch(stack), random.Random()
    for _ in range(rounds):
        started = slow_jobs_started(stack)
        wait_for(lambda n=started: watch.slow_jobs_since(n) >= 2, 90, "slow jobs running")
        time.sleep(chance.uniform(0.0, SLOW_S))
        stack.restart("redis")
    while not all(f.done() for f in futures):
        watch.slow_jobs_since(0)
        time.sleep(1.0)
    return watch.revived


def test_redis_restarted_again_and_again_under_load_ends_no_worker(rr, rs):
    pids = {name: rr.pid(name) for name in POOLS}
    ids = [f"rr-{n:03d}" for n in range(MESSAGES)]
    with ThreadPoolExecutor(SENDERS) as senders:
        futures = [senders.submit(send_until_final, slow_message(i), rs.smtp_port) for i in ids]
        revived = restart_redis_under_load(rr, futures, RESTARTS)
    # A revival would hide a worker that Redis's restart took down.
    assert revived == [], f"died while Redis restarted: {revived}"
    assert {name: rr.pid(name) for name in POOLS} == pids
    finals = {i: f.result()[-1] for i, f in zip(ids, futures, strict=True)}
    assert {i: code for i, code in finals.items() if code != 250} == {}
    copies = {i: len(find_delivered(rs.maildir, f"X-Test-Id: {i}".encode())) for i in ids}
    assert {i: n for i, n in copies.items() if n != 1} == {}, "lost or delivered twice"
