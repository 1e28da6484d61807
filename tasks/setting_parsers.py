"""How the text of each MAILSCAN_* variable becomes a typed value, and the values a setting
can take. Each parser raises ValueError with a sentence saying what is accepted."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tasks.attachments.names import EXTENSION

Mode = Literal["pre-queue", "post-queue"]
FailurePolicy = Literal["tempfail", "quarantine", "deliver-tagged", "backup-engine"]
MODES = ("pre-queue", "post-queue")
POST_QUEUE_VIRUS = ("quarantine", "discard")
FAILURE_POLICIES = ("tempfail", "quarantine", "deliver-tagged")
CHAOS_ACTIONS = (
    "freeze-python", "freeze-c", "segfault", "abort", "exit", "leak", "raise", "huge-error",
    "drop-connection", "slow",
)  # fmt: skip
# Every plugin and the pools it can run in: checked with the settings, so a process that runs
# no plugin (the SMTP front) refuses a bad name at start without loading any plugin code.
# tasks/plugins/__init__.py maps the same names to their classes (a test holds them equal).
PLUGIN_POOLS = {
    "clamav": ("av",), "command": ("av",), "builtin": ("av",), "banned": ("av",),
    "spamassassin": ("spam",), "stub": ("av", "spam"), "chaos": ("av", "spam"),
}  # fmt: skip
DELIVERIES = ("maildir", "relay")
LOCAL_REDIS = ("single", "sentinel")
ASSIST_PROMPTS = ("immediate", "next-start")


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon listens: a TCP host and port, or a Unix socket path."""

    host: str = "127.0.0.1"
    port: int = 0
    socket_path: Path | None = None

    def __str__(self) -> str:
        return f"unix:{self.socket_path}" if self.socket_path else f"{self.host}:{self.port}"


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a whole number above 0")
    return value


def optional_positive_int(text: str) -> int | None:
    # Empty is unset, as compose's `${VAR:-}` passes a variable .env does not set.
    return positive_int(text) if text.strip() else None


def size_or_off(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a number of bytes, or 0 for off")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be a number of seconds above 0")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


def names(text: str) -> tuple[str, ...]:
    found = optional_names(text)
    if not found:
        raise ValueError("must name at least one plugin")
    return found


def codes(text: str) -> frozenset[int]:
    return frozenset(int(c) for c in text.split(",") if c.strip())


def regex(text: str) -> str:
    if "name" not in re.compile(text).groupindex:
        raise ValueError("must contain a group named 'name' for the virus name")
    return text


def endpoint(text: str) -> Endpoint:
    if text.startswith("unix:"):
        return Endpoint(socket_path=Path(text.removeprefix("unix:")))
    host, sep, number = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT or unix:/path/to/socket")
    return Endpoint(host=host.strip("[]"), port=port(number))


def endpoint_or_off(text: str) -> Endpoint | None:
    if text == "off":
        return None
    try:
        return endpoint(text)
    except ValueError:
        raise ValueError("must be HOST:PORT, unix:/path/to/socket or off") from None


def redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


def database_url(text: str) -> str:
    """Empty (SQLite under the var folder), ``sqlite:///PATH`` or ``postgresql://...``."""
    if text and urlsplit(text).scheme not in DATABASE_SCHEMES:
        raise ValueError("must be a postgresql:// or sqlite:/// URL")
    return text


def sentinels(text: str) -> tuple[Endpoint, ...]:
    """``HOST:PORT,HOST:PORT,...``; empty: no sentinels (the URL names Redis itself)."""
    found = tuple(endpoint(item.strip()) for item in text.split(",") if item.strip())
    if any(e.socket_path for e in found):
        raise ValueError("must be HOST:PORT of each sentinel, comma-separated")
    return found


def master_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise ValueError("must be the name the sentinels monitor (letters, digits, . _ -)")
    return text


def header_text(text: str) -> str:
    """Text that goes into a header field as it is: one line, no control characters."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("must be one line of text without control characters")
    return text


def optional_score(text: str) -> float | None:
    return float(text) if text.strip() else None


def optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def boolean(text: str) -> bool:
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("0", "no", "false", "off", ""):
        return False
    raise ValueError("must be yes or no")


def autoscale(text: str) -> str:
    """Celery's ``--autoscale`` value, MAX,MIN."""
    if not text:
        return ""
    most, _, least = text.partition(",")
    if not (most.isdigit() and least.isdigit() and 0 < int(least) <= int(most)):
        raise ValueError("must be MAX,MIN with 0 < MIN <= MAX, e.g. 8,2")
    return text


def assist_url(text: str) -> str:
    """Reports leave the server: https only, except to a receiver on this very host."""
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme == "https" and parts.hostname:
        return text
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return text
    raise ValueError("must be an https:// URL (http:// only for a loopback host)")


def webhook_url(text: str) -> str:
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname:
        return text
    raise ValueError("must be an http:// or https:// URL")


def url_shown(text: str) -> str:
    """A URL as an error quotes it: a webhook's path or query often carries its token."""
    parts = urlsplit(text)
    return f"{parts.scheme}://{parts.hostname}/..." if parts.hostname else "(not shown)"


def mail_address(text: str) -> str:
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if at and local and "." in domain and not re.search(r"[\s<>,;]", text):
        return text
    raise ValueError("must be one mail address, such as postmaster@example.com")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def secret(text: str) -> str:
    if text and len(text) < 32:
        raise ValueError("must be at least 32 characters (e.g. the output of openssl rand -hex 32)")
    return text


def optional_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def chaos(text: str) -> tuple[tuple[str, str], ...]:
    """``action@trigger,...``: trigger is ``marker`` (the message holds MAILSCAN-CHAOS-ACTION)
    or a fraction of messages such as ``0.05``."""
    faults = []
    for item in optional_names(text):
        action, _, trigger = item.partition("@")
        if action not in CHAOS_ACTIONS:
            raise ValueError(f"unknown chaos action {action!r} (known: {', '.join(CHAOS_ACTIONS)})")
        trigger = trigger or "marker"
        if trigger != "marker" and not 0.0 <= float(trigger) <= 1.0:
            raise ValueError(f"{item}: the trigger is 'marker' or a fraction from 0 to 1")
        faults.append((action, trigger))
    return tuple(faults)


_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


def extensions(text: str) -> tuple[str, ...]:
    """Comma-separated file name extensions, with or without their dot; empty: none."""
    found = tuple(item.lower().lstrip(".") for item in optional_names(text))
    for item in found:
        if not EXTENSION.fullmatch(item):
            raise ValueError(f"{item!r} is not a file name extension (e.g. exe, .scr)")
    return found


def content_types(text: str) -> tuple[str, ...]:
    """Comma-separated content types such as application/x-dosexec; empty: none."""
    found = tuple(item.lower() for item in optional_names(text))
    for item in found:
        if not _CONTENT_TYPE.fullmatch(item):
            raise ValueError(f"{item!r} is not a content type (e.g. application/x-dosexec)")
    return found


def command_line(text: str) -> tuple[str, ...]:
    """A command and its arguments, split as a POSIX shell would."""
    return tuple(shlex.split(text))


SA_CONFIG_LINE = re.compile(r"^[a-z_][a-z0-9_]*( .*)?$")


def sa_config_lines(text: str) -> tuple[str, ...]:
    """SpamAssassin configuration lines separated by ``;`` (``name value``)."""
    lines = tuple(" ".join(line.split()) for line in text.split(";") if line.strip())
    for line in lines:
        if not SA_CONFIG_LINE.match(line):
            raise ValueError(f"{line!r} is not a SpamAssassin setting (a name, then its value)")
    return lines
