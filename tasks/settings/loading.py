"""Settings read from the environment once, each value parsed by its field's parser, and the
whole checked: every problem is reported in one ``ConfigError`` that names the variable, the
value and what would be accepted, so an administrator fixes a bad configuration in one round."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tasks.errors import ConfigError
from tasks.setting_parsers import FAILURE_POLICIES, PLUGIN_POOLS, Endpoint
from tasks.settings.pools import Pools, PoolSettings
from tasks.settings.schema import Settings
from tasks.settings.variables import Variable, env_name, global_fields, variables
from tasks.wire.keys import ENV_PREFIX, POOLS

SENTINEL_PORT_DISTANCE = 20000
MAX_PORT = 65535


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise ConfigError listing every bad value."""
    environ = os.environ if environ is None else environ
    known = variables()
    values, problems = _parse(environ, known)
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
    problems += [f"{k}: unknown setting" for k in unknown]
    if problems:
        raise ConfigError("; ".join(problems))
    settings = _build(values)
    _check_consistency(settings)
    return settings


def _parse(
    environ: Mapping[str, str], known: dict[str, Variable]
) -> tuple[dict[Variable, Any], list[str]]:
    values: dict[Variable, Any] = {}
    problems: list[str] = []
    for name, variable in known.items():
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            values[variable] = variable.parse(raw)
        except (ValueError, re.error) as err:
            shown = variable.mask(raw) if variable.mask else raw
            problems.append(f"{name}={shown!r}: {err}")
    return values, problems


def _build(values: dict[Variable, Any]) -> Settings:
    top = {v.setting: value for v, value in values.items() if not v.pool}
    _place_under_var(top)
    _name_local_sentinels(top)
    pools = {
        pool: dataclasses.replace(
            PoolSettings.defaults(pool),
            **{v.setting: value for v, value in values.items() if v.pool == pool},
        )
        for pool in POOLS
    }
    return Settings(**top, pools=Pools(**pools))


def _place_under_var(values: dict[str, Any]) -> None:
    """Folders follow MAILSCAN_VAR_DIR unless set on their own."""
    var_dir = values.get("var_dir", Path("var"))
    for declared in global_fields():
        if "under_var" in declared.metadata:
            values.setdefault(declared.name, var_dir / declared.metadata["under_var"])


def _name_local_sentinels(values: dict[str, Any]) -> None:
    """The sentinels ``mailscan up`` starts, unless named: Redis's own convention, the data
    port + 20000, and the two ports after it."""
    if values.get("local_redis") != "sentinel" or values.get("redis_sentinels"):
        return
    url = values.get("redis_url", Settings.redis_url)
    base = (urlsplit(url).port or 6379) + SENTINEL_PORT_DISTANCE
    values["redis_sentinels"] = tuple(Endpoint(port=base + n) for n in range(3))


def _check_consistency(settings: Settings) -> None:
    problems = [problem for pool in POOLS for problem in _pool_problems(pool, settings.pools[pool])]
    problems += _smtp_problems(settings)
    problems += _sentinel_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))


def _smtp_problems(settings: Settings) -> list[str]:
    """Limits of the SMTP front that contradict each other: each first one of a pair must
    not be above the second (a message with every recipient it may have must fit in the
    session's RCPT commands)."""
    pairs = [
        ("smtp_max_connections_per_client", "smtp_max_connections"),
        ("smtp_max_recipients", "smtp_max_commands"),
        ("smtp_command_timeout_s", "smtp_session_timeout_s"),
    ]
    return [
        f"{env_name(small)} ({getattr(settings, small):g}) must not be above "
        f"{env_name(large)} ({getattr(settings, large):g})"
        for small, large in pairs
        if getattr(settings, small) > getattr(settings, large)
    ]


def _sentinel_problems(settings: Settings) -> list[str]:
    if not settings.redis_sentinels:
        return []
    problems = []
    if urlsplit(settings.redis_url).scheme != "redis":
        problems.append(
            f"{env_name('redis_sentinels')} needs a redis:// {env_name('redis_url')} "
            "(no TLS or Unix socket through sentinels)"
        )
    if any(s.port > MAX_PORT for s in settings.redis_sentinels):
        problems.append(
            f"{env_name('local_redis')}=sentinel: the sentinels' ports would pass {MAX_PORT}; "
            f"name them in {env_name('redis_sentinels')}"
        )
    return problems


def _pool_problems(pool: str, own: PoolSettings) -> list[str]:
    def var(name: str) -> str:
        return env_name(f"{pool}_{name}")

    problems = []
    if own.soft_limit_s >= own.hard_limit_s:
        problems.append(
            f"{var('soft_limit_s')} ({own.soft_limit_s:g}) must be below "
            f"{var('hard_limit_s')} ({own.hard_limit_s:g})"
        )
    problems += _plugin_problems(pool, (*own.plugins, *own.backup_plugins))
    if own.scale_min > own.scale_max:
        problems.append(f"{var('scale_min')} ({own.scale_min}) is above the max ({own.scale_max})")
    if own.failure_policy == "backup-engine" and var("backup_plugins") not in variables():
        problems.append(
            f"{var('failure_policy')}=backup-engine: only the av pool has backup engines; "
            f"must be one of {', '.join(FAILURE_POLICIES)}"
        )
    elif own.failure_policy == "backup-engine" and not own.backup_plugins:
        problems.append(f"{var('failure_policy')}=backup-engine needs {var('backup_plugins')}")
    return problems


def _plugin_problems(pool: str, names: tuple[str, ...]) -> list[str]:
    problems = []
    for name in names:
        if name not in PLUGIN_POOLS:
            known = ", ".join(sorted(PLUGIN_POOLS))
            problems.append(f"unknown plugin {name!r} (known: {known})")
        elif pool not in PLUGIN_POOLS[name]:
            problems.append(f"plugin {name!r} cannot run in the {pool} pool")
    return problems


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, read on first use (never at import time)."""
    return load_settings()
