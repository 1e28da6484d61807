"""The machine and the versions a run measured, for the report."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

from clamav_client.clamd import ClamdNetworkSocket, CommunicationError

from mailserver.supervisor.services import binary
from mailserver.supervisor.spamrules import body_rules_compiled
from tasks import redisauth
from tasks.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def at_start() -> dict[str, str]:
    """What a run must read before it starts anything: the tree it runs (which may be
    committed to meanwhile) and the load (which its own stacks raise)."""
    load = os.getloadavg()
    return {
        "mailscan": _first_line(
            _output(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
        ),
        "load 1/5 min at start": f"{load[0]:.2f} / {load[1]:.2f}",
    }


def machine_info(settings: Settings, started: dict[str, str]) -> dict[str, str]:
    """The machine and the versions of what runs on it; ``started`` from ``at_start``."""
    return {
        "CPUs": str(len(os.sched_getaffinity(0))),
        "CPU": cpu_model(),
        "memory": f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "clamd": _first_line(_clamd_version(settings)),
        "spamd": _first_line(_output([binary("spamd", "spamd"), "--version"])),
        "SpamAssassin body rules": "compiled" if body_rules_compiled() else "not compiled",
        "Redis": _redis_version(settings),
        **started,
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
    try:
        return ClamdNetworkSocket(endpoint.host, endpoint.port, timeout=10).version()
    except CommunicationError:
        return "not running (glue stack only)"


def _redis_version(settings: Settings) -> str:
    return str(redisauth.connect(settings).info("server")["redis_version"])


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        return str(err)
    return done.stdout or done.stderr


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown"
