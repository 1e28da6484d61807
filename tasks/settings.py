"""Typed settings, read once from ``MAILSCAN_*`` environment variables and validated at start.

Every problem found is reported in one ``ConfigError`` that names the variable, the value and
what would be accepted, so an administrator fixes a bad configuration in one round.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from tasks.constants import ENV_PREFIX
from tasks.errors import ConfigError

Mode = Literal["pre-queue", "post-queue"]
FailurePolicy = Literal["tempfail", "quarantine", "deliver-tagged", "backup-engine"]
MODES = ("pre-queue", "post-queue")
FAILURE_POLICIES = ("tempfail", "quarantine", "deliver-tagged")
CHAOS_ACTIONS = (
    "freeze-python", "freeze-c", "segfault", "abort", "exit", "leak", "raise", "drop-connection",
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


@dataclass(frozen=True)
class Settings:
    """Everything mailscan can be told, with units in the names."""

    redis_url: str = "redis://127.0.0.1:6390/0"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    max_message_bytes: int = 25 * 1024 * 1024
    mode: Mode = "pre-queue"
    scan_deadline_s: float = 60.0
    av_plugins: tuple[str, ...] = ("clamav",)
    spam_plugins: tuple[str, ...] = ("spamassassin",)
    av_concurrency: int = 2
    spam_concurrency: int = 2
    av_failure_policy: FailurePolicy = "tempfail"
    spam_failure_policy: FailurePolicy = "deliver-tagged"
    av_backup_plugins: tuple[str, ...] = ()
    # Isolation. The soft limit raises inside the plugin; the hard one kills the pool process.
    av_soft_limit_s: float = 60.0
    av_hard_limit_s: float = 90.0
    spam_soft_limit_s: float = 60.0
    spam_hard_limit_s: float = 90.0
    av_max_tasks_per_child: int = 1000
    spam_max_tasks_per_child: int = 1000
    av_max_memory_per_child_mb: int = 1024
    spam_max_memory_per_child_mb: int = 1024
    max_attempts: int = 3
    breaker_failures: int = 5
    breaker_window_s: float = 30.0
    breaker_cooldown_s: float = 15.0
    crashdump_dir: Path = Path("var/crashdumps")
    chaos: tuple[tuple[str, str], ...] = tuple((action, "marker") for action in CHAOS_ACTIONS)
    clamd: Endpoint = Endpoint(port=3320)
    clamd_timeout_s: float = 30.0
    spamd: Endpoint = Endpoint(port=7830)
    spamd_timeout_s: float = 30.0
    spam_max_bytes: int = 1024 * 1024
    spam_quarantine_score: float | None = None
    spam_subject_tag: str = ""
    command_scanner: tuple[str, ...] = ()
    command_clean_codes: frozenset[int] = frozenset({0})
    command_infected_codes: frozenset[int] = frozenset({1})
    command_virus_pattern: str = r"(?P<name>[\w.\-/]+)\s+FOUND"
    command_timeout_s: float = 60.0
    builtin_rules_dir: Path = field(default_factory=lambda: Path(__file__).parent / "rules")
    var_dir: Path = Path("var")
    spool_dir: Path = Path("var/spool")
    maildir: Path = Path("var/maildir")
    quarantine_dir: Path = Path("var/quarantine")
    delivery: Literal["maildir", "relay"] = "maildir"
    relay: Endpoint = Endpoint(port=25)
    blob_ttl_s: int = 24 * 3600
    redrive_interval_s: float = 30.0
    flower_port: int = 5555
    flower_user: str = "admin"
    # Empty: `mailscan up` makes one and keeps it in <var>/flower/password.
    flower_password: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9125
    # Periodic work (beat).
    health_probe_every_s: float = 30.0
    stats_every_s: float = 60.0
    crashdump_max_age_days: int = 90
    crashdump_max_count: int = 10000
    spool_alarm_age_s: float = 900.0
    # Scaling: Celery's own autoscaler at worker start ("MAX,MIN"), or ours from the backlog.
    av_autoscale: str = ""
    spam_autoscale: str = ""
    backlog_autoscaler: bool = False
    av_scale_min: int = 1
    av_scale_max: int = 8
    spam_scale_min: int = 1
    spam_scale_max: int = 8
    backlog_per_process: int = 4
    # Admin console and the crash-report assist dialog.
    console_host: str = "127.0.0.1"
    console_port: int = 8025
    console_users_file: Path = Path("var/console/users.json")
    # Empty: generated once into <var>/console/secret (mode 600).
    console_secret: str = ""
    assist_prompt: str = field(default_factory=lambda: platform_assist_prompt(sys.platform))
    assist_url: str = ""
    assist_token: str = ""
    hostname: str = field(default_factory=lambda: os.uname().nodename)


# name -> (parser, field). Parsers raise ValueError with a sentence saying what is accepted.
def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a whole number above 0")
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


def platform_assist_prompt(platform: str) -> str:
    """When the original product asks about a crash: at the next console start on macOS,
    at once in every open console elsewhere (Windows)."""
    return "next-start" if platform == "darwin" else "immediate"


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


_PARSERS: dict[str, Callable[[str], Any]] = {
    "redis_url": _redis_url,
    "smtp_host": str,
    "smtp_port": _port,
    "max_message_bytes": _positive_int,
    "mode": _choice(*MODES),
    "scan_deadline_s": _seconds,
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
    "chaos": _chaos,
    "spam_failure_policy": _choice(*FAILURE_POLICIES),
    "clamd": _endpoint,
    "clamd_timeout_s": _seconds,
    "spamd": _endpoint,
    "spamd_timeout_s": _seconds,
    "spam_max_bytes": _positive_int,
    "spam_quarantine_score": _optional_score,
    "spam_subject_tag": str,
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
    "redrive_interval_s": _seconds,
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

# Folders that follow MAILSCAN_VAR_DIR unless set on their own.
_UNDER_VAR = {
    "spool_dir": "spool",
    "maildir": "maildir",
    "quarantine_dir": "quarantine",
    "crashdump_dir": "crashdumps",
    "console_users_file": "console/users.json",
}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise ConfigError listing every bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, parse in _PARSERS.items():
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except (ValueError, re.error) as err:
            problems.append(f"{env_name(name)}={raw!r}: {err}")
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and not _known(k))
    problems += [f"{k}: unknown setting" for k in unknown]
    if problems:
        raise ConfigError("; ".join(problems))
    _place_under_var(values)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    problems = []
    for pool in ("av", "spam"):
        soft, hard = (
            getattr(settings, f"{pool}_soft_limit_s"),
            getattr(settings, f"{pool}_hard_limit_s"),
        )
        if soft >= hard:
            problems.append(
                f"{env_name(pool + '_soft_limit_s')} ({soft:g}) must be below "
                f"{env_name(pool + '_hard_limit_s')} ({hard:g})"
            )
    for pool in ("av", "spam"):
        low, high = getattr(settings, f"{pool}_scale_min"), getattr(settings, f"{pool}_scale_max")
        if low > high:
            problems.append(f"{env_name(pool + '_scale_min')} ({low}) is above the max ({high})")
    if settings.av_failure_policy == "backup-engine" and not settings.av_backup_plugins:
        problems.append("MAILSCAN_AV_FAILURE_POLICY=backup-engine needs MAILSCAN_AV_BACKUP_PLUGINS")
    if problems:
        raise ConfigError("; ".join(problems))


def _known(variable: str) -> bool:
    return variable.removeprefix(ENV_PREFIX).lower() in _PARSERS


def _place_under_var(values: dict[str, Any]) -> None:
    var_dir = values.get("var_dir", Path("var"))
    for name, leaf in _UNDER_VAR.items():
        values.setdefault(name, var_dir / leaf)


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, read on first use (never at import time)."""
    return load_settings()
