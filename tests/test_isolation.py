"""Isolation, shown on a stack of its own with the chaos plugin in the av pool: a plugin that
freezes, crashes, leaks or loses its backend never stops mail, nothing is lost or delivered
twice, and the crashdump points at the failing plugin code."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from mailserver.front import admission
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.store import CrashStore
from tasks.plugins.chaos import marker
from tasks.settings import Settings
from tests.conftest import (
    EICAR,
    HARD_S,
    POOLS,
    SOFT_S,
    LongestCommand,
    find_delivered,
    mailscan,
    make_message,
    port,
    probe_pools_now,
    send,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def crashes(faults, fs) -> CrashStore:
    client = redisauth.connect(fs)
    for key in client.scan_iter("mailscan:crash*"):
        client.delete(key)
    return CrashStore(client, fs.crashdump_dir)


def chaos_message(action: str, test_id: str):
    return make_message(body=f"Please look: {marker(action).decode()} thanks.", X_Test_Id=test_id)


def dumps_of(store: CrashStore, kind: str, count: int = 1, timeout_s: float = 30) -> list[dict]:
    def found() -> list[dict]:
        return [d for d in store.records() if d["kind"] == kind]

    wait_for(lambda: len(found()) >= count, timeout_s, f"{count} crashdump(s) of kind {kind}")
    return found()


def incidents(store: CrashStore, kind: str) -> int:
    """How many incidents of ``kind`` the groups counted, with or without a full record."""
    return sum(group["count"] for group in store.groups() if group["kind"] == kind)


def pool_processes(stack: Stack, name: str = "av-worker") -> set[int]:
    pid = stack.pid(name)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


def assert_mail_flows(settings: Settings, test_id: str) -> float:
    """A clean message goes through; returns how long it took."""
    started = time.monotonic()
    reply = send(make_message(X_Test_Id=test_id), settings.smtp_port)
    assert reply.code == 250, reply
    assert len(find_delivered(settings.maildir, test_id.encode())) == 1
    return time.monotonic() - started


def test_freeze_in_python_is_cut_by_the_soft_limit(faults, fs, crashes):
    started = time.monotonic()
    reply = send(chaos_message("freeze-python", "freeze-py"), fs.smtp_port)
    waited = time.monotonic() - started
    assert reply.code == 451  # av failure policy: tempfail, the sender keeps the message
    assert SOFT_S <= waited < HARD_S
    [dump] = dumps_of(crashes, "freeze")
    assert dump["plugin"]["name"] == "chaos"
    assert dump["exception"]["type"] == "SoftTimeLimitExceeded"
    assert "in freeze_python" in dump["traceback"]
    assert "chaos.py" in dump["threads"]
    assert "freeze-py" not in json.dumps(dump)  # never the message body or headers
    assert dump["message"]["size"] > 0
    assert find_delivered(fs.maildir, b"freeze-py") == []
    assert_mail_flows(fs, "after-freeze-py")


def test_freeze_in_c_holding_the_gil_is_killed_at_the_hard_limit(faults, fs, crashes):
    before = pool_processes(faults)
    started = time.monotonic()
    reply = send(chaos_message("freeze-c", "freeze-c"), fs.smtp_port)
    assert reply.code == 451
    assert time.monotonic() - started >= HARD_S
    [dump] = dumps_of(crashes, "freeze")
    assert dump["exception"]["type"] == "TimeLimitExceeded"
    # Written by faulthandler's watchdog thread while the plugin held the GIL.
    assert "chaos.py" in dump["faulthandler"]
    assert "freeze_c" in dump["faulthandler"]
    assert dump["worker"]["pid"] in before
    frozen = dump["worker"]["pid"]
    wait_for(lambda: frozen not in pool_processes(faults), 20, "the frozen process gone")
    wait_for(lambda: len(pool_processes(faults)) == len(before), 20, "a new pool process")
    assert_mail_flows(fs, "after-freeze-c")


@pytest.mark.parametrize(
    ("action", "signal_name", "exit_status"),
    [("segfault", "SIGSEGV", None), ("abort", "SIGABRT", None), ("exit", None, 3)],
)
def test_a_message_that_kills_the_plugin_every_time_is_given_up(
    faults, fs, crashes, action, signal_name, exit_status
):
    poison = chaos_message(action, f"poison-{action}")
    reply = send(poison, fs.smtp_port)
    assert reply.code == 451
    # Bounded, never a loop: each attempt counted in the group of that failure (its records
    # are rate-limited, one per window).
    deaths = dumps_of(crashes, "crash")
    wait_for(lambda: incidents(crashes, "crash") == fs.max_attempts, 30, "every death counted")
    for dump in deaths:
        assert dump["signal"] == signal_name
        assert dump["exit_status"] == exit_status
        assert dump["plugin"]["name"] == "chaos"
    if signal_name:
        assert "chaos.py" in deaths[0]["faulthandler"]
        assert f"in {action}" in deaths[0]["faulthandler"]
    [given_up] = dumps_of(crashes, "poison")
    assert "unscannable" in given_up["note"]
    # The same message again is recognised and given up at once, killing nothing.
    started = time.monotonic()
    assert send(poison, fs.smtp_port).code == 451
    assert time.monotonic() - started < SOFT_S
    assert incidents(crashes, "crash") == fs.max_attempts
    assert find_delivered(fs.maildir, f"poison-{action}".encode()) == []
    assert_mail_flows(fs, f"after-{action}")


def test_a_leaking_plugin_is_recycled_without_crashdump_or_lost_mail(faults, fs, crashes):
    before = pool_processes(faults)
    for n in range(6):
        assert send(chaos_message("leak", f"leak-{n}"), fs.smtp_port).code == 250
    for n in range(6):
        assert len(find_delivered(fs.maildir, f"leak-{n}".encode())) == 1
    # 6 x 64 MB over two processes: at least one passes the 240 MB ceiling and is replaced.
    wait_for(lambda: before - pool_processes(faults), 20, "a recycled pool process")
    assert "recycled" in faults.log_tail("av-worker", 200)
    assert crashes.records() == []


@pytest.mark.parametrize(
    ("action", "kind"), [("raise", "exception"), ("drop-connection", "connection")]
)
def test_plugin_exceptions_and_dropped_connections_become_crashdumps(
    faults, fs, crashes, action, kind
):
    assert send(chaos_message(action, f"fail-{action}"), fs.smtp_port).code == 451
    [dump] = dumps_of(crashes, kind)
    assert "chaos.py" in dump["traceback"]
    assert dump["versions"]["python"]
    assert_mail_flows(fs, f"after-{action}")


FLOOD_MESSAGES = 12


def test_a_flood_of_one_failure_keeps_one_record_per_window_and_counts_every_incident(
    faults, fs, crashes
):
    from concurrent.futures import ThreadPoolExecutor

    def fail(n: int) -> int:
        return send(chaos_message("raise", f"flood-{n}"), fs.smtp_port).code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(fail, range(FLOOD_MESSAGES))) == {451}
    wait_for(lambda: incidents(crashes, "exception") >= FLOOD_MESSAGES, 30, "every incident")
    [group] = [g for g in crashes.groups() if g["kind"] == "exception"]
    assert group["count"] == FLOOD_MESSAGES
    records = [d for d in crashes.records() if d["signature"] == group["signature"]]
    windows = [int(d["ts"] // fs.crashdump_full_every_s) for d in records]
    assert sorted(windows) == sorted(set(windows)), "more than one full record in a window"
    assert group["last_id"] in {d["id"] for d in records}  # the group leads to a full record
    assert float(group["last_seen"]) >= max(d["ts"] for d in records)
    assert_mail_flows(fs, "after-flood")


def test_a_huge_exception_is_capped_keeping_where_it_started_and_ended(faults, fs, crashes):
    from tasks.plugins.chaos import HUGE_ERROR_CHARS

    assert send(chaos_message("huge-error", "huge-error"), fs.smtp_port).code == 451
    [dump] = dumps_of(crashes, "exception")
    message = dump["exception"]["message"]
    assert message.startswith("chaos: injected failure quoting xxx")
    assert "characters cut" in message
    # Where it failed survives the cut, and what was cut is said.
    assert "in fail_hugely" in dump["traceback"]
    assert "chaos.py" in dump["traceback"]
    assert "characters cut" in dump["traceback"]
    assert len(json.dumps(dump)) < HUGE_ERROR_CHARS / 10
    assert_mail_flows(fs, "after-huge-error")


def test_spamd_frozen_past_the_hard_limit_then_resumed(faults, fs, crashes):
    spamd = faults.pid("spamd")
    stopped = time.monotonic()
    os.killpg(spamd, signal.SIGSTOP)
    try:
        for n in range(5):
            assert send(make_message(X_Test_Id=f"spamd-down-{n}"), fs.smtp_port).code == 250
        # The breaker opened after 3 failures: the last messages did not wait for spamd.
        quick = time.monotonic()
        assert send(make_message(X_Test_Id="spamd-down-quick"), fs.smtp_port).code == 250
        assert time.monotonic() - quick < 2.0
        time.sleep(max(0.0, HARD_S + 1 - (time.monotonic() - stopped)))
    finally:
        os.killpg(spamd, signal.SIGCONT)
    for n in range(5):
        [delivered] = find_delivered(fs.maildir, f"spamd-down-{n}".encode())
        assert b"X-Spam-Status: Unknown, scan failed" in delivered
    [dump] = dumps_of(crashes, "connection")[:1]
    assert dump["plugin"]["name"] == "spamassassin"
    assert dump["versions"]["backend"].startswith("spamd, protocol SPAMD/")

    def scored_again() -> bool:
        send(make_message(X_Test_Id="spamd-back"), fs.smtp_port)
        return any(b"X-Spam-Score:" in m for m in find_delivered(fs.maildir, b"spamd-back"))

    wait_for(scored_again, 30, "spam scores after spamd resumed")


def test_clamd_killed_and_restarted(faults, fs, crashes):
    os.killpg(faults.pid("clamd"), signal.SIGKILL)
    reply = send(make_message(X_Test_Id="clamd-down"), fs.smtp_port)
    assert reply.code == 451  # never delivered unscanned
    assert find_delivered(fs.maildir, b"clamd-down") == []
    [dump] = dumps_of(crashes, "connection")[:1]
    assert dump["plugin"]["name"] == "clamav"
    assert dump["versions"]["backend"].startswith("ClamAV ")  # learnt before clamd died
    faults.restart("clamd")

    def flows() -> bool:
        return send(make_message(X_Test_Id="clamd-back"), fs.smtp_port).code == 250

    wait_for(flows, 30, "mail flowing after clamd came back")
    assert len(find_delivered(fs.maildir, b"clamd-back")) == 1


def test_redis_restarted_in_a_stream_loses_and_duplicates_nothing(faults, fs):
    replies: dict[str, int] = {}

    def stream() -> None:
        for n in range(30):
            test_id = f"redis-stream-{n:02d}"
            try:
                replies[test_id] = send(make_message(X_Test_Id=test_id), fs.smtp_port).code
            except OSError:
                replies[test_id] = 0
            time.sleep(0.1)

    sender = threading.Thread(target=stream)
    pids = {name: faults.pid(name) for name in POOLS}
    sender.start()
    wait_for(lambda: len(replies) >= 8, 60, "the stream to start")
    faults.restart("redis")
    deadline, revived = time.monotonic() + 180, []
    while sender.is_alive() and time.monotonic() < deadline:
        revived += faults.revive()  # as `mailscan up` and compose's restart policy do
        sender.join(1.0)
    # A revival would hide a service that Redis's restart took down.
    assert revived == [], f"died while Redis restarted: {revived}"
    assert {name: faults.pid(name) for name in POOLS} == pids
    assert len(replies) == 30
    for test_id, code in replies.items():
        delivered = len(find_delivered(fs.maildir, test_id.encode()))
        assert delivered == (1 if code == 250 else 0), (test_id, code, delivered)
        assert code in (250, 451), (test_id, code)
    assert replies["redis-stream-29"] == 250  # flowing again by the end


def answered_soon_through(
    fs: Settings, test_id: str, taken: Callable[[], bool], fault: Callable[[], None]
) -> None:
    """A slow message (the chaos plugin holds its av job 1.5 s) meets ``fault`` once its job
    is ``taken``: it is answered 250 long before its scan deadline, and delivered once."""
    answered: dict[str, float] = {}

    def sender() -> None:
        answered["code"] = send(chaos_message("slow", test_id), fs.smtp_port).code
        answered["at"] = time.monotonic()

    thread, started = threading.Thread(target=sender), time.monotonic()
    thread.start()
    wait_for(taken, 30, "the slow job to be taken")
    fault()
    thread.join(fs.scan_deadline_s + 10)
    assert answered.get("code") == 250
    assert answered["at"] - started < fs.scan_deadline_s / 3, "waited for the scan deadline"
    assert len(find_delivered(fs.maildir, test_id.encode())) == 1


def test_a_job_redis_took_away_while_it_ran_is_sent_again_not_waited_out(faults, fs):
    """A pool cancels the job it runs when it loses Redis, and cannot put it back while
    Redis is down: the front sends it again once its subscriber is back, so the message is
    answered long before its scan deadline, and delivered once."""
    client = redisauth.connect(fs)
    # The av job is taken (kombu's unacknowledged jobs) and runs for the chaos plugin's 1.5 s.
    taken = lambda: client.hlen("unacked") >= 1  # noqa: E731
    answered_soon_through(fs, "restart-slow", taken, lambda: faults.restart("redis"))


def test_crashdump_is_kept_locally_while_redis_is_away_and_moved_later(fs, crashes, tmp_path):
    from tasks.crashes import records as crashdumps

    incident = crashdumps.Incident("exception", "av", {"name": "chaos"}, "job-1", {"blob": "x"})
    dump = crashdumps.record(incident)
    away = CrashStore(redis.Redis.from_url("redis://127.0.0.1:1/0"), tmp_path)
    assert away.save(dump) == "spooled"
    assert crashes.get(dump["id"]) is None
    back = CrashStore(crashes.redis, tmp_path)
    assert back.drain() == 1
    assert back.get(dump["id"])["job_id"] == "job-1"
    assert list((tmp_path / "pending").iterdir()) == []


def test_crashdumps_command_lists_and_shows_records(faults, fs, fault_env, crashes):
    import subprocess

    assert send(chaos_message("raise", "cli-raise"), fs.smtp_port).code == 451
    [dump] = dumps_of(crashes, "exception")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return mailscan("crashdumps", *args, env=fault_env)

    listing = cli("list")
    assert dump["id"] in listing.stdout
    assert "exception" in listing.stdout
    assert f"{dump['signature']}: 1x chaos exception RuntimeError" in listing.stdout
    shown = json.loads(cli("show", dump["id"], "--json").stdout)
    assert shown["traceback"] == dump["traceback"]
    text = cli("show", dump["id"]).stdout
    assert "RuntimeError: chaos: injected plugin failure" in text
    assert "--- traceback ---" in text
    missing = cli("show", "0" * 32)
    assert missing.returncode == 2
    assert "no crashdump" in missing.stderr


def test_a_message_record_names_the_crashdumps_of_its_failures(faults, fs, fault_env, crashes):
    """The first failure keeps its own record; a repeat in the same minute, counted in its
    group only, points at the group's record of the same failure."""
    for test_id in ("linked-first", "linked-repeat"):
        body = f"Please look: {marker('raise').decode()} ({test_id})"
        assert send(make_message(body=body, subject=test_id), fs.smtp_port).code == 451
    [dump] = dumps_of(crashes, "exception")
    wait_for(lambda: incidents(crashes, "exception") == 2, 30, "both incidents counted")
    for test_id in ("linked-first", "linked-repeat"):
        spool_id = logged_spool_id(fault_env, test_id)
        shown = json.loads(mailscan("messages", "show", spool_id, "--json", env=fault_env).stdout)
        assert shown["crashdumps"] == [dump["id"]], test_id
    text = mailscan("messages", "show", spool_id, env=fault_env).stdout
    assert f"crashdump: {dump['id']} (mailscan crashdumps show {dump['id']})" in text


