"""A milter front of its own for the tests: ``mailscan milter`` as an administrator runs it,
with its own folders and address (TCP, or a Unix socket), on a stack's Redis and pools."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPOOL_REPORT_KEY
from tests.conftest import TEST_ROOT, port, wait_for


@dataclass
class MilterFront:
    name: str
    n: int  # tells its ports apart from the other fronts'
    unix: bool = False
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    overrides: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.unix:
            # Postfix's smtpd (user postfix) must reach the socket: a folder it can enter.
            folder = Path(tempfile.mkdtemp(prefix="mailscan-milter-"))
            folder.chmod(0o755)
            self.where: tuple[str, int] | Path = folder / "milter.sock"
        else:
            self.where = ("127.0.0.1", port(17357) + self.n)
        self.env = {
            **self.base_env,
            "MAILSCAN_VAR_DIR": str(TEST_ROOT / self.name),
            "MAILSCAN_MILTER": self.address,
            "MAILSCAN_METRICS_PORT": str(port(19300) + self.n),
            "MAILSCAN_HOSTNAME": f"milter-{self.name}",
            **{f"MAILSCAN_{key.upper()}": value for key, value in self.overrides.items()},
        }
        self.settings: Settings = load_settings(self.env)

    @property
    def address(self) -> str:
        if isinstance(self.where, Path):
            return f"unix:{self.where}"
        return f"127.0.0.1:{self.where[1]}"

    @property
    def postfix_name(self) -> str:
        """As Postfix's smtpd_milters names it."""
        return f"unix:{self.where}" if isinstance(self.where, Path) else f"inet:{self.address}"

    @property
    def log_path(self) -> Path:
        return TEST_ROOT / f"{self.name}.log"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailserver.cli", "milter"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: self.answers() or self.process.poll() is not None, 60, "the milter")
        assert self.process.poll() is None, self.log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None
        # Gone for good: the stack it shared no longer lists its spool (mailscan status).
        settings = load_settings(self.env)
        redisauth.connect(settings).hdel(SPOOL_REPORT_KEY, settings.hostname)

    def answers(self) -> bool:
        family = socket.AF_UNIX if isinstance(self.where, Path) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.where) if isinstance(self.where, Path) else self.where)
            except OSError:
                return False
        return True

    def spool_entries(self) -> list[str]:
        queue = self.settings.spool_dir / "queue"
        return [p.name for p in queue.iterdir()] if queue.is_dir() else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
