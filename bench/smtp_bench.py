"""Throughput and latency of mailscan's SMTP front against calling clamd and spamd directly.

Run from the repository root (see bench/README.md):

    .venv/bin/python -m bench.smtp_bench --messages 200 --concurrency 2

One run starts its own Stack (Redis, clamd, spamd, both worker pools and the SMTP front, no
beat and no Flower) in a temporary folder on loopback ports of its own, then measures
(a) the baseline: every message scanned by clamd (INSTREAM) and spamd (SYMBOLS) directly,
and (b) mailscan: the same messages sent over SMTP in pre-queue mode. Both use the same
number of client threads. The table goes to standard output and to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import platform
import re
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from aiospamc.client import Client
from aiospamc.connections import TcpConnectionManager, Timeout
from aiospamc.requests import Request
from clamav_client.clamd import ClamdNetworkSocket
from loguru import logger

from mailserver.stack import Stack, StackError, binary
from tasks.constants import ENV_PREFIX, RESULT_KEY_PREFIX
from tasks.settings import Settings, load_settings

logger.disable("aiospamc")  # one INFO line per request otherwise

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CORPUS = "../shared/corpus/sa-public"
CORPUS_FOLDERS = ("nice", "spam")
SERVICES = ("redis", "clamd", "spamd", "av-worker", "spam-worker", "mailserver")
# Preferred ports, away from the defaults (6390, 3320, 7830, 2525, 5555) and the tests' ports.
PORTS = {"redis": 26390, "clamd": 23320, "spamd": 27830, "smtp": 22525, "flower": 25555}
LOOPBACK = "127.0.0.1"
MAX_MESSAGES = 20_000
MAX_CONCURRENCY = 32
PROGRESS_EVERY_S = 5.0
SENDER, RECIPIENT = "bench@example.test", "inbox@example.test"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOG_TROUBLE = re.compile(r"\b(warn|warning|error|critical|traceback)\b", re.IGNORECASE)
QUEUE_ID = re.compile(r"\b[0-9a-f]{16,}\b")
_per_thread = threading.local()  # the baseline's spamd client, one per client thread


# --- the message set -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    source: str  # "nice/001.eml"
    data: bytes  # CRLF line endings, as SMTP carries them


def load_corpus(folder: Path) -> list[Sample]:
    files = sorted(p for sub in CORPUS_FOLDERS for p in (folder / sub).glob("*.eml"))
    if not files:
        raise SystemExit(f"smtp_bench: no *.eml under {folder}/{{{','.join(CORPUS_FOLDERS)}}}")
    return [Sample(f"{p.parent.name}/{p.name}", crlf(p.read_bytes())) for p in files]


def crlf(data: bytes) -> bytes:
    data = re.sub(rb"\r?\n", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def tagged(sample: Sample, bench_id: str) -> bytes:
    """A copy no scanner has seen: clamd caches verdicts by content."""
    return f"X-Bench-Id: {bench_id}\r\n".encode() + sample.data


# --- one message, each path ------------------------------------------------------------------


@dataclass
class Result:
    latency_s: float
    outcome: str
    ended: float  # perf_counter() when the answer arrived
    detail: dict[str, Any] = field(default_factory=dict)


def direct_scan(settings: Settings, message: bytes) -> Result:
    """The baseline: what the two pools' plugins do, without Redis, Celery or SMTP."""
    started = time.perf_counter()
    try:
        clamd = clamd_status(settings, message)
        between = time.perf_counter()
        spamd = spamd_status(settings, message)
    except Exception as err:  # any failure is an outcome to count, not a crash
        _per_thread.spamd = None  # a half-done request may be left on its loop: start afresh
        ended = time.perf_counter()
        return Result(ended - started, "error", ended, {"error": f"{type(err).__name__}: {err}"})
    ended = time.perf_counter()
    detail = {
        "clamd": clamd,
        "spamd": spamd,
        "clamd_s": between - started,
        "spamd_s": ended - between,
    }
    outcome = "ok" if "error" not in (clamd, spamd) else "error"
    return Result(ended - started, outcome, ended, detail)