def logged_spool_id(env: dict[str, str], test_id: str) -> str:
    """The spool id the message log gave the message with the subject ``test_id``."""
    found: list[dict] = []

    def logged() -> bool:
        listing = mailscan("messages", "--subject", test_id, "--json", env=env)
        found[:] = json.loads(listing.stdout or "[]")
        return bool(found)

    wait_for(logged, 30, f"{test_id} in the message log")
    return found[0]["spool_id"]


@pytest.mark.parametrize(
    ("limit", "jobs", "stalled_s"),
    [
        ({"MAILSCAN_MAX_QUEUED_JOBS": "3"}, 5, 0.0),  # more jobs than the cap
        ({"MAILSCAN_SCAN_DEADLINE_S": "4"}, 2, 2.5),  # the oldest job waited half a deadline
    ],
)
def test_a_backlog_beyond_the_limit_is_refused_at_once_then_mail_flows(
    faults, fs, fault_env, limit, jobs, stalled_s
):
    from tasks.settings import load_settings

    env = {**fault_env, **limit, "MAILSCAN_SMTP_PORT": str(fs.smtp_port + 2),
           "MAILSCAN_METRICS_PORT": str(port(19139)),
           "MAILSCAN_VAR_DIR": str(fs.var_dir / f"busy-front-{jobs}")}  # fmt: skip
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        refuse_then_flow(faults, fs, front_settings, jobs, stalled_s)
    finally:
        front.stop()


