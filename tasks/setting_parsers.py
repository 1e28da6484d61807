"""How the text of each MAILSCAN_* variable becomes a typed value, and the values a setting
can take. Each parser raises ValueError with a sentence saying what is accepted."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

Mode = Literal["pre-queue", "post-queue"]
FailurePolicy = Literal["tempfail", "quarantine", "deliver-tagged", "backup-engine"]
MODES = ("pre-queue", "post-queue")
FAILURE_POLICIES = ("tempfail", "quarantine", "deliver-tagged")
CHAOS_ACTIONS = (
    "freeze-python", "freeze-c", "segfault", "abort", "exit", "leak", "raise", "huge-error",
    "drop-connection", "slow",
)  # fmt: skip
DELIVERIES = ("maildir", "relay")
ASSIST_PROMPTS = ("immediate", "next-start")


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon listens: a TCP host and port, or a Unix socket path."""

    host: str = "127.0.0.1"
    port: int = 0
    socket_path: Path | None = None

    def __str__(self) -> str:
        return f"unix:{self.socket_path}" if self.socket_path else f"{self.host}:{self.port}"


# name -> (parser, field). Parsers raise ValueError with a sentence saying what is accepted.
def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a whole number above 0")
    return value


def _size_or_off(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a number of bytes, or 0 for off")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be a number of seconds above 0")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("must name at least one plugin")
    return names


def _codes(text: str) -> frozenset[int]:
    return frozenset(int(c) for c in text.split(",") if c.strip())


def _regex(text: str) -> str:
    if "name" not in re.compile(text).groupindex:
        raise ValueError("must contain a group named 'name' for the virus name")
    return text


def _endpoint(text: str) -> Endpoint:
    if text.startswith("unix:"):
        return Endpoint(socket_path=Path(text.removeprefix("unix:")))
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT or unix:/path/to/socket")
    return Endpoint(host=host.strip("[]"), port=_port(port))


def _redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text


def _header_text(text: str) -> str:
    """Text that goes into a header field as it is: one line, no control characters."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("must be one line of text without control characters")
    return text


def _optional_score(text: str) -> float | None:
    return float(text) if text.strip() else None


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("0", "no", "false", "off", ""):
        return False
    raise ValueError("must be yes or no")


def _autoscale(text: str) -> str:
    """Celery's ``--autoscale`` value, MAX,MIN."""
    if not text:
        return ""
    most, _, least = text.partition(",")
    if not (most.isdigit() and least.isdigit() and 0 < int(least) <= int(most)):
        raise ValueError("must be MAX,MIN with 0 < MIN <= MAX, e.g. 8,2")
    return text


def _assist_url(text: str) -> str:
    """Reports leave the server: https only, except to a receiver on this very host."""
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme == "https" and parts.hostname:
        return text
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return text
    raise ValueError("must be an https:// URL (http:// only for a loopback host)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(text: str) -> str:
    if text and len(text) < 32:
        raise ValueError("must be at least 32 characters (e.g. the output of openssl rand -hex 32)")
    return text


def _optional_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _chaos(text: str) -> tuple[tuple[str, str], ...]:
    """``action@trigger,...``: trigger is ``marker`` (the message holds MAILSCAN-CHAOS-ACTION)
    or a fraction of messages such as ``0.05``."""
    faults = []
    for item in _optional_names(text):
        action, _, trigger = item.partition("@")
        if action not in CHAOS_ACTIONS:
            raise ValueError(f"unknown chaos action {action!r} (known: {', '.join(CHAOS_ACTIONS)})")
        trigger = trigger or "marker"
        if trigger != "marker" and not 0.0 <= float(trigger) <= 1.0:
            raise ValueError(f"{item}: the trigger is 'marker' or a fraction from 0 to 1")
        faults.append((action, trigger))
    return tuple(faults)


PARSERS: dict[str, Callable[[str], Any]] = {
    "redis_url": _redis_url,
    "redis_password_file": Path,
    "smtp_host": str,
    "smtp_port": _port,
    "max_message_bytes": _positive_int,
    "mode": _choice(*MODES),
    "scan_deadline_s": _seconds,
    "max_queued_jobs": _positive_int,
    "av_plugins": _names,
    "spam_plugins": _names,
    "av_concurrency": _positive_int,
    "spam_concurrency": _positive_int,
    "av_failure_policy": _choice(*FAILURE_POLICIES, "backup-engine"),
    "av_backup_plugins": _optional_names,
    "av_soft_limit_s": _seconds,
    "av_hard_limit_s": _seconds,
    "spam_soft_limit_s": _seconds,
    "spam_hard_limit_s": _seconds,
    "av_max_tasks_per_child": _positive_int,
    "spam_max_tasks_per_child": _positive_int,
    "av_max_memory_per_child_mb": _positive_int,
    "spam_max_memory_per_child_mb": _positive_int,
    "max_attempts": _positive_int,
    "breaker_failures": _positive_int,
    "breaker_window_s": _seconds,
    "breaker_cooldown_s": _seconds,
    "crashdump_dir": Path,
    "crashdump_full_every_s": _seconds,
    "chaos": _chaos,
    "spam_failure_policy": _choice(*FAILURE_POLICIES),
    "clamd": _endpoint,
    "clamd_timeout_s": _seconds,
    "spamd": _endpoint,
    "spamd_timeout_s": _seconds,
    "spam_max_bytes": _positive_int,
    "spam_quarantine_score": _optional_score,
    "spam_subject_tag": _header_text,
    "command_scanner": lambda text: tuple(shlex.split(text)),
    "command_clean_codes": _codes,
    "command_infected_codes": _codes,
    "command_virus_pattern": _regex,
    "command_timeout_s": _seconds,
    "builtin_rules_dir": Path,
    "var_dir": Path,
    "spool_dir": Path,
    "maildir": Path,
    "quarantine_dir": Path,
    "delivery": _choice(*DELIVERIES),
    "relay": _endpoint,
    "blob_ttl_s": _positive_int,
    "shared_spool_from_bytes": _size_or_off,
    "redrive_interval_s": _seconds,
    "delivery_retry_s": _seconds,
    "spool_max_lifetime_s": _seconds,
    "flower_port": _port,
    "flower_user": str,
    "flower_password": str,
    "metrics_host": str,
    "metrics_port": _port,
    "health_probe_every_s": _seconds,
    "stats_every_s": _seconds,
    "crashdump_max_age_days": _positive_int,
    "crashdump_max_count": _positive_int,
    "spool_alarm_age_s": _seconds,
    "av_autoscale": _autoscale,
    "spam_autoscale": _autoscale,
    "backlog_autoscaler": _boolean,
    "task_events": _boolean,
    "log_jobs": _boolean,
    "av_scale_min": _positive_int,
    "av_scale_max": _positive_int,
    "spam_scale_min": _positive_int,
    "spam_scale_max": _positive_int,
    "backlog_per_process": _positive_int,
    "console_host": str,
    "console_port": _port,
    "console_users_file": Path,
    "console_secret": _secret,
    "assist_prompt": _choice(*ASSIST_PROMPTS),
    "assist_url": _assist_url,
    "assist_token": str,
    "hostname": str,
}
