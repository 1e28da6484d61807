"""Operating the system: Flower, the metrics endpoint, scaling the pools, beat."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from beat import autoscaler
from mailserver.supervisor.services import control_app, flower_credentials
from mailserver.supervisor.stack import Stack
from tasks import poolsize, redisauth, sizing
from tasks.plugins.chaos import marker
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPOOL_REPORT_KEY
from tasks.wire.submit import submit
from tests.conftest import mailscan, make_message, probe_pools_now, send, stack_env, wait_for

pytestmark = pytest.mark.integration


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - our own loopback URLs
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


@pytest.fixture(scope="module")
def flower(stack: Stack, settings: Settings) -> Iterator[str]:
    stack.start(["flower"], progress=lambda _: None)
    yield f"http://127.0.0.1:{settings.flower_port}"
    stack.stop(["flower"])


def test_flower_shows_both_pools_and_the_jobs_of_a_message(flower, settings):
    auth = flower_credentials(settings)
    assert get(f"{flower}/api/workers")[0] == 401
    pools = {f"av@{settings.hostname}", f"spam@{settings.hostname}"}

    def listed() -> bool:
        status, body = get(f"{flower}/api/workers?refresh=1", auth)
        return status == 200 and pools <= set(json.loads(body))

    wait_for(listed, 20, "both pools in Flower's worker list")
    reply = send(make_message(X_Test_Id="flower-1"), settings.smtp_port)
    spool_id = reply.text.rsplit(" as ", 1)[1]

    def jobs() -> dict[str, dict]:
        tasks = json.loads(get(f"{flower}/api/tasks", auth)[1])
        return {k: v for k, v in tasks.items() if k.startswith(spool_id)}

    wait_for(lambda: len(jobs()) == 2, 20, "both jobs in Flower")
    workers = {task["name"]: task["worker"] for task in jobs().values()}
    assert workers == {
        "tasks.scan.av": f"av@{settings.hostname}",
        "tasks.scan.spam": f"spam@{settings.hostname}",
    }
    # Each job's result is its verdict in one line.
    wait_for(lambda: all(t.get("result") for t in jobs().values()), 20, "both results")
    results = {task["name"]: task["result"] for task in jobs().values()}
    assert results["tasks.scan.av"].startswith("'clean: clamav clean")
    assert results["tasks.scan.spam"].startswith("'ham: spamassassin ham")


def scrape(settings: Settings) -> dict[tuple[str, tuple], float]:
    _, text = get(f"http://127.0.0.1:{settings.metrics_port}/metrics")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_move_when_mail_is_sent(stack, settings):
    before = scrape(settings)
    assert ("mailscan_queue_depth", (("queue", "av"),)) in before
    delivered = ("mailscan_messages_total", (("action", "deliver"),))
    clamav_clean = ("mailscan_scans_total", (("plugin", "clamav"), ("pool", "av"),
                                             ("status", "clean")))  # fmt: skip
    for n in range(3):
        assert send(make_message(X_Test_Id=f"metrics-{n}"), settings.smtp_port).code == 250
    after = scrape(settings)
    assert after[delivered] - before.get(delivered, 0) == 3
    assert after[clamav_clean] - before.get(clamav_clean, 0) == 3
    count = ("mailscan_scan_duration_seconds_count", (("plugin", "spamassassin"),))
    assert after[count] >= 3
    assert after[("mailscan_redis_up", ())] == 1


def test_mailserver_reports_its_spool_for_the_alarm(stack, settings):
    client = redisauth.connect(settings)
    wait_for(lambda: client.hget(SPOOL_REPORT_KEY, settings.hostname), 10, "a spool report")
    report = json.loads(client.hget(SPOOL_REPORT_KEY, settings.hostname))
    assert time.time() - report["at"] < 10
    assert report["oldest_age_s"] < settings.spool_alarm_age_s


def test_scale_sets_the_pool_size_the_workers_report(stack, settings):
    node = f"av@{settings.hostname}"
    try:
        grown = mailscan("scale", "av", "4")
        assert grown.returncode == 0, grown.stderr
        assert f"{node}: 4 processes" in grown.stdout
        report = json.loads(mailscan("status", "--json").stdout)
        assert report["pools"]["av"]["workers"][node]["concurrency"] == 4
    finally:
        shrunk = mailscan("scale", "av", "2")
    assert f"{node}: 2 processes" in shrunk.stdout
    refused = mailscan("scale", "av", "--autoscale", "6,2")
    assert refused.returncode == 2
    assert "MAILSCAN_AV_AUTOSCALE=6,2" in refused.stderr


def test_status_shows_each_pools_engines_and_that_it_reads_the_fronts_spool(stack, settings):
    probe_pools_now(settings)
    status = mailscan("status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    spool_id = (settings.spool_dir / "spool-id").read_text().strip()
    assert f"SMTP front {settings.hostname}: spool {spool_id}," in status.stdout
    assert "big messages to the pools through the spool" in status.stdout
    for pool, engine in (("av", "clamav ClamAV "), ("spam", "spamassassin PONG")):
        probe = next(
            n for n, line in enumerate(lines) if f"  {pool}@{settings.hostname}: health" in line
        )
        assert engine in lines[probe], lines[probe]
        # Fronts of other tests share this Redis: the line names the ones the pool sees.
        seen = f"    reads big messages from the spool of {settings.hostname} at "
        assert lines[probe + 1].startswith(seen), status.stdout
    report = json.loads(mailscan("status", "--json").stdout)
    probed = report["pools"]["av"]["probes"][f"av@{settings.hostname}"]
    assert probed["spool"]["id"] == spool_id


def test_status_says_how_many_spamd_children_and_pool_processes_and_why(stack, settings):
    cpus = sizing.this_machine().count  # the test stack sets none of these counts
    wider = {**os.environ, "MAILSCAN_SPAM_CONCURRENCY": str(cpus + 1)}
    status = mailscan("status", env=wider)
    assert status.returncode == 0, status.stderr
    assert "sizes `mailscan up` chooses on this host:" in status.stdout
    for line in (
        f"  spamd: {cpus} children ({cpus} usable CPUs; MAILSCAN_SPAMD_CHILDREN unset)",
        f"  av pool: {cpus} processes ({cpus} usable CPUs; MAILSCAN_AV_CONCURRENCY unset)",
        f"  spam pool: {cpus + 1} processes (MAILSCAN_SPAM_CONCURRENCY={cpus + 1}; "
        "1 more than spamd's children: their requests wait for a free child)",
    ):
        assert line in status.stdout.splitlines(), status.stdout


def test_backlog_autoscaler_grows_then_shrinks_the_pool(faults, fs):
    app, client = control_app(fs), redisauth.connect(fs)
    node = f"av@{fs.hostname}"
    slow = f"Subject: slow\r\n\r\n{marker('freeze-python').decode()}\r\n".encode()
    for n in range(14):  # each holds a process for the soft limit: a backlog that lasts
        submit(app, client, f"burst{n:04d}{time.time_ns():x}", slow, 600)
    wait_for(lambda: client.llen("av") >= 8, 10, "a queued burst")
    step = autoscaler.step(app, client, "av", fs)
    assert step[node]["to"] > step[node]["from"]
    assert step[node]["refused"] is None
    wait_for(lambda: poolsize.workers_of(app, "av")[node] == step[node]["to"], 10, "growth")
    wait_for(lambda: client.llen("av") == 0, 120, "the burst to drain")
    wait_for(lambda: _answered_idle(app, node), 60, "idle")

    steps: list[str] = []
    sizes: list[int] = []

    def shrunk() -> bool:  # one process fewer per step while nothing waits
        step = autoscaler.step(app, client, "av", fs).get(node) or {}
        stats = app.control.inspect(destination=[node], timeout=1.0).stats() or {}
        if node not in stats:
            return False  # no answer in time
        pids = stats[node].get("pool", {}).get("processes")
        said = f"{step.get('from')} -> {step.get('to')}: {step.get('refused')}"
        steps.append(f"{said}, waiting {step.get('waiting')}; pids {pids}")
        sizes.append(poolsize.pool_size(stats[node]))
        return sizes[-1] == fs.pools["av"].scale_min

    try:
        wait_for(shrunk, 60, "the pool back at its minimum")
    except AssertionError as timeout:
        # Each distinct step once, in order: what the pool answered and which processes it had.
        distinct = "\n".join(dict.fromkeys(steps))
        log = faults.log_tail("av-worker", 40)
        raise AssertionError(f"{timeout}; steps:\n{distinct}\n{log}") from timeout
    # Steps come faster than the pool reaps a shrunk process: none may shrink it below its
    # minimum on a report that still lists that process (it once left no process at all).
    assert min(sizes) >= fs.pools["av"].scale_min, "\n".join(dict.fromkeys(steps))
    poolsize.resize(app, node, fs.pools["av"].scale_min, sizing.plan(fs).pools["av"].count)


def _answered_idle(app, node: str) -> bool:
    """The worker said it runs nothing: a worker too busy to answer in time is not idle."""
    active = app.control.inspect(destination=[node], timeout=2).active() or {}
    return node in active and not active[node]


@pytest.fixture
def two_beats(stack, settings) -> Iterator[list[Stack]]:
    """Two beat processes with a 2-second probe period, started together."""
    beats = []
    for name in ("beat-a", "beat-b"):
        env = stack_env(name, 0, health_probe_every_s="2", stats_every_s="2")
        beat = Stack(load_settings(env), env)
        beats.append(beat)
    for beat in beats:
        beat.start(["beat"], progress=lambda _: None)
    yield beats
    for beat in beats:
        beat.stop()


PERIOD_S, PROBES = 2.0, 5
EVERY_PERIOD = ("health-av", "health-spam", "queue-stats", "autoscale", "check-spools")


def test_two_beats_run_each_periodic_task_once_per_period(stack, settings, two_beats):
    def probes() -> dict[str, int]:
        return {pool: stack.log_tail(f"{pool}-worker", 100000).count(f"health probe {pool}:")
                for pool in ("av", "spam")}  # fmt: skip

    before, started = probes(), time.monotonic()
    wait_for(lambda: all(n - before[p] >= PROBES for p, n in probes().items()), 30, "probes")
    window = time.monotonic() - started
    # Two beats sending would run as many probes in half the time.
    assert window >= (PROBES - 1) * PERIOD_S - 1, f"{PROBES} probes in {window:.1f} s"
    sent = [
        set(re.findall(r"Sending due task (\S+)", b.log_tail("beat", 10000))) for b in two_beats
    ]
    assert [bool(tasks) for tasks in sent].count(True) == 1, "exactly one beat may send"
    assert set(EVERY_PERIOD) <= set().union(*sent), sent


@pytest.fixture(scope="module")
def ops_worker(stack: Stack) -> Iterator[Stack]:
    stack.start(["ops-worker"], progress=lambda _: None)
    yield stack
    stack.stop(["ops-worker"])


def run_on_ops(settings: Settings, task: str):
    return control_app(settings).send_task(task).get(timeout=60)


def test_retention_forgets_old_crashdumps_and_their_decisions(ops_worker, settings):
    from tasks.crashes import records as crashdumps
    from tasks.crashes.store import CrashStore
    from tasks.wire.keys import ASSIST_STATE_KEY

    client = redisauth.connect(settings)
    store = CrashStore(client, settings.crashdump_dir)
    incident = crashdumps.Incident("exception", "av", {"name": "chaos"}, "old-job", {"blob": "x"})
    old, recent = crashdumps.record(incident), crashdumps.record(incident)
    old["ts"] -= (settings.crashdump_max_age_days + 1) * 86400
    recent["job_id"] = "recent-job"
    for dump in (old, recent):
        assert store.save(dump) == "redis"
    client.hset(ASSIST_STATE_KEY, old["id"], '{"state": "declined"}')
    assert run_on_ops(settings, "beat.tasks.crashdump_retention") >= 1
    assert store.get(old["id"]) is None
    assert not client.hexists(ASSIST_STATE_KEY, old["id"])
    assert store.get(recent["id"])["job_id"] == "recent-job"
    group = next(g for g in store.groups() if g["signature"] == old["signature"])
    assert group["count"] >= 2  # the history of the failure stays


def test_spool_check_and_queue_snapshots_run_on_the_ops_worker(ops_worker, settings):
    assert run_on_ops(settings, "beat.tasks.check_spools") == []
    snapshot = run_on_ops(settings, "beat.tasks.queue_stats")
    assert snapshot["av"]["scans_done"] > 0
    assert snapshot["av"]["depth"] == 0