def clamd_status(settings: Settings, message: bytes) -> str:
    endpoint = settings.clamd
    client = ClamdNetworkSocket(endpoint.host, endpoint.port, timeout=settings.clamd_timeout_s)
    status, _ = client.instream(io.BytesIO(message)).get("stream", ("error", None))
    return status


def spamd_client(settings: Settings) -> tuple[asyncio.AbstractEventLoop, Client]:
    """An event loop and an aiospamc client per thread, made once, as the plugin makes them
    per pool process: the one-call helpers (``aiospamc.symbols``) build a TLS context on every
    call, about 30 ms of CPU, even for plain TCP, and would slow the baseline down."""
    if getattr(_per_thread, "spamd", None) is None:
        endpoint, timeout = settings.spamd, Timeout(total=settings.spamd_timeout_s)
        manager = TcpConnectionManager(endpoint.host, endpoint.port, None, timeout)
        _per_thread.spamd = (asyncio.new_event_loop(), Client(manager))
    return _per_thread.spamd


def spamd_status(settings: Settings, message: bytes) -> str:
    if len(message) > settings.spam_max_bytes:
        return "skipped"  # as the spamassassin plugin does
    loop, client = spamd_client(settings)
    response = loop.run_until_complete(client.request(Request("SYMBOLS", body=message)))
    spam = response.headers.get("Spam")
    if spam is None:
        return "error"
    return "spam" if spam.value else "ham"


def smtp_send(settings: Settings, message: bytes, timeout_s: float) -> Result:
    """One connection per message; latency is connect to the reply after the final dot."""
    started = time.perf_counter()
    try:
        code, text, answered = smtp_transaction(settings, message, timeout_s)
    except smtplib.SMTPResponseException as err:
        code, text, answered = err.smtp_code, err.smtp_error, time.perf_counter()
    except (OSError, smtplib.SMTPException) as err:
        code, text, answered = 0, f"{type(err).__name__}: {err}".encode(), time.perf_counter()
    reply = f"{code} {text.decode(errors='replace')}" if code else text.decode()
    reply = QUEUE_ID.sub("<id>", reply)[:70]  # so that equal replies count together
    return Result(answered - started, reply_class(code), answered, {"reply": reply})


def smtp_transaction(
    settings: Settings, message: bytes, timeout_s: float
) -> tuple[int, bytes, float]:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout_s) as client:
        client.ehlo("bench.example.test")
        eight_bit = any(b > 127 for b in message) and client.has_extn("8bitmime")
        code, text = client.mail(SENDER, ["BODY=8BITMIME"] if eight_bit else [])
        if code == 250:
            code, text = client.rcpt(RECIPIENT)
        if code == 250:
            code, text = client.data(message)
        return code, text, time.perf_counter()


def reply_class(code: int) -> str:
    if code == 250:
        return "250"
    if 400 <= code < 600:
        return f"{code // 100}xx"
    return "other" if code else "error"


# --- a phase: N messages at concurrency C ----------------------------------------------------


@dataclass
class Phase:
    name: str
    planned: int
    results: dict[int, Result]
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # per service, during the phase
    others: int = 0  # scanner processes not ours (another stack, a test run) sharing the CPUs

    @property
    def answered(self) -> int:
        return len(self.results)

    @property
    def per_second(self) -> float:
        return self.answered / self.wall_s if self.wall_s > 0 else 0.0

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results.values())


def run_phase(
    name: str, work: Callable[[int], Result], count: int, concurrency: int, limit_s: float
) -> Phase:
    """Run ``work(i)`` for i < count on ``concurrency`` threads. Messages not started within
    ``limit_s`` are skipped; the ones in flight end within their own socket timeouts."""
    deadline = time.monotonic() + limit_s
    stop = threading.Event()

    def guarded(index: int) -> Result | None:
        if stop.is_set() or time.monotonic() > deadline:
            return None
        return work(index)

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
    started = time.perf_counter()
    try:
        futures = {pool.submit(guarded, i): i for i in range(count)}
        _await_all(name, futures, count, started)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    results = {i: f.result() for f, i in futures.items() if not f.cancelled() and f.result()}
    ended = max((r.ended for r in results.values()), default=started)
    return Phase(name, count, results, ended - started)


