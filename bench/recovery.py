"""Isolation figures: how long a pool takes to scan again after a plugin freezes or crashes,
and the throughput of a soak with random faults against the same soak without faults.

    .venv/bin/python -m bench.recovery [--soak-messages 300] [--concurrency 8]

Starts its own stack on loopback (ports 4xxxx) with the chaos plugin in the av pool, one av
process (so a frozen process really holds the pool), a 4 s soft and a 10 s hard limit.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

from bench.arguments import whole
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.store import CrashStore
from tasks.plugins.chaos import marker
from tasks.settings import Settings, load_settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "sa-public"
FAULTS = ("freeze-python", "freeze-c", "segfault", "exit")
SOAK_CHAOS = (
    "segfault@0.01,abort@0.005,exit@0.005,raise@0.01,drop-connection@0.01,leak@0.01,"
    "freeze-python@0.004,freeze-c@0.002"
)


def environment(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSCAN_")}
    env.update({
        "MAILSCAN_VAR_DIR": str(var), "MAILSCAN_REDIS_URL": "redis://127.0.0.1:46390/0",
        "MAILSCAN_CLAMD": "127.0.0.1:43320", "MAILSCAN_SPAMD": "127.0.0.1:47830",
        "MAILSCAN_SMTP_PORT": "42525", "MAILSCAN_METRICS_PORT": "49125",
        "MAILSCAN_FLOWER_PORT": "45555", "MAILSCAN_AV_PLUGINS": "chaos,clamav",
        "MAILSCAN_AV_CONCURRENCY": "1", "MAILSCAN_AV_SOFT_LIMIT_S": "4",
        "MAILSCAN_AV_HARD_LIMIT_S": "10", "MAILSCAN_SCAN_DEADLINE_S": "60",
        "MAILSCAN_MAX_ATTEMPTS": "3",
    })  # fmt: skip
    return env


def send(port: int, raw: bytes) -> int:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.sendmail("alice@example.test", ["bob@example.test"], raw)
            return 250
    except smtplib.SMTPResponseException as err:
        return err.smtp_code
    except (OSError, smtplib.SMTPException):
        return 0


def message(body: str) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "alice@example.test", "bob@example.test", "x"
    mail.set_content(f"{body} {time.time_ns()}")
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))  # CRLF, as on the wire


def recovery_s(settings: Settings, crashes: CrashStore, fault: str) -> tuple[float, float]:
    """(time from the fault's crashdump to the next delivered message, whole outage)."""
    started = time.time()
    faulty = threading.Thread(
        target=send, args=(settings.smtp_port, message(marker(fault).decode()))
    )
    faulty.start()
    time.sleep(0.3)  # let the faulty job take the single av process first
    while send(settings.smtp_port, message("clean")) != 250:
        pass
    recovered = time.time()
    faulty.join()
    dumps = [d for d in crashes.records() if d["ts"] >= started]
    failed_at = min((d["ts"] for d in dumps), default=started)
    return recovered - failed_at, recovered - started


def soak(settings: Settings, count: int, concurrency: int) -> tuple[float, int]:
    corpus = sorted(CORPUS.glob("*/*.eml"))
    mails = [f"X-Soak: {n}-{time.time_ns()}\r\n".encode() + corpus[n % len(corpus)].read_bytes()
             for n in range(count)]  # fmt: skip
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(lambda raw: send(settings.smtp_port, raw), mails))
    return count / (time.monotonic() - started), sum(code == 250 for code in codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-messages", type=whole(1), default=300)
    parser.add_argument("--concurrency", type=whole(1, 32), default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailscan-recovery-") as folder:
        env = environment(Path(folder))
        settings = load_settings(env)
        stack = Stack(settings, env)
        try:
            stack.start(["redis", "clamd", "spamd", "av-worker", "spam-worker", "mailserver"])
            run(stack, settings, args)
        finally:
            stack.stop()


def run(stack: Stack, settings: Settings, args: argparse.Namespace) -> None:
    crashes = CrashStore(redisauth.connect(settings), settings.crashdump_dir)
    print("| fault | failure to next delivered scan (s) | outage seen by mail (s) |")
    print("|---|---:|---:|")
    for fault in FAULTS:
        after_failure, outage = recovery_s(settings, crashes, fault)
        print(f"| {fault} | {after_failure:.2f} | {outage:.2f} |", flush=True)
    stack.env["MAILSCAN_AV_CONCURRENCY"] = "2"
    stack.restart("av-worker")
    calm, calm_ok = soak(settings, args.soak_messages, args.concurrency)
    stack.env["MAILSCAN_CHAOS"] = SOAK_CHAOS
    stack.restart("av-worker")
    faulty, faulty_ok = soak(settings, args.soak_messages, args.concurrency)
    print(f"\nsoak {args.soak_messages} messages at concurrency {args.concurrency}: "
          f"no faults {calm:.2f} msg/s ({calm_ok} delivered), random faults {faulty:.2f} msg/s "
          f"({faulty_ok} delivered), ratio {faulty / calm:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
