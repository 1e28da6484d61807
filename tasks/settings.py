"""Typed settings, read once from ``MAILSCAN_*`` environment variables and validated at start.

Every problem found is reported in one ``ConfigError`` that names the variable, the value and
what would be accepted, so an administrator fixes a bad configuration in one round.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.errors import ConfigError
from tasks.redisauth import masked
from tasks.setting_parsers import (
    CHAOS_ACTIONS,
    PARSERS,
    PLUGIN_POOLS,
    Endpoint,
    FailurePolicy,
    Mode,
)
from tasks.wire.keys import ENV_PREFIX


@dataclass(frozen=True)
class Settings:
    """Everything mailscan can be told, with units in the names."""

    redis_url: str = "redis://127.0.0.1:6390/0"
    # Read when the URL carries no password; `mailscan up` makes one there for its Redis.
    redis_password_file: Path = Path("var/redis/password")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    max_message_bytes: int = 25 * 1024 * 1024
    mode: Mode = "pre-queue"
    scan_deadline_s: float = 60.0
    # Pre-queue: above this many waiting scan jobs a new message is refused with 451 at once,
    # rather than accepted only to miss its deadline (the sender retries later).
    max_queued_jobs: int = 1000
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
    # One full crashdump per failure signature in each window of this length; the group
    # counts every incident. A plugin failing on every message must not fill Redis.
    crashdump_full_every_s: float = 60.0
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
    # Messages of at least this many bytes reach the pools as their spool file, which the
    # pools read from the folder they share with the SMTP front, instead of through Redis:
    # Redis's time per byte grows with the size (bench/README.md). 0: always through Redis,
    # for pools that cannot read the front's spool (on other machines).
    shared_spool_from_bytes: int = 1024 * 1024
    redrive_interval_s: float = 30.0
    # A failed delivery is tried again after this, then after twice as long each time up to
    # an hour, from the verdicts kept with its spool entry: no rescan.
    delivery_retry_s: float = 60.0
    # Past this age an entry without an outcome goes to the spool's dead-letter folder, with
    # an alarm and, in relay mode, a DSN to its sender (Postfix's maximal_queue_lifetime).
    spool_max_lifetime_s: float = 5 * 86400.0
    flower_port: int = 5555
    flower_user: str = "admin"
    # Empty: `mailscan up` makes one and keeps it in <var>/flower/password.
    flower_password: str = ""
    # Task events cost each pool a fifth of its CPU per job. Off, a pool sends them only after
    # a Flower asks (it does every 5 s while it runs; `mailscan up` asks as its Flower starts).
    task_events: bool = False
    # Celery's "received" and "succeeded" lines, two per job in each pool: 8 % of a pool's
    # CPU per job (bench/pools.py). The front logs every message's outcome either way.
    log_jobs: bool = False
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


def plugin_names(pool: str, settings: Settings) -> tuple[str, ...]:
    """The plugins ``pool`` runs, in order."""
    return settings.av_plugins if pool == "av" else settings.spam_plugins


def platform_assist_prompt(platform: str) -> str:
    """When the original product asks about a crash: at the next console start on macOS,
    at once in every open console elsewhere (Windows)."""
    return "next-start" if platform == "darwin" else "immediate"


# Folders that follow MAILSCAN_VAR_DIR unless set on their own.
_UNDER_VAR = {
    "spool_dir": "spool",
    "maildir": "maildir",
    "quarantine_dir": "quarantine",
    "crashdump_dir": "crashdumps",
    "console_users_file": "console/users.json",
    "redis_password_file": "redis/password",
}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise ConfigError listing every bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, parse in PARSERS.items():
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except (ValueError, re.error) as err:
            shown = masked(raw) if name == "redis_url" else raw
            problems.append(f"{env_name(name)}={shown!r}: {err}")
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
    problems += _plugin_problems(settings)
    if settings.av_failure_policy == "backup-engine" and not settings.av_backup_plugins:
        problems.append("MAILSCAN_AV_FAILURE_POLICY=backup-engine needs MAILSCAN_AV_BACKUP_PLUGINS")
    if problems:
        raise ConfigError("; ".join(problems))


def _plugin_problems(settings: Settings) -> list[str]:
    named = {"av": settings.av_plugins + settings.av_backup_plugins, "spam": settings.spam_plugins}
    problems = []
    for pool, names in named.items():
        for name in names:
            if name not in PLUGIN_POOLS:
                known = ", ".join(sorted(PLUGIN_POOLS))
                problems.append(f"unknown plugin {name!r} (known: {known})")
            elif pool not in PLUGIN_POOLS[name]:
                problems.append(f"plugin {name!r} cannot run in the {pool} pool")
    return problems


def _known(variable: str) -> bool:
    return variable.removeprefix(ENV_PREFIX).lower() in PARSERS


def _place_under_var(values: dict[str, Any]) -> None:
    var_dir = values.get("var_dir", Path("var"))
    for name, leaf in _UNDER_VAR.items():
        values.setdefault(name, var_dir / leaf)


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, read on first use (never at import time)."""
    return load_settings()
