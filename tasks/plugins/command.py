"""Any command-line virus scanner: the message goes to its standard input, or to a temporary
file when the command line holds ``{file}``; its exit code and output map to a verdict."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tasks.errors import BackendUnavailable, ConfigError, ScanError
from tasks.plugins.base import Message, Plugin, Verdict


@dataclass
class CommandPlugin(Plugin):
    """Runs ``MAILSCAN_COMMAND_SCANNER`` once per message, bounded by its own timeout."""

    name: ClassVar[str] = "command"
    pools: ClassVar[tuple[str, ...]] = ("av",)

    def __post_init__(self) -> None:
        if not self.settings.command_scanner:
            raise ConfigError("the command plugin needs MAILSCAN_COMMAND_SCANNER")

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        if any("{file}" in arg for arg in self.settings.command_scanner):
            completed = self._run_on_file(message)
        else:
            completed = self._run(list(self.settings.command_scanner), message)
        return self._read(completed, started)

    def _run_on_file(self, message: Message) -> subprocess.CompletedProcess[bytes]:
        with tempfile.TemporaryDirectory(prefix="mailscan-cmd-") as folder:
            path = Path(folder) / "message.eml"
            path.write_bytes(message)
            argv = [arg.replace("{file}", str(path)) for arg in self.settings.command_scanner]
            return self._run(argv, b"")

    def _run(self, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, timeout=self.settings.command_timeout_s
            )
        except FileNotFoundError as err:
            raise BackendUnavailable(f"scanner command not found: {argv[0]}") from err
        except subprocess.TimeoutExpired as err:
            raise BackendUnavailable(f"scanner command ran over {err.timeout} s") from err

    def _read(self, completed: subprocess.CompletedProcess[bytes], started: float) -> Verdict:
        code, output = completed.returncode, completed.stdout.decode(errors="replace")
        if code in self.settings.command_clean_codes:
            return self.verdict("clean", started)
        if code in self.settings.command_infected_codes:
            found = re.search(self.settings.command_virus_pattern, output)
            return self.verdict("infected", started, virus=found["name"] if found else "unknown")
        tail = (completed.stderr or completed.stdout).decode(errors="replace").strip()[-300:]
        raise ScanError(f"scanner exited with {code}: {tail}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "command": self.settings.command_scanner[0]}