def refuse_then_flow(faults, fs, front_settings, jobs: int, stalled_s: float) -> None:
    from mailserver.supervisor.services import control_app
    from tasks.wire.submit import submit

    spam_pool, client = faults.pid("spam-worker"), redisauth.connect(fs)
    os.killpg(spam_pool, signal.SIGSTOP)  # the spam pool stops taking jobs: a backlog builds
    try:
        for n in range(jobs):
            blob_id = f"backlog{n}{time.time_ns():x}"
            submit(control_app(fs), client, blob_id, b"Subject: x\r\n\r\nx", 60)
        # A stopped worker may still own one job: Redis hands it to its pending BRPOP.
        wait_for(lambda: client.llen("spam") >= jobs - 1, 10, "a spam backlog")
        time.sleep(stalled_s)
        started = time.monotonic()
        busy = send(make_message(X_Test_Id="busy-1"), front_settings.smtp_port)
        assert busy.code == 451
        assert "busy" in busy.text
        assert time.monotonic() - started < 2.0  # refused at once, not after the deadline
    finally:
        os.killpg(spam_pool, signal.SIGCONT)
    wait_for(lambda: client.llen("spam") == 0, 30, "the backlog scanned")
    time.sleep(admission.MAX_AGE_S)  # the front's reading of the backlog may be this old
    assert send(make_message(X_Test_Id="busy-2"), front_settings.smtp_port).code == 250
    assert find_delivered(front_settings.maildir, b"busy-1") == []
    assert len(find_delivered(front_settings.maildir, b"busy-2")) == 1


