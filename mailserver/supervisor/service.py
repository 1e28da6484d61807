"""What a service of the local system is: its command line, its port, and how to tell it is
ready (mailserver/supervisor/services.py says it for each)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.errors import StackError


@dataclass
class Service:
    """One child process: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    port: int | None = None
    ready_timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # Runs just before each start: files the service reads, written only when it starts.
    before_start: Callable[[], None] | None = field(default=None, repr=False)
    after_ready: Callable[[], None] | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        hint = f"install the Debian package {package} (scripts/run installs it)"
        raise StackError(f"{name} not found: {hint}")
    return found