def _await_all(name: str, futures: dict[Any, int], count: int, started: float) -> None:
    pending, reported = set(futures), started
    while pending:
        _, pending = wait(pending, timeout=1.0)
        now = time.perf_counter()
        if pending and now - reported >= PROGRESS_EVERY_S:
            done = count - len(pending)
            rate = done / (now - started)
            say(f"  {name}: {done}/{count} answered, {rate:.1f} msg/s, {now - started:.0f} s")
            reported = now


def cpu_by_service(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each service and by this process. Each service leads its
    own process group, so its pool children (spamd, prefork workers) are counted with it;
    children that already exited are in their parent's cutime/cstime."""
    groups = {s.process.pid: n for n, s in stack.services.items() if s.process}
    used = dict.fromkeys(groups.values(), 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        fields = text[text.rfind(")") + 2 :].split()  # fields[0] is field 3, "state"
        name = groups.get(int(fields[2]))
        if name:
            used[name] += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used["bench client"] = usage.ru_utime + usage.ru_stime
    return used


def foreign_scanners(stack: Stack) -> int:
    """Processes of spamd, clamd or Celery on this machine that belong to no service of ours:
    they compete for the same CPUs and make the figures noisy."""
    ours = {s.process.pid for s in stack.services.values() if s.process}
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes()
            group = os.getpgid(int(cmdline.parent.name))
        except OSError:
            continue  # the process ended meanwhile
        count += group not in ours and re.search(rb"spamd|clamd|celery", args) is not None
    return count


def measured(stack: Stack, run: Callable[[], Phase]) -> Phase:
    before, others = cpu_by_service(stack), foreign_scanners(stack)
    phase = run()
    after = cpu_by_service(stack)
    phase.cpu_s = {name: after[name] - before.get(name, 0.0) for name in after}
    phase.others = max(others, foreign_scanners(stack))
    return phase


def cpu_line(phase: Phase) -> str:
    per_message = {k: v * 1000 / phase.answered for k, v in phase.cpu_s.items() if v > 0}
    parts = [f"{k} {v:.0f}" for k, v in sorted(per_message.items(), key=lambda kv: -kv[1])]
    total = sum(per_message.values())
    return f"- CPU ms per message, {phase.name}: {', '.join(parts)} (total {total:.0f})"


# --- what mailscan did with the messages -----------------------------------------------------


def delivered(maildir: Path) -> dict[str, tuple[str, str | None]]:
    """X-Bench-Id -> (spool id, X-Spam-Flag) of every message in the Maildir."""
    found: dict[str, tuple[str, str | None]] = {}
    folder = maildir / "new"
    for path in folder.iterdir() if folder.is_dir() else []:
        head = path.read_bytes().split(b"\n\n", 1)[0]
        bench_id = re.search(rb"(?m)^X-Bench-Id: (\S+)", head)
        flag = re.search(rb"(?m)^X-Spam-Flag: (\S+)", head)
        if bench_id:
            spam_flag = flag.group(1).decode() if flag else None
            found[bench_id.group(1).decode()] = (path.name.removesuffix(".mailscan"), spam_flag)
    return found


def pool_job_times(settings: Settings, spool_ids: set[str]) -> dict[str, list[float]]:
    """Seconds each scan job took inside its pool (blob fetch plus engine), from the results
    Celery stored in Redis; keys are ``celery-task-meta-<spool id>-<pool>-<suffix>``."""
    from tasks.celeryapp import app

    client = redis.Redis.from_url(settings.redis_url)
    times: dict[str, list[float]] = {"av": [], "spam": []}
    for key in client.scan_iter(match=RESULT_KEY_PREFIX + "*", count=1000):
        parts = key.decode().removeprefix(RESULT_KEY_PREFIX).rsplit("-", 2)
        if len(parts) != 3 or parts[0] not in spool_ids or parts[1] not in times:
            continue  # a health check, a probe or a warm-up message
        stored = client.get(key)
        meta = app.backend.decode_result(stored) if stored else {}
        result = meta.get("result") if meta.get("status") == "SUCCESS" else None
        if isinstance(result, dict) and "elapsed_ms" in result:
            times[parts[1]].append(result["elapsed_ms"] / 1000)
    return times


def spam_disagreements(
    baseline: Phase, mailscan: dict[str, tuple[str, str | None]], messages: list[Sample]
) -> list[str]:
    """Messages spamd called spam directly but mailscan did not tag (or the other way)."""
    differ = []
    for index, result in sorted(baseline.results.items()):
        mine = mailscan.get(f"m-{index}")
        if result.outcome != "ok" or mine is None:
            continue
        if (result.detail["spamd"] == "spam") != (mine[1] == "YES"):
            differ.append(f"{messages[index].source} (#{index})")
    return differ


def log_trouble(log_dir: Path) -> dict[str, list[str]]:
    """Lines that look like warnings or errors, per service log."""
    trouble = {}
    for path in sorted(log_dir.glob("*.log")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if _bad(ln)]
        trouble[path.stem] = lines
    return trouble


def _bad(line: str) -> bool:
    # A succeeded task's log line may quote a verdict that mentions "error".
    return bool(LOG_TROUBLE.search(line)) and " succeeded in " not in line


# --- the machine and the report --------------------------------------------------------------


def machine_info(settings: Settings) -> dict[str, str]:
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu_model(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "clamd": _first_line(_clamd_version(settings)),
        "spamd": _first_line(_command_output([binary("spamd", "spamd"), "--version"])),
        "Redis": _redis_version(settings),
    }


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def _clamd_version(settings: Settings) -> str:
    endpoint = settings.clamd
    return ClamdNetworkSocket(endpoint.host, endpoint.port, timeout=10).version()


def _redis_version(settings: Settings) -> str:
    return str(redis.Redis.from_url(settings.redis_url).info("server")["redis_version"])


def _command_output(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout or done.stderr


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def main_table(baseline: Phase, mailscan: Phase) -> list[str]:
    phases = (baseline, mailscan)
    latencies = [[r.latency_s for r in p.results.values()] for p in phases]
    outcomes = mailscan.outcomes()
    smtp = ", ".join(f"{k}: {outcomes.get(k, 0)}" for k in ("250", "4xx", "5xx", "error"))
    rows = [
        "| | baseline: clamd + spamd direct | mailscan: SMTP, pre-queue |",
        "|---|---:|---:|",
        "| messages answered | " + " | ".join(f"{p.answered} / {p.planned}" for p in phases),
        "| wall time (s) | " + " | ".join(f"{p.wall_s:.1f}" for p in phases),
        "| **messages/s** | " + " | ".join(f"**{p.per_second:.2f}**" for p in phases),
    ]
    for p in (50, 90, 99, 100):
        label = "max" if p == 100 else f"p{p}"
        rows.append(
            f"| latency {label} (ms) | " + " | ".join(ms(percentile(v, p)) for v in latencies)
        )
    rows.append(f"| outcomes | {counts(baseline.outcomes())} | {smtp} |")
    return [row if row.endswith("|") else row + " |" for row in rows]


def p50_p90(values: list[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 90))}"


def detail_lines(baseline: Phase, mailscan: Phase, checks: dict[str, Any]) -> list[str]:
    direct = list(baseline.results.values())
    clamd = Counter(r.detail.get("clamd", "error") for r in direct)
    spamd = Counter(r.detail.get("spamd", "error") for r in direct)
    clamd_s = [r.detail["clamd_s"] for r in direct if "clamd_s" in r.detail]
    spamd_s = [r.detail["spamd_s"] for r in direct if "spamd_s" in r.detail]
    replies = Counter(r.detail["reply"] for r in mailscan.results.values())
    jobs, differ = checks["jobs"], checks["differ"]
    return [
        f"- baseline verdicts: clamd {counts(clamd)}; spamd {counts(spamd)}",
        f"- baseline time per engine, p50 / p90 ms: clamd {p50_p90(clamd_s)}, "
        f"spamd {p50_p90(spamd_s)}",
        cpu_line(baseline),
        cpu_line(mailscan),
        f"- mailscan replies: {counts(replies)}",
        f"- mailscan Maildir: {checks['delivered']} of the measured messages delivered, "
        f"{checks['flagged']} with X-Spam-Flag: YES",
        f"- mailscan job time inside the pools, p50 / p90 ms: av {p50_p90(jobs['av'])}, "
        f"spam {p50_p90(jobs['spam'])} ({len(jobs['av'])} + {len(jobs['spam'])} jobs)",
        f"- spam verdict, direct spamd vs mailscan header: {len(differ)} differ"
        + (f" ({', '.join(differ[:5])})" if differ else ""),
        f"- errors seen: baseline {_first_errors(baseline)}; mailscan {_first_errors(mailscan)}",
        f"- services that died during the run: {', '.join(checks['died']) or 'none'}",
        f"- other scanner processes on the machine (not this bench's; 0 = quiet): baseline "
        f"{baseline.others}, mailscan {mailscan.others}",
        "- warning/error lines per service log: "
        + ", ".join(f"{k} {len(v)}" for k, v in checks["trouble"].items()),
    ]


def _first_errors(phase: Phase) -> str:
    bad = Counter(
        r.detail.get("error") or r.detail.get("reply", "")
        for r in phase.results.values()
        if r.outcome not in ("ok", "250")
    )
    return "; ".join(f"{v}x {k}" for k, v in bad.most_common(3)) or "none"


def report(
    args: argparse.Namespace,
    machine: dict[str, str],
    phases: tuple[Phase, Phase],
    checks: dict[str, Any],
    messages: list[Sample],
) -> str:
    baseline, mailscan = phases
    ratio = mailscan.per_second / baseline.per_second if baseline.per_second else math.nan
    sizes = [len(m.data) for m in messages]
    head = [
        f"# smtp_bench {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        f"`--messages {args.messages} --concurrency {args.concurrency} --warmup {args.warmup}`, "
        f"corpus `{args.corpus}`: {checks['corpus_files']} files, {len(messages)} messages "
        f"sent per path ({sum(sizes) / 1024:.0f} KiB, largest {max(sizes) / 1024:.0f} KiB); "
        f"av and spam pools and spamd children at concurrency {args.concurrency}.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
    ]
    ratio_line = f"**Throughput mailscan / baseline: {ratio:.2f}**"
    body = [*main_table(baseline, mailscan), "", ratio_line, ""]
    return "\n".join([*head, *body, *detail_lines(baseline, mailscan, checks), ""])


# --- the run ---------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pick_ports() -> dict[str, int]:
    """The preferred ports, or a port the kernel hands out where one is taken."""
    ports: dict[str, int] = {}
    for name, preferred in PORTS.items():
        port = preferred
        while not port_free(port) or port in ports.values():
            with socket.socket() as probe:
                probe.bind((LOOPBACK, 0))
                port = probe.getsockname()[1]
        ports[name] = port
    return ports


def bench_env(var_dir: Path, ports: dict[str, int], concurrency: int) -> dict[str, str]:
    return {
        "MAILSCAN_VAR_DIR": str(var_dir),
        "MAILSCAN_REDIS_URL": f"redis://{LOOPBACK}:{ports['redis']}/0",
        "MAILSCAN_CLAMD": f"{LOOPBACK}:{ports['clamd']}",
        "MAILSCAN_SPAMD": f"{LOOPBACK}:{ports['spamd']}",
        "MAILSCAN_SMTP_HOST": LOOPBACK,
        "MAILSCAN_SMTP_PORT": str(ports["smtp"]),
        "MAILSCAN_FLOWER_PORT": str(ports["flower"]),
        "MAILSCAN_MODE": "pre-queue",
        "MAILSCAN_DELIVERY": "maildir",
        "MAILSCAN_AV_PLUGINS": "clamav",
        "MAILSCAN_SPAM_PLUGINS": "spamassassin",
        "MAILSCAN_AV_CONCURRENCY": str(concurrency),
        "MAILSCAN_SPAM_CONCURRENCY": str(concurrency),
    }


def use_environment(env: dict[str, str]) -> None:
    """Before anything reads settings: this process's Celery app (used by the readiness
    checks) must talk to the bench's Redis, whatever MAILSCAN_* the caller had set."""
    inherited = sorted(k for k in os.environ if k.startswith(ENV_PREFIX))
    for name in inherited:
        del os.environ[name]
    if inherited:
        say(f"ignoring inherited {', '.join(inherited)}")
    os.environ.update(env)


def measure(
    args: argparse.Namespace, corpus: list[Sample], settings: Settings, stack: Stack
) -> str:
    load = os.getloadavg()  # before our own services add to it: others sharing the CPUs
    say(f"starting the stack on {LOOPBACK} (logs in {stack.log_dir}):")
    stack.start(SERVICES, progress=say)
    machine = machine_info(settings) | {"load 1/5 min at start": f"{load[0]:.2f} / {load[1]:.2f}"}
    messages = [corpus[i % len(corpus)] for i in range(args.messages)]
    timeout_s = settings.scan_deadline_s + 30

    def direct(prefix: str) -> Callable[[int], Result]:
        return lambda i: direct_scan(settings, tagged(messages[i], f"{prefix}-{i}"))

    def smtp(prefix: str) -> Callable[[int], Result]:
        return lambda i: smtp_send(settings, tagged(messages[i], f"{prefix}-{i}"), timeout_s)

    warmup, limit, c = min(args.warmup, len(messages)), args.time_limit, args.concurrency
    say(f"warm-up: {warmup} messages per path")
    run_phase("warm-up baseline", direct("wb"), warmup, c, limit)
    run_phase("warm-up mailscan", smtp("wm"), warmup, c, limit)
    say(f"baseline: {len(messages)} messages to clamd + spamd, {c} threads")
    baseline = measured(stack, lambda: run_phase("baseline", direct("b"), len(messages), c, limit))
    say(f"mailscan: {len(messages)} messages over SMTP, {c} threads")
    mailscan = measured(stack, lambda: run_phase("mailscan", smtp("m"), len(messages), c, limit))
    checks = after_run(settings, stack, baseline, messages)
    checks["corpus_files"] = len(corpus)
    return report(args, machine, (baseline, mailscan), checks, messages)


def after_run(
    settings: Settings, stack: Stack, baseline: Phase, messages: list[Sample]
) -> dict[str, Any]:
    found = {k: v for k, v in delivered(settings.maildir).items() if k.startswith("m-")}
    trouble = log_trouble(stack.log_dir)
    for name, lines in trouble.items():
        for line in lines[:3]:
            say(f"  {name}.log: {line[:160]}")
    return {
        "delivered": len(found),
        "flagged": sum(1 for _, flag in found.values() if flag == "YES"),
        "jobs": pool_job_times(settings, {spool_id for spool_id, _ in found.values()}),
        "differ": spam_disagreements(baseline, found, messages),
        "died": stack.exited(),
        "trouble": trouble,
    }


def write_result(text: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"smtp_bench-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(text)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smtp_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--messages", type=int, default=200, help="per path (default 200)")
    parser.add_argument("--concurrency", type=int, default=2, help="client threads, pool size")
    parser.add_argument("--warmup", type=int, default=4, help="messages per path, not counted")
    parser.add_argument(
        "--corpus", default=DEFAULT_CORPUS, help="folder with nice/ and spam/ (repo-relative)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=900.0, help="seconds per phase (default 900)"
    )
    parser.add_argument("--keep-var", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be from 1 to {MAX_MESSAGES}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be from 1 to {MAX_CONCURRENCY}")
    if not 0 <= args.warmup <= 100 or not 1 <= args.time_limit <= 3600:
        parser.error("--warmup must be from 0 to 100, --time-limit from 1 to 3600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = load_corpus(REPO / args.corpus)  # an absolute --corpus stays as it is
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the stack on SIGTERM too
    var_root = Path(tempfile.mkdtemp(prefix="mailscan-bench-"))
    try:
        use_environment(bench_env(var_root / "var", pick_ports(), args.concurrency))
        return run(args, corpus, Stack(load_settings(), dict(os.environ)))
    except StackError as err:
        say(f"smtp_bench: {err}\n(--keep-var keeps the services' logs)")
        return 2
    except KeyboardInterrupt:
        say("smtp_bench: interrupted")
        return 130
    finally:
        if args.keep_var:
            say(f"kept {var_root}")
        else:
            shutil.rmtree(var_root, ignore_errors=True)


def run(args: argparse.Namespace, corpus: list[Sample], stack: Stack) -> int:
    try:
        text = measure(args, corpus, stack.settings, stack)
    finally:
        say("stopping the stack...")
        stack.stop()
    print(text)
    say(f"written to {write_result(text).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