@pytest.fixture
def pools_without_the_spool(faults, fs, tmp_path) -> Iterator[Stack]:
    """Both pools reading a spool folder of their own, as pools on another machine would."""
    for name in POOLS:
        service = faults.services[name]
        service.env = {**service.env, "MAILSCAN_SPOOL_DIR": str(tmp_path / "not-the-fronts")}
        faults.restart(name)
    yield faults
    if "MAILSCAN_SPOOL_DIR" in faults.services["av-worker"].env:
        give_the_pools_the_spool_again(faults, fs)
        faults.restart("mailserver")


def give_the_pools_the_spool_again(faults: Stack, fs: Settings) -> None:
    for name in POOLS:
        service = faults.services[name]
        service.env = {k: v for k, v in service.env.items() if k != "MAILSCAN_SPOOL_DIR"}
        faults.restart(name)
    probe_pools_now(fs)  # the pools' last probes must not say that they do not see it


def front_log(stack: Stack) -> str:
    return (stack.log_dir / "mailserver.log").read_text(errors="replace")


def send_big(fs: Settings, test_id: str, attachment: bytes | None = None) -> int:
    noise = base64.encodebytes(random.Random(11).randbytes(fs.shared_spool_from_bytes))
    message = make_message(body=noise.decode(), attachment=attachment, X_Test_Id=test_id)
    return send(message, fs.smtp_port).code


