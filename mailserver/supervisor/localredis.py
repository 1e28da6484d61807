"""The local stack's Redis and its password.

Whoever reaches Redis can forge verdicts, read every message in flight and run any
registered task, so the local Redis never runs without a password: the one in
``MAILSCAN_REDIS_URL`` if it carries one, else one made once and kept in
``MAILSCAN_REDIS_PASSWORD_FILE`` (mode 600), where every client of this machine reads it
(tasks/redisauth.py). redis-server gets it through a config file (mode 600), never its
command line, which every local user can read with ps.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from tasks.redisauth import url_password
from tasks.settings import Settings

CONFIG_NAME = "redis.conf"


def ensure_password(settings: Settings) -> str:
    """The password the local Redis requires: the URL's, or the kept one, made if missing."""
    in_url = url_password(settings.redis_url)
    if in_url:
        return in_url
    path = settings.redis_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def config_path(settings: Settings) -> Path:
    return (settings.var_dir / "redis" / CONFIG_NAME).resolve()


def write_config(settings: Settings) -> Path:
    """Write redis-server's config, the password included; return its path."""
    path = config_path(settings)
    write_node_config(settings, path, urlsplit(settings.redis_url).port or 6379)
    return path


def write_node_config(
    settings: Settings, path: Path, port: int, primary: int = 0, elected: int = 0
) -> None:
    """The config of one Redis of this machine, on ``port``; a replica of the one on
    ``primary`` when given. A ``replicaof`` the file already holds is kept: Redis writes it
    there itself when the sentinels give the node another role, and a restart must not
    take it back. ``elected``: the primary the sentinels name now, when they answer; that
    one starts as the primary, any other as its replica (a primary killed and failed over
    comes back as a replica at once, not as a second primary until a sentinel looks at it
    again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    role = _kept_role(path) if path.exists() else []
    if not path.exists() and primary:
        role = [f"replicaof 127.0.0.1 {primary}"]
    if elected:
        role = [] if elected == port else [f"replicaof 127.0.0.1 {elected}"]
    secret = quoted(ensure_password(settings))
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        f"dir {quoted(str(path.parent))}",
        # Queued jobs and crashdumps live in Redis: it must keep them across a restart and
        # never evict them to make room.
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "maxmemory-policy noeviction",
        # A replica (re)joining gets the data at once: there is no second one to wait for.
        "repl-diskless-sync-delay 0",
        "daemonize no",
        f"requirepass {secret}",
        # A primary the sentinels turn into a replica must show the new primary the password.
        f"masterauth {secret}",
        *role,
    ]
    write_private(path, "\n".join(lines) + "\n")


def _kept_role(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("replicaof ")]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, from its first byte on."""
    staging = path.with_name(f".{path.name}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a leftover staging file may have had another mode
        handle.write(text)
    os.replace(staging, path)


def quoted(value: str) -> str:
    """A value as redis.conf reads it: in double quotes, with backslash escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
