"""The durability claim under chaos, on a stack of its own: real corpus mail at concurrency 8
while plugins fail at random, the SMTP front is killed and restarted, Redis is restarted and
spamd is frozen past the spam pool's hard limit. Senders behave as real MTAs do: a message
without a final answer (a 4xx, or a connection that died without a reply) is sent again."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.store import CrashStore
from tasks.settings import Settings, load_settings
from tests.conftest import (
    CORPUS,
    FAULT_SETTINGS,
    running_stack,
    send,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.integration

SOAK_MESSAGES, BASELINE_MESSAGES, CONCURRENCY = 300, 60, 8
SOAK_CHAOS = (
    "segfault@0.01,abort@0.005,exit@0.005,raise@0.01,drop-connection@0.01,leak@0.01,"
    "freeze-python@0.004,freeze-c@0.002"
)
# The crashdump kind each injected fault must leave (a leak is recycled, not dumped).
DUMP_KIND = {
    "segfault": "crash", "abort": "crash", "exit": "crash", "raise": "exception",
    "drop-connection": "connection", "freeze-python": "freeze", "freeze-c": "freeze",
}  # fmt: skip
# Answered messages at which each fault of the stack is injected.
KILL_FRONT_AT, RESTART_REDIS_AT, FREEZE_SPAMD_AT = 60, 130, 200
SENDER_GIVES_UP_S = 600.0  # a real MTA keeps trying for days; the soak's mail is done by then


@pytest.fixture(scope="module")
def soak_env() -> dict[str, str]:
    return stack_env("soak", 7, **FAULT_SETTINGS)


@pytest.fixture(scope="module")
def ss(soak_env) -> Settings:
    return load_settings(soak_env)


@pytest.fixture(scope="module")
def soak(ss, soak_env) -> Iterator[Stack]:
    yield from running_stack(ss, soak_env)


@dataclass
class Sent:
    """What one sender saw for one message: every reply (0: the connection died without
    one) until a final answer."""

    replies: list[int] = field(default_factory=list)
    # When each attempt started and ended (time.monotonic), reply for reply.
    attempts: list[tuple[float, float]] = field(default_factory=list)

    @property
    def final(self) -> int | None:
        last = self.replies[-1] if self.replies else None
        return last if last and not 400 <= last < 500 else None


def send_until_final(raw: bytes, port: int) -> Sent:
    sent, gives_up = Sent(), time.monotonic() + SENDER_GIVES_UP_S
    while sent.final is None and time.monotonic() < gives_up:
        started = time.monotonic()
        try:
            sent.replies.append(send(raw, port).code)
        except (OSError, smtplib.SMTPException):
            sent.replies.append(0)  # the front died under it, or refused the connection
        sent.attempts.append((started, time.monotonic()))
        if sent.final is None:
            time.sleep(0.5)  # a retry interval, as an MTA's queue has one (shortened)
    return sent


def corpus_mail(count: int, prefix: str, start: int = 0) -> dict[str, bytes]:
    corpus = sorted(CORPUS.glob("*/*.eml"))
    return {
        f"{prefix}-{n:04d}": f"X-Soak-Id: {prefix}-{n:04d}\r\n".encode()
        + corpus[(start + n) % len(corpus)].read_bytes()
        for n in range(count)
    }


class Supervisor:
    """Watches the stack as ``mailscan up`` does, but fails the soak for every service that
    died without the soak killing it: a revival hides a crash."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.revived = stack, []
        self.pids = {name: stack.pid(name) for name in stack.started}

    def check(self) -> None:
        self.revived += self.stack.revive()

    def unexpected_restarts(self, restarted_on_purpose: set[str]) -> list[str]:
        now = {name: self.stack.pid(name) for name in self.stack.started}
        changed = [n for n in now if now[n] != self.pids[n] and n not in restarted_on_purpose]
        return sorted(set(changed) | set(self.revived))


def run_stream(
    mail: dict[str, bytes],
    port: int,
    steps: list[tuple[int, Callable[[], None]]],
    watch,
    concurrency: int = CONCURRENCY,
) -> tuple[dict[str, Sent], float]:
    """Send ``mail`` at the soak's concurrency (or ``concurrency``); run each step once that
    many messages have their final answer. Returns what each sender saw and the time it all
    took."""
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = {i: pool.submit(send_until_final, raw, port) for i, raw in mail.items()}
        for answered, step in steps:
            wait_for(lambda n=answered: watch() or finished(futures) >= n, 300, f"{answered} sent")
            step()
        wait_for(lambda: watch() or finished(futures) == len(mail), 900, "every message sent")
    return {i: f.result() for i, f in futures.items()}, time.monotonic() - started


def finished(futures: dict[str, Future]) -> int:
    return sum(f.done() for f in futures.values())


def copies_delivered(ss: Settings) -> Counter[str]:
    copies: Counter[str] = Counter()
    for path in (ss.maildir / "new").iterdir():
        found = re.search(rb"^X-Soak-Id: (\S+)", path.read_bytes(), re.MULTILINE)
        if found:
            copies[found[1].decode()] += 1
    return copies


def injected_faults(stack: Stack, since: int) -> tuple[Counter[str], Counter[str]]:
    """Faults the chaos plugin injected, by action: all of them, and those in jobs that ran
    to their end. A job still running when Redis went away is terminated (it cannot be
    acknowledged on a new connection) and sent again: a fault in it may end before it can
    be seen, a freeze before its limit, or be seen all the same (a freeze in C ignores the
    termination)."""
    log = (stack.log_dir / "av-worker.log").read_text(errors="replace")[since:]
    injected = re.findall(r"\[([^\]\s]+)\]: chaos: injecting (\S+)", log)
    cut_short = set(re.findall(r"Task \S+\[(\S+)\] cannot be acknowledged after a connection", log))
    every = Counter(action for _, action in injected)
    ran_out = Counter(action for job, action in injected if job not in cut_short)
    return every, ran_out