def test_pools_that_cannot_read_the_spool_get_big_messages_through_redis(
    pools_without_the_spool, fs
):
    stack, logged_before = pools_without_the_spool, len(front_log(pools_without_the_spool))
    # Scanned all the same: neither refused for a deployment's mistake nor let through.
    assert (send_big(fs, "big-0", EICAR), send_big(fs, "big-1")) == (550, 250)
    assert len(find_delivered(fs.maildir, b"X-Test-Id: big-1")) == 1
    logged = front_log(stack)[logged_before:]
    assert logged.count("cannot read big messages from the spool") == 1, logged
    assert "MAILSCAN_SHARED_SPOOL_FROM_BYTES=0" in logged
    # Only the first message was looked for in the spool: the second went through Redis.
    av_log = stack.log_tail("av-worker", 400)
    assert av_log.count("MAILSCAN_SHARED_SPOOL_FROM_BYTES=0") == 1, av_log

    # The pools' health probes say it too: to the operator, and to a front just started,
    # which then sends even its first big message through Redis.
    probe_pools_now(fs)
    status = mailscan("status", env=stack.env).stdout
    assert status.count(f"does not see the spool of {fs.hostname}") == 2, status
    assert "big messages to the pools through Redis" in status
    logged_before = len(front_log(stack))
    stack.restart("mailserver")
    wait_for(lambda: "its health probe found" in front_log(stack)[logged_before:])
    assert send_big(fs, "big-2") == 250
    assert len(find_delivered(fs.maildir, b"X-Test-Id: big-2")) == 1
    assert stack.log_tail("av-worker", 400).count("MAILSCAN_SHARED_SPOOL_FROM_BYTES=0") == 1

    # Once every pool sees the spool again, big messages go through it again, unrestarted.
    give_the_pools_the_spool_again(stack, fs)
    wait_for(lambda: "through it again" in front_log(stack)[logged_before:], 30, "the spool shared")
    with LongestCommand(fs) as redis_saw:
        assert send_big(fs, "big-3", EICAR) == 550  # found: the pools read the spool file
    assert redis_saw.longest < 64 * 1024 < fs.shared_spool_from_bytes