def chaos_dumps(ss: Settings) -> Counter[str]:
    """Incidents of the chaos plugin by kind, as the crash groups count them: repeats of one
    failure keep one full record a minute, and the group counts every one."""
    store = CrashStore(redisauth.connect(ss), ss.crashdump_dir)
    store.drain()  # kept on the workers' host while Redis was away, as the console does
    counted: Counter[str] = Counter()
    for group in store.groups():
        if group.get("plugin") == "chaos":
            counted[group["kind"]] += int(group["count"])
    return counted


def expected_dumps(faults: Counter[str]) -> Counter[str]:
    expected: Counter[str] = Counter()
    for action, count in faults.items():
        if action in DUMP_KIND:
            expected[DUMP_KIND[action]] += count
    return expected


def freeze_spamd(stack: Stack, ss: Settings) -> None:
    spamd, stopped = stack.pid("spamd"), time.monotonic()
    os.killpg(spamd, signal.SIGSTOP)
    try:
        # The freeze is the fault: it must outlast the spam pool's hard limit.
        time.sleep(ss.pools["spam"].hard_limit_s + 1)
    finally:
        os.killpg(spamd, signal.SIGCONT)
    assert time.monotonic() - stopped > ss.pools["spam"].hard_limit_s


def kill_front(stack: Stack) -> None:
    os.kill(stack.pid("mailserver"), signal.SIGKILL)
    stack.restart("mailserver")


def test_soak_with_plugin_faults_front_kill_redis_restart_and_spamd_freeze(soak, ss):
    supervisor = Supervisor(soak)
    baseline, baseline_s = run_stream(corpus_mail(BASELINE_MESSAGES, "base", 67), ss.smtp_port,
                                      [], supervisor.check)  # fmt: skip
    assert {s.final for s in baseline.values()} == {250}
    soak.env["MAILSCAN_CHAOS"] = SOAK_CHAOS
    soak.restart("av-worker")
    supervisor = Supervisor(soak)
    log_start = (soak.log_dir / "av-worker.log").stat().st_size
    marks: dict[str, float] = {}
    steps = [
        (BASELINE_MESSAGES, lambda: marks.setdefault("first", time.monotonic())),
        (KILL_FRONT_AT, lambda: kill_front(soak)),
        (RESTART_REDIS_AT, lambda: soak.restart("redis")),
        (FREEZE_SPAMD_AT, lambda: freeze_spamd(soak, ss)),
    ]
    started = time.monotonic()
    mail = corpus_mail(SOAK_MESSAGES, "soak")
    sent, soak_s = run_stream(mail, ss.smtp_port, steps, supervisor.check)
    wait_for(lambda: not any((ss.spool_dir / "queue").iterdir()), 120, "an empty spool")

    copies = copies_delivered(ss)
    unanswered = [i for i, s in sent.items() if s.final is None]
    assert unanswered == [], "no final answer"
    assert [i for i, s in sent.items() if s.final != 250] == [], "refused"
    assert [i for i in mail if copies[i] == 0] == [], "answered 250, then lost"
    assert [i for i in mail if copies[i] > 1] == [], "delivered twice"
    assert supervisor.unexpected_restarts({"mailserver", "redis"}) == []
    faults = await_a_crashdump_per_fault(soak, ss, log_start)
    report(sent, faults, soak_s, baseline_s, marks["first"] - started)


def await_a_crashdump_per_fault(
    stack: Stack, settings: Settings, log_start: int, before: Counter[str] | None = None
) -> Counter[str]:
    """The chaos plugin's faults since ``log_start`` of the av worker's log, once each has
    its crashdump (those in jobs a lost connection cut short may or may not). ``before``:
    the store's chaos dumps when the log was at ``log_start`` (earlier tests' on a shared
    stack)."""
    faults, ran_out = injected_faults(stack, log_start)
    assert sum(faults.values()) > 0, "the stream had no plugin faults"
    fewest, most = expected_dumps(ran_out), expected_dumps(faults)

    def since() -> Counter[str]:
        return chaos_dumps(settings) - (before or Counter())

    try:
        wait_for(lambda: fewest <= since() <= most, 60, "a crashdump per fault")
    finally:
        print(f"\ncrashdumps by kind: {dict(since())}, expected from the faults: "
              f"{dict(fewest)} to {dict(most)}")  # fmt: skip
    return faults


def report(sent: dict[str, Sent], faults: Counter[str], soak_s: float, baseline_s: float,
           first_s: float) -> None:  # fmt: skip
    replies = Counter(code for s in sent.values() for code in s.replies[:-1])
    print(
        f"\nsoak: {SOAK_MESSAGES} messages at concurrency {CONCURRENCY} in {soak_s:.1f} s "
        f"({SOAK_MESSAGES / soak_s:.1f}/s); its first {BASELINE_MESSAGES} (plugin faults only) "
        f"{BASELINE_MESSAGES / first_s:.1f}/s; fault-free {BASELINE_MESSAGES}: "
        f"{BASELINE_MESSAGES / baseline_s:.1f}/s. Retried replies: {dict(replies)} "
        f"(0: no reply); faults injected: {dict(faults)}"
    )
